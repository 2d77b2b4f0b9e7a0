"""``multiscale sweep`` and ``multiscale.sweep``: points, folders, skipping, failures, bad grids.

The sweeps run the vacancy case (a few seconds a point). Independent truths: the number of
atoms of an ``n×n×n`` fcc supercell with one vacancy is ``4n³ − 1``; the 4×4×4 formation
energy of Mishin's Cu is 1.2736997 eV (LAMMPS ``minimize`` on the same cell differs by 3e-10 eV,
``tests/test_lammps_agreement.py``); and each row must hold the values its point's own
``summary.json`` and ``case.resolved.toml`` record.
"""

import csv
import json
import os
from pathlib import Path

import pytest
from conftest import cli

import multiscale
from multiscale.config import load_case
from multiscale.errors import CaseError
from multiscale.sweeps.folders import completed_summary, point_case_text, prepare_point
from multiscale.sweeps.grid import grid_points, parse_grid_option, point_name, split_values

ROOT = Path(__file__).resolve().parents[1]
CASE = ROOT / "cases" / "vacancy-cu"
E_F_444 = 1.2736997  # eV, relaxed 4x4x4 vacancy formation energy (README, LAMMPS-checked)


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def summary_mtimes(out: Path) -> dict[str, int]:
    return {p.parent.parent.name: p.stat().st_mtime_ns for p in out.glob("*/output/summary.json")}


