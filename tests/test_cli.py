"""The ``multiscale`` command line: version, check, run of the vacancy case, bad input.

The CLI runs in a fresh interpreter (``python -m multiscale``), as a user would run it. The
exact agreement with LAMMPS is tested elsewhere; here the formation energy only has to be the
known value for Mishin's Cu (1.27 eV) within 0.02 eV.
"""

import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import cli

ROOT = Path(__file__).resolve().parents[1]
CASE = ROOT / "cases" / "vacancy-cu"
SUMMARY_KEYS = {
    "status",
    "energy_eV",
    "n_atoms",
    "max_force_eV_per_A",
    "wall_time_s",
    "potential",
    "lattice_constant_A",
    "e_bulk_eV",
    "e_defect_eV",
    "steps",
}


def one_line_error(proc) -> str:
    """The CLI's error: exactly one line on stderr, ``multiscale: error: ...``."""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("multiscale: error: "), proc.stderr
    return lines[0]


def case_copy(tmp_path: Path, **replace: str) -> Path:
    """Copy the vacancy case into ``tmp_path/case``, replacing whole lines of case.toml."""
    folder = tmp_path / "case"
    folder.mkdir()
    text = (CASE / "case.toml").read_text()
    for old, new in replace.items():
        lines = [ln for ln in text.splitlines() if ln.split("=")[0].strip() == old]
        assert len(lines) == 1, f"case.toml has no single '{old} = ...' line"
        text = text.replace(lines[0], new)
    (folder / "case.toml").write_text(text)
    return folder


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "out"
    proc = cli("run", CASE, "--set", "lattice.size=[3,3,3]", "--output", out)
    return proc, out


def test_version_names_the_installed_version():
    proc = cli("--version")
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"multiscale {importlib.metadata.version('multiscale')}"


def test_parser_does_not_import_torch():
    code = "import sys\nfrom multiscale.cli import build_parser\nbuild_parser()\n"
    code += "print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_check_validates_and_writes_nothing(tmp_path):
    folder = case_copy(tmp_path)
    proc = cli("check", folder, "--set", "lattice.size=[4,4,4]")
    assert proc.returncode == 0, proc.stderr
    assert "Cu_mishin1.eam.alloy" in proc.stdout
    assert "256 sites" in proc.stdout
    assert "lattice.size" in proc.stdout  # listed among the --set keys
    assert sorted(p.name for p in folder.iterdir()) == ["case.toml"]


def test_run_vacancy_formation_energy(small_run):
    proc, out = small_run
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert SUMMARY_KEYS <= summary.keys()
    assert summary["status"] == "converged"
    assert summary["n_atoms"] == 107
    assert summary["max_force_eV_per_A"] <= 1e-4
    assert abs(summary["energy_eV"] - 1.27) < 0.02
    n = summary["n_atoms"] + 1
    e_f = summary["e_defect_eV"] - (n - 1) / n * summary["e_bulk_eV"]
    assert summary["energy_eV"] == pytest.approx(e_f, abs=1e-9)


def test_run_writes_readable_extxyz(small_run):
    import ase.io

    _, out = small_run
    atoms = ase.io.read(out / "atoms" / "relaxed.extxyz")
    summary = json.loads((out / "summary.json").read_text())
    assert len(atoms) == 107
    assert atoms.get_forces().shape == (107, 3)
    assert abs(atoms.get_forces()).max() <= 1e-4
    assert atoms.get_potential_energy() == pytest.approx(summary["e_defect_eV"], abs=1e-9)
    assert "region" in atoms.arrays


def test_resolved_case_records_origins_and_reloads(small_run):
    from multiscale.config import load_case

    _, out = small_run
    text = (out / "case.resolved.toml").read_text()
    assert "size = [3, 3, 3]  # --set" in text
    assert 'element = "Cu"  # user' in text
    assert "log.txt" in {p.name for p in out.iterdir()}
    original = load_case(CASE, overrides=["lattice.size=[3,3,3]"]).config
    again = load_case(out / "case.resolved.toml").config
    assert again.lattice == original.lattice
    assert again.relax == original.relax
    assert Path(again.potential.file).name == "Cu_mishin1.eam.alloy"


def test_failed_run_keeps_earlier_outputs(small_run):
    _, out = small_run
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != "log.txt"}
    proc = cli("run", CASE, "--output", out, "--set", 'lattice.element="Al"')
    assert proc.returncode == 2
    assert {p: p.read_bytes() for p in before} == before
    assert "run failed" in (out / "log.txt").read_text()


def test_not_converged_run_exits_3(tmp_path):
    out = tmp_path / "out"
    proc = cli(
        "run", CASE, "--output", out, "--set", "lattice.size=[3,3,3]", "--set", "relax.max_steps=2"
    )
    assert proc.returncode == 3, proc.stderr
    assert json.loads((out / "summary.json").read_text())["status"] == "not_converged"


