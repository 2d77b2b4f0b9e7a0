"""``plots/*.png`` and ``iterations.csv`` of ``multiscale run``, and ``multiscale plot``.

Two fast runs in fresh interpreters: the vacancy case on a 3×3×3 cell (its relaxation) and
the 2.5d patch test with a small void in two load steps (Newton iterations to take). The
recorded iterations must agree with what the summary says each solve ended with (an
independent record: the solver's result, not its progress callback), the figures must be
valid, non-blank PNG images, ``multiscale plot`` must draw them again, and a folder that is
not a run output must be refused in one line.
"""

import csv
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import cli

ROOT = Path(__file__).resolve().parents[1]
VACANCY = ROOT / "cases" / "vacancy-cu"
PATCH = ROOT / "cases" / "patch-test"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MPIEXEC = Path(sys.executable).with_name("mpiexec")


def void_case(tmp_path: Path) -> Path:
    """The patch test with a void of radius 1.5 Å in a core of 13 Å, in two load steps."""
    text = (PATCH / "case.toml").read_text()
    text = re.sub(r"strain = \[\[.*?\]\]", lambda m: " ".join(m.group(0).split()), text, flags=re.S)
    text = text.replace('[defect]\nkind = "none"', '[defect]\nkind = "void"\nradius = 1.5')
    text = text.replace("core_radius = 6.0", "core_radius = 13.0")
    text = text.replace("fmax = 1e-8", "fmax = 1e-6")
    assert "radius = 1.5" in text and "core_radius = 13.0" in text and "fmax = 1e-6" in text
    folder = tmp_path / "void"
    folder.mkdir()
    (folder / "case.toml").write_text(text + "\n[loading]\nsteps = 2\n")
    return folder


@pytest.fixture(scope="module")
def vacancy_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("vacancy") / "out"
    proc = cli("run", VACANCY, "--set", "lattice.size=[3,3,3]", "--output", out)
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture(scope="module")
def coupled_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("coupled")
    out = tmp / "out"
    proc = cli("run", void_case(tmp), "--output", out)
    assert proc.returncode == 0, proc.stderr
    return out