@pytest.fixture(scope="module")
def two_by_two(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "sizes"
    args = ["--grid", "lattice.size=[3,3,3],[4,4,4]", "--grid", "relax.fmax=1e-3,1e-4"]
    first = cli("sweep", CASE, *args, "--output", out, "--jobs", "2")
    rows, mtimes = read_csv(out / "sweep.csv"), summary_mtimes(out)
    second = cli("sweep", CASE, *args, "--output", out)
    return first, second, rows, mtimes, out


def test_two_by_two_sweep_writes_one_row_per_point(two_by_two):
    first, _, rows, _, out = two_by_two
    assert first.returncode == 0, first.stderr
    assert len(rows) == 4
    assert [(r["lattice.size"], r["relax.fmax"]) for r in rows] == [
        ("[3, 3, 3]", "0.001"),
        ("[3, 3, 3]", "0.0001"),
        ("[4, 4, 4]", "0.001"),
        ("[4, 4, 4]", "0.0001"),
    ]
    for row in rows:
        n = int(row["lattice.size"][1])
        assert (row["status"], row["action"], row["exit_code"]) == ("converged", "ran", "0")
        assert int(row["n_atoms"]) == 4 * n**3 - 1
        folder = out / row["point"]
        assert row["point"] == f"lattice.size={n}_{n}_{n},relax.fmax={row['relax.fmax']}"
        summary = json.loads((folder / "output" / "summary.json").read_text())
        assert float(row["energy_eV"]) == summary["energy_eV"]
        assert float(row["max_force_eV_per_A"]) <= float(row["relax.fmax"])
        # the point's folder is a case on its own, holding the point's values
        config = load_case(folder).config
        assert config.lattice.size == (n, n, n)
        assert config.relax.fmax == float(row["relax.fmax"])
        resolved = (folder / "output" / "case.resolved.toml").read_text()
        assert f"size = [{n}, {n}, {n}]  # user" in resolved
    tight_444 = next(
        r for r in rows if r["lattice.size"] == "[4, 4, 4]" and r["relax.fmax"] == "0.0001"
    )
    assert float(tight_444["energy_eV"]) == pytest.approx(E_F_444, abs=1e-6)
    assert first.stderr.count("sweep: [") == 4  # one progress line per point


def test_second_run_skips_the_complete_points(two_by_two):
    _, second, rows, mtimes, out = two_by_two
    assert second.returncode == 0, second.stderr
    again = read_csv(out / "sweep.csv")
    assert [r["action"] for r in again] == ["skipped"] * 4
    assert summary_mtimes(out) == mtimes  # nothing ran again
    assert second.stderr.count("already complete, skipped") == 4
    keep = ("point", "status", "energy_eV", "n_atoms", "exit_code")
    assert [{k: r[k] for k in keep} for r in again] == [{k: r[k] for k in keep} for r in rows]


def test_a_failed_point_is_recorded_and_the_others_run(tmp_path):
    out = tmp_path / "sweep"
    lines = []
    rows = multiscale.sweep(
        CASE,
        {"potential.file": ["missing.eam.alloy", "Cu_mishin1.eam.alloy"]},
        output=out,
        overrides=["lattice.size=[3,3,3]"],
        progress=lines.append,
    )
    assert [r["status"] for r in rows] == ["failed", "converged"]
    failed, good = rows
    assert failed["exit_code"] == 2
    assert 'potential.file = "missing.eam.alloy" not found' in failed["error"]
    assert failed["energy_eV"] is None
    assert good["exit_code"] == 0 and good["n_atoms"] == 107
    assert [r["status"] for r in read_csv(out / "sweep.csv")] == ["failed", "converged"]
    assert len(lines) == 2 and "exit code 2" in lines[0]
    # the failed point is run again next time, the converged one is not
    again = multiscale.sweep(
        CASE,
        {"potential.file": ["missing.eam.alloy", "Cu_mishin1.eam.alloy"]},
        output=out,
        overrides=["lattice.size=[3,3,3]"],
    )
    assert [r["action"] for r in again] == ["ran", "skipped"]


def test_an_interrupted_sweep_marks_the_running_point_and_leaves_the_rest_pending(tmp_path):
    """SIGINT while the first of two points runs: it is ``interrupted``, the second ``pending``."""
    import signal
    import subprocess
    import sys
    import time

    from conftest import subprocess_environment

    out = tmp_path / "sweep"
    # SIGINT at its default in the sweep: a shell that started these tests in the background
    # (`pytest &` without job control) made it ignored, and an ignored SIGINT is inherited
    # through exec, so the sweep never saw the interrupt and ran both points
    proc = subprocess.Popen(
        [sys.executable, "-m", "multiscale", "sweep", CASE, "--output", out, "--jobs", "1"]
        + ["--grid", "relax.fmax=1e-3,1e-4", "--set", "lattice.size=[3,3,3]"],
        env=subprocess_environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 120
    while not list(out.glob("*/run.log")) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert list(out.glob("*/run.log")), "the first point never started"
    proc.send_signal(signal.SIGINT)  # the point's own process is still importing
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert "Traceback" not in stderr
    rows = read_csv(out / "sweep.csv")
    assert [(r["status"], r["action"]) for r in rows] == [
        ("interrupted", "interrupted"),
        ("pending", "pending"),
    ]
    assert not (out / rows[0]["point"] / "output" / "summary.json").exists()


def test_an_interrupt_that_lands_on_a_worker_thread_stops_the_sweep_at_once(tmp_path, monkeypatch):
    """The kernel may hand SIGINT to any thread; one on the thread running a point must
    still stop the sweep while that point runs, not once it has finished (seen in CI: the
    first point ran to its end, the second started and was killed, both were marked
    ``interrupted``)."""
    import signal
    import threading
    import time

    import multiscale.sweeps as sweeps
    from multiscale.sweeps import runner

    calls, returned = [], threading.Event()

    def point(folder, *, jobs=1):
        calls.append(folder.name)
        if len(calls) == 1:  # Ctrl-C arrives on this worker thread, not on the main one
            signal.pthread_kill(threading.get_ident(), signal.SIGINT)
        start = time.monotonic()
        while not runner._stopping.is_set() and time.monotonic() - start < 30:
            time.sleep(0.01)
        calls.append("stopped" if runner._stopping.is_set() else "ran to its end")
        returned.set()
        return {"exit_code": 0, "error": "", "run_time_s": 0.0, "finished": ""}

    monkeypatch.setattr(sweeps, "run_point", point)
    out = tmp_path / "sweep"
    # Python's Ctrl-C handler, whatever this process inherited: started in the background by a
    # shell without job control (`nohup … &`), SIGINT is ignored and Python installs no handler,
    # and the interrupt would be lost (seen: DID NOT RAISE)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            multiscale.sweep(
                CASE, {"relax.fmax": [1e-3, 1e-4]}, output=out, overrides=["lattice.size=[3,3,3]"]
            )
    finally:
        signal.signal(signal.SIGINT, previous)
    assert returned.wait(60)
    assert calls == ["relax.fmax=0.001", "stopped"]
    rows = read_csv(out / "sweep.csv")
    assert [(r["status"], r["action"]) for r in rows] == [
        ("interrupted", "interrupted"),
        ("pending", "pending"),
    ]


@pytest.mark.parametrize(
    ("grid", "named"),
    [
        ("relax.metod=lbfgs,fire", "--grid relax.metod: unknown key 'relax.metod'"),
        ("relax.fmax=1e-4,-1", "--grid relax.fmax: relax.fmax must be finite and > 0, got -1"),
        ("lattice.size=[3,3,3],[4,4]", "--grid lattice.size: lattice.size must be an array of 3"),
        ("relax.method=fire,bfgs", '--grid relax.method: relax.method = "bfgs" is not allowed'),
        ("output.directory=a,b", "--grid output.directory: the sweep sets output.directory"),
        ("relax.method=fire,fire", '--grid relax.method: value "fire" is given twice'),
    ],
)
def test_a_bad_grid_is_refused_before_any_point_runs(tmp_path, grid, named):
    out = tmp_path / "sweep"
    proc = cli("sweep", CASE, "--grid", "relax.max_steps=500,1000", "--grid", grid, "--output", out)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"multiscale: error: {named}"), proc.stderr
    assert not out.exists()  # nothing prepared, nothing run