def test_folder_without_case_file(tmp_path):
    proc = cli("run", tmp_path)
    assert proc.returncode == 2
    line = one_line_error(proc)
    assert str(tmp_path) in line and "case.toml" in line


@pytest.mark.parametrize(
    ("replace", "expected"),
    [
        ({"size": "sise = [3, 3, 3]"}, ["lattice.sise", "structure, element, a, size"]),
        ({"structure": 'structure = "fcx"'}, ["lattice.structure", '"fcx"', "fcc", "bcc"]),
        ({"file": 'file = "missing.eam.alloy"'}, ["potential.file", "missing.eam.alloy"]),
        ({"element": 'element = "Al"'}, ["lattice.element", '"Al"', "Cu_mishin1.eam.alloy"]),
        ({"a": 'a = "big"'}, ["lattice.a", '"relax"', "Å"]),
    ],
    ids=["unknown-key", "unknown-lattice", "missing-potential", "absent-element", "bad-type"],
)
def test_bad_case_file_is_one_line_exit_2(tmp_path, replace, expected):
    folder = case_copy(tmp_path, **replace)
    for command in ("check", "run"):
        proc = cli(command, folder)
        assert proc.returncode == 2, proc.stderr
        line = one_line_error(proc)
        assert str(folder / "case.toml") in line
        for word in expected:
            assert word in line
    assert not (folder / "output" / "summary.json").exists()


def test_bad_set_names_the_option():
    proc = cli("check", CASE, "--set", "relax.fmx=1e-3")
    assert proc.returncode == 2
    line = one_line_error(proc)
    assert "--set relax.fmx" in line and "fmax" in line


def test_traceback_flag_adds_the_traceback(tmp_path):
    proc = cli("-T", "check", tmp_path)
    assert proc.returncode == 2
    assert "Traceback" in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("multiscale: error: ")


def test_set_values_are_toml_or_bare_strings():
    from multiscale.config import parse_override
    from multiscale.errors import CaseError

    assert parse_override("lattice.size=[4,4,4]") == ("lattice.size", [4, 4, 4])
    assert parse_override("relax.fmax=1e-3") == ("relax.fmax", 1e-3)
    assert parse_override("run.device=cpu") == ("run.device", "cpu")
    assert parse_override('lattice.a="relax"') == ("lattice.a", "relax")
    with pytest.raises(CaseError, match="KEY=VALUE"):
        parse_override("lattice.size")


def test_relaxed_lattice_constant_minimises_the_energy(small_run, tmp_path):
    _, out_fixed = small_run
    out = tmp_path / "out"
    proc = cli(
        "run", CASE, "--output", out, "--set", "lattice.size=[3,3,3]", "--set", 'lattice.a="relax"'
    )
    assert proc.returncode == 0, proc.stderr
    fixed = json.loads((out_fixed / "summary.json").read_text())
    relaxed = json.loads((out / "summary.json").read_text())
    assert relaxed["lattice_constant_A"] == pytest.approx(3.615, abs=1e-3)  # Mishin et al.
    assert relaxed["e_bulk_eV"] < fixed["e_bulk_eV"]
    assert "relaxed: 3.61" in (out / "case.resolved.toml").read_text()


def test_lattice_names_match_the_builder():
    from atomistic.lattice import LATTICES
    from multiscale.config import LATTICE_NAMES

    assert tuple(sorted(LATTICE_NAMES)) == tuple(sorted(LATTICES))


RANK_LOCAL_FAILURE = """
import sys
import dolfinx_solver  # noqa: F401
from mpi4py import MPI
import multiscale.commands.check as check
from multiscale.cli import main


def fails_on_rank_1(args):
    if MPI.COMM_WORLD.rank == 1:
        raise RuntimeError("only this rank failed")
    MPI.COMM_WORLD.Barrier()  # rank 0 waits in a collective that rank 1 never joins
    return 0


check.main = fails_on_rank_1
sys.exit(main(["check", sys.argv[1]]))
"""


def test_a_failure_on_one_rank_is_printed_and_ends_every_rank(tmp_path):
    """Under mpiexec a run that fails on rank 1 only names rank 1 and does not hang rank 0."""
    import shutil

    mpiexec = Path(sys.executable).with_name("mpiexec")
    launcher = str(mpiexec) if mpiexec.exists() else shutil.which("mpiexec")
    if launcher is None:
        pytest.skip("no mpiexec")
    script = tmp_path / "fail.py"
    script.write_text(RANK_LOCAL_FAILURE)
    command = [launcher, "-n", "2", sys.executable, str(script), str(CASE)]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0 and not proc.stdout and not proc.stderr:
        # mpiexec once exited 1 with no output at all on a loaded CI machine (the process
        # manager failed to launch; the script never ran): launch once more.
        proc = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "multiscale: error: rank 1: RuntimeError: only this rank failed" in proc.stderr
    assert "Traceback" not in proc.stderr