def iterations(out: Path) -> list[dict[str, str]]:
    with open(out / "iterations.csv", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def assert_png(path: Path) -> None:
    """A PNG that decodes to a picture of some size that is not one flat colour."""
    import matplotlib.image

    assert path.read_bytes()[:8] == PNG_SIGNATURE, path
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and min(image.shape[:2]) > 200, (path, image.shape)
    assert image[..., :3].std() > 0.01, f"{path} is blank"


def pngs(out: Path) -> set[str]:
    return {p.name for p in (out / "plots").iterdir()}


def test_vacancy_iterations_end_at_the_relaxed_state(vacancy_run):
    summary = json.loads((vacancy_run / "summary.json").read_text())
    rows = iterations(vacancy_run)
    assert len(rows) >= 2 and {r["solve"] for r in rows} == {"1"}
    assert [int(r["iteration"]) for r in rows] == list(range(1, len(rows) + 1))
    energy = np.array([float(r["energy_eV"]) for r in rows])
    force = np.array([float(r["max_force_eV_per_A"]) for r in rows])
    assert energy.min() == pytest.approx(summary["e_defect_eV"], abs=1e-6)
    assert force[0] > 10 * summary["fmax_eV_per_A"]  # it had to relax
    assert force.min() <= summary["fmax_eV_per_A"]


def test_vacancy_run_draws_its_solver_figure(vacancy_run):
    assert pngs(vacancy_run) == {"solver.png"}
    assert_png(vacancy_run / "plots" / "solver.png")


def test_coupled_iterations_match_each_load_step(coupled_run):
    summary = json.loads((coupled_run / "summary.json").read_text())
    rows = iterations(coupled_run)
    steps = summary["load_steps"]
    assert len(steps) == 2 and all(s["status"] == "converged" for s in steps)
    for k, step in enumerate(steps, start=1):
        solve = [r for r in rows if r["solve"] == str(k)]
        assert {r["label"] for r in solve} == {f"load step {k}/2 Newton"}
        assert [int(r["iteration"]) for r in solve] == list(range(step["newton_iterations"] + 1))
        assert step["newton_iterations"] >= 2  # the void relaxes: Newton has work to do
        last = solve[-1]
        assert float(last["energy_eV"]) == pytest.approx(step["energy_eV"], abs=1e-9)
        atoms, fe = float(last["max_atom_force_eV_per_A"]), float(last["max_fe_residual_eV_per_A"])
        assert atoms == pytest.approx(step["max_atom_force_eV_per_A"], rel=1e-9)
        assert fe == pytest.approx(step["max_fe_residual_eV_per_A"], rel=1e-9, abs=1e-15)
        assert float(last["max_force_eV_per_A"]) == max(atoms, fe)
    assert len(rows) == sum(s["newton_iterations"] + 1 for s in steps)


def test_coupled_run_draws_its_figures(coupled_run):
    assert pngs(coupled_run) == {"solver.png", "load_steps.png", "counts.png", "atoms.png"}
    for name in pngs(coupled_run):
        assert_png(coupled_run / "plots" / name)
    log = (coupled_run / "log.txt").read_text()
    assert "plots: solver.png, load_steps.png, counts.png, atoms.png" in log


def test_plot_draws_the_figures_again(coupled_run, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(coupled_run, out)
    before = {name: (out / "plots" / name).read_bytes() for name in pngs(out)}
    shutil.rmtree(out / "plots")
    (out / "plots").mkdir()
    (out / "plots" / "convergence.png").write_bytes(b"an earlier adaptive run's figure")
    proc = cli("plot", out)
    assert proc.returncode == 0, proc.stderr
    assert pngs(out) == set(before)  # the stale adaptive figure is gone
    for name in before:
        assert_png(out / "plots" / name)
        assert str(out / "plots" / name) in proc.stdout
    # the same files give the same picture (matplotlib is deterministic with Agg)
    assert (out / "plots" / "counts.png").read_bytes() == before["counts.png"]


@pytest.mark.parametrize("what", ["empty", "missing", "reference", "garbage"])
def test_plot_refuses_a_folder_that_is_not_a_run_output(tmp_path, what):
    folder = tmp_path / "folder"
    if what != "missing":
        folder.mkdir()
    if what == "reference":
        summary = {"kind": "coupled", "engine": "lammps", "n_atoms": 10}
        (folder / "summary.json").write_text(json.dumps(summary))
    if what == "garbage":
        (folder / "summary.json").write_text("{not json")
    proc = cli("plot", folder)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("multiscale: error: "), proc.stderr
    assert str(folder) in lines[0]
    assert not (folder / "plots").exists()


def test_a_failing_plot_is_a_warning_and_the_run_succeeds(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "plots").write_text("a file where the plots folder goes")
    proc = cli("run", VACANCY, "--set", "lattice.size=[3,3,3]", "--output", out)
    assert proc.returncode == 0, proc.stderr
    warnings = [ln for ln in proc.stderr.splitlines() if "plots/ not drawn" in ln]
    assert len(warnings) == 1 and warnings[0].startswith("multiscale: warning: ")
    assert json.loads((out / "summary.json").read_text())["status"] == "converged"
    assert "plots/ not drawn" in (out / "log.txt").read_text()


def test_adaptive_run_draws_the_loop_figures_too(tmp_path):
    """One adaptive iteration of ``cases/adaptive-refine`` on an 80 Å disk."""
    out = tmp_path / "out"
    case = ROOT / "cases" / "adaptive-refine"
    sets = ["--set", "adaptivity.max_iterations=1", "--set", "geometry.radius=80"]
    proc = cli("run", case, "--output", out, *sets)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    expected = {"solver.png", "load_steps.png", "counts.png", "atoms.png"}
    expected |= {"convergence.png", "terms.png", "actions.png"}
    assert pngs(out) == expected
    for name in expected:
        assert_png(out / "plots" / name)
    # the adaptive re-solve is recorded too, and ends where the summary's last step does
    rows = iterations(out)
    assert [r["label"] for r in rows if r["iteration"] == "0"] == [
        "load step 1/1 Newton",
        "adaptive 1 Newton",
    ]
    last = summary["load_steps"][-1]
    assert float(rows[-1]["energy_eV"]) == pytest.approx(last["energy_eV"], abs=1e-9)
    assert len([r for r in rows if r["solve"] == "2"]) == last["newton_iterations"] + 1
    # history.csv gives back the free atoms that summary.json records
    from multiscale.plotting.files import read_history

    free = [it.n_free_atoms for it in read_history(out)]
    assert free == [it["n_free_atoms"] for it in summary["adaptivity"]["history"]]


@pytest.mark.skipif(not MPIEXEC.exists() and shutil.which("mpiexec") is None, reason="no mpiexec")
def test_two_ranks_draw_the_same_figures(coupled_run, tmp_path):
    """Rank 0 draws alone while rank 1 finalises: nothing may wait on the other rank.

    (Reading the atoms with ASE's default ``parallel=True``, or the mesh with dolfinx on
    ``COMM_SELF``, hung here.)
    """
    mpiexec = str(MPIEXEC) if MPIEXEC.exists() else shutil.which("mpiexec")
    out = tmp_path / "out"
    case = void_case(tmp_path)
    command = [mpiexec, "-n", "2", sys.executable, "-m", "multiscale", "run", case]
    proc = subprocess.run(
        [*map(str, command), "--output", str(out)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert pngs(out) == pngs(coupled_run)
    for name in pngs(out):
        assert_png(out / "plots" / name)
    assert len(iterations(out)) == len(iterations(coupled_run))