def test_the_python_function_refuses_a_bad_grid_before_anything(tmp_path):
    with pytest.raises(CaseError, match=r"^--grid relax\.fmax: relax\.fmax must be finite"):
        multiscale.sweep(CASE, {"relax.fmax": [1e-4, 0.0]}, output=tmp_path / "s")
    with pytest.raises(CaseError, match=r"^--jobs"):
        multiscale.sweep(CASE, {"relax.fmax": [1e-4]}, output=tmp_path / "s", jobs=0)
    assert not (tmp_path / "s").exists()


def test_grid_values_split_at_top_level_commas_only():
    assert split_values("1, [4,4,4] ,'a,b',{x = 1, y = 2}") == [
        "1",
        "[4,4,4]",
        "'a,b'",
        "{x = 1, y = 2}",
    ]
    assert parse_grid_option("lattice.size=[3,3,3],[4,4,4]") == (
        "lattice.size",
        [[3, 3, 3], [4, 4, 4]],
    )
    assert parse_grid_option("relax.method=fire,lbfgs") == ("relax.method", ["fire", "lbfgs"])
    with pytest.raises(CaseError, match="--grid relax.fmax: an empty value"):
        parse_grid_option("relax.fmax=1e-4,,1e-3")


def test_point_names_are_safe_and_follow_the_grid_order():
    points = grid_points({"coupling.kappa": [5, 2.5], "geometry.h_min": ["auto", 2.3]})
    assert [p.name for p in points] == [
        "coupling.kappa=5,geometry.h_min=auto",
        "coupling.kappa=5,geometry.h_min=2.3",
        "coupling.kappa=2.5,geometry.h_min=auto",
        "coupling.kappa=2.5,geometry.h_min=2.3",
    ]
    assert point_name({"a.b": "x/../y z"}) == "a.b=x_.._y_z"
    long = point_name({"a.b": "v" * 400})
    assert len(long) <= 120 and "/" not in long
    with pytest.raises(CaseError, match="share the folder name"):
        grid_points({"a.b": ["x y", "x/y"]})


def test_a_point_case_file_is_the_case_with_its_values(tmp_path):
    base = load_case(CASE)
    values = {"lattice.size": [3, 4, 5], "relax.method": "fire"}
    text = point_case_text(base, values=values, overrides=["relax.fmax=1e-5"])
    (tmp_path / "case.toml").write_text(text)
    expected = load_case(
        CASE, overrides=["lattice.size=[3,4,5]", 'relax.method="fire"', "relax.fmax=1e-5"]
    )
    assert load_case(tmp_path).config == expected.config


def test_a_summary_older_than_its_case_file_is_not_complete(tmp_path):
    (tmp_path / "output").mkdir()
    summary = tmp_path / "output" / "summary.json"
    summary.write_text(json.dumps({"status": "converged"}))
    (tmp_path / "case.toml").write_text("")
    older = summary.stat().st_mtime_ns - 10**9
    os.utime(summary, ns=(older, older))
    assert completed_summary(tmp_path) is None  # the problem changed after the run
    os.utime(summary, ns=(older + 2 * 10**9, older + 2 * 10**9))
    assert completed_summary(tmp_path) == {"status": "converged"}
    assert completed_summary(tmp_path, needs_reference=True) is None
    summary.write_text(json.dumps({"status": "failed"}))
    assert completed_summary(tmp_path) is None


def test_a_point_case_file_is_rewritten_only_when_its_problem_changes(tmp_path):
    base = load_case(CASE)
    folder = tmp_path / "point"
    text = point_case_text(base, values={"relax.fmax": 1e-3})
    prepare_point(base, folder, text=text, exclude=[])
    case_file = folder / "case.toml"
    past = case_file.stat().st_mtime_ns - 10**9
    os.utime(case_file, ns=(past, past))
    prepare_point(base, folder, text=text, exclude=[])
    assert case_file.stat().st_mtime_ns == past  # same problem: a summary stays complete
    changed = point_case_text(base, values={"relax.fmax": 1e-3}, overrides=["relax.max_steps=9"])
    prepare_point(base, folder, text=changed, exclude=[])
    assert case_file.stat().st_mtime_ns > past  # a --set changed it: the point runs again
    assert (folder / "README.md").read_text() == (CASE / "README.md").read_text()


def test_the_example_sweep_case_checks_clean():
    # cases/sweeps/void-small is one level deeper than test_house's cases/*/case.toml
    proc = cli("check", ROOT / "cases" / "sweeps" / "void-small")
    assert proc.returncode == 0, proc.stderr
