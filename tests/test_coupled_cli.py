"""``multiscale run`` of coupled cases: the patch test end to end, bad input, MPI invariance.

The CLI runs in a fresh interpreter, as a user runs it. The patch test has no perturbation:
the homogeneous state is the starting point, and with ghost-force correction it must already
be the solution (forces at round-off, zero Newton steps) with every atom at ``F X``.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
PATCH = ROOT / "cases" / "patch-test"
MPIEXEC = Path(sys.executable).with_name("mpiexec")
SUMMARY_KEYS = {
    "status",
    "energy_eV",
    "n_atoms",
    "n_fe_dofs",
    "max_force_eV_per_A",
    "wall_time_s",
    "n_free_atoms",
    "n_pad_atoms",
    "newton_iterations",
    "krylov_iterations",
    "ghost_force_eV_per_A",
    "relaxation_energy_eV",
}


def cli(*args, launcher=()):
    """``python -m multiscale ARGS``, one thread per process (two ranks fill two cores).

    The mesh no longer depends on the thread count (it differed by one vertex, through the
    relaxed lattice constant; see ``test_cauchy_born``), but serial and 2-rank runs are
    compared on equal terms.
    """
    return subprocess.run(
        [*launcher, sys.executable, "-m", "multiscale", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )


def one_line_error(proc) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("multiscale: error: "), proc.stderr
    return lines[0]


def patch_text() -> str:
    """The patch-test case file, its (multi-line) strain array on one line."""
    text = (PATCH / "case.toml").read_text()
    return re.sub(r"strain = \[\[.*?\]\]", lambda m: " ".join(m.group(0).split()), text, flags=re.S)


def case_copy(tmp_path: Path, text: str | None = None, **replace: str) -> Path:
    """The patch-test case in ``tmp_path/case``, whole ``key = ...`` lines replaced."""
    folder = tmp_path / "case"
    folder.mkdir()
    text = patch_text() if text is None else text
    for old, new in replace.items():
        lines = [ln for ln in text.splitlines() if ln.split("=")[0].strip() == old]
        assert len(lines) == 1, f"case.toml has no single '{old} = ...' line"
        text = text.replace(lines[0], new)
    (folder / "case.toml").write_text(text)
    return folder


@pytest.fixture(scope="module")
def patch_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("patch") / "out"
    return cli("run", PATCH, "--output", out), out


def test_patch_test_converges_at_round_off(patch_run):
    proc, out = patch_run
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert SUMMARY_KEYS <= summary.keys()
    assert summary["status"] == "converged"
    assert summary["max_force_eV_per_A"] < 1e-8
    assert summary["newton_iterations"] == [0]
    assert abs(summary["relaxation_energy_eV"]) < 1e-8
    assert summary["n_atoms"] == summary["n_free_atoms"] + summary["n_pad_atoms"]
    # without the correction the scheme has ghost forces: the patch test is not trivial
    assert summary["ghost_force_eV_per_A"] > 1e-3


def test_patch_test_atoms_sit_at_the_homogeneous_positions(patch_run):
    import ase.io

    _, out = patch_run
    summary = json.loads((out / "summary.json").read_text())
    atoms = ase.io.read(out / "atoms" / "coupled.extxyz")
    assert len(atoms) == summary["n_atoms"]
    F = np.eye(3) + np.array(summary["strain"])
    X = atoms.arrays["reference_position"]
    np.testing.assert_allclose(atoms.positions, X @ F.T, atol=1e-7)  # extxyz keeps 8 decimals
    region, beta = atoms.arrays["region"], atoms.arrays["beta"]
    assert set(np.unique(region)) == {0, 1, 2}
    np.testing.assert_array_equal(beta[region == 0], 1.0)
    np.testing.assert_array_equal(beta[region == 2], 0.0)
    assert np.all((beta[region == 1] > 0) & (beta[region == 1] < 1))


def test_patch_test_with_the_shipped_committee(tmp_path):
    """The committee drives the atoms and its mean the Cauchy–Born continuum: still exact."""
    committee = ROOT / "cases" / "potentials" / "cu-committee.pt"
    out = tmp_path / "out"
    proc = cli(
        "run",
        PATCH,
        "--output",
        out,
        "--set",
        'potential.kind="mlip"',
        "--set",
        f"potential.file={json.dumps(str(committee))}",
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert Path(summary["potential"]) == committee
    assert summary["status"] == "converged" and summary["newton_iterations"] == [0]
    assert summary["max_force_eV_per_A"] < 1e-8
    assert summary["ghost_force_eV_per_A"] > 1e-3
    assert summary["lattice_constant_A"] != pytest.approx(3.614925066, abs=1e-6)  # its own a0


def test_patch_test_writes_every_output(patch_run):
    from multiscale.config import load_case

    _, out = patch_run
    names = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert {"summary.json", "case.resolved.toml", "log.txt", "atoms/coupled.extxyz"} <= names
    assert {"continuum/continuum.xdmf", "continuum/continuum.h5"} <= names
    assert (out / "continuum" / "continuum_nodes.bp").is_dir()
    text = (out / "case.resolved.toml").read_text()
    assert 'outer = "disk"  # user' in text
    assert 'handshake_width = "auto"  # default; Å; 2 r_cut = 11.01' in text
    assert load_case(out / "case.resolved.toml").config.geometry == load_case(PATCH).config.geometry


@pytest.mark.parametrize(
    ("replace", "expected"),
    [
        ({"core_radius": "core_radus = 6.0"}, ["geometry.core_radus", "core_radius", "h_max"]),
        ({"outer": 'outer = "box"'}, ["geometry.outer", '"box"', '"rectangle" or "disk"']),
        (
            {"strain": "strain = [[0.01, 0.0, 0.002], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]"},
            ["boundary.strain", "third column", "2.5d"],
        ),
    ],
    ids=["unknown-geometry-key", "shape-not-for-2.5d", "third-strain-column"],
)
def test_bad_coupled_case_is_one_line_exit_2(tmp_path, replace, expected):
    folder = case_copy(tmp_path, **replace)
    proc = cli("run", folder)
    assert proc.returncode == 2, proc.stderr
    line = one_line_error(proc)
    assert str(folder / "case.toml") in line
    for word in expected:
        assert word in line
    assert not (folder / "output" / "summary.json").exists()


def test_void_too_close_to_the_handshake_is_one_line_exit_2(tmp_path):
    text = patch_text().replace('[defect]\nkind = "none"', '[defect]\nkind = "void"\nradius = 1.5')
    assert "radius = 1.5" in text
    folder = case_copy(tmp_path, text)
    for command in ("check", "run"):
        proc = cli(command, folder)
        assert proc.returncode == 2, proc.stderr
        line = one_line_error(proc)
        for word in (str(folder / "case.toml"), "defect.radius", "2 r_cut", "core_radius"):
            assert word in line
    proc = cli("check", folder, "--set", "geometry.core_radius=13.0")
    assert proc.returncode == 0, proc.stderr


@pytest.mark.skipif(not MPIEXEC.exists() and shutil.which("mpiexec") is None, reason="no mpiexec")
def test_two_ranks_give_the_serial_energy(patch_run, tmp_path):
    _, serial_out = patch_run
    mpiexec = str(MPIEXEC) if MPIEXEC.exists() else shutil.which("mpiexec")
    out = tmp_path / "out"
    proc = cli("run", PATCH, "--output", out, launcher=(mpiexec, "-n", "2"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("coupled energy") == 1  # rank 0 alone prints
    serial = json.loads((serial_out / "summary.json").read_text())
    parallel = json.loads((out / "summary.json").read_text())
    assert parallel["mpi_ranks"] == 2
    assert parallel["status"] == "converged"
    assert parallel["n_fe_dofs"] == serial["n_fe_dofs"]
    assert parallel["energy_eV"] == pytest.approx(serial["energy_eV"], rel=1e-9)


def test_solver_keys_reach_the_solver(tmp_path):
    """``solver.linear_solver`` and ``solver.tangent_tolerance`` change the path, not the
    answer: a small 2.5d void relaxed with multigrid and an exact tangent matches the default
    (MUMPS, lagged tangent) to solver tolerance."""
    text = patch_text().replace('[defect]\nkind = "none"', '[defect]\nkind = "void"\nradius = 1.5')
    folder = case_copy(tmp_path, text)
    runs = {}
    for name, extra in (
        ("default", ()),
        ("gamg", ("--set", 'solver.linear_solver="gamg"', "--set", "solver.tangent_tolerance=0")),
    ):
        out = tmp_path / name
        proc = cli("run", folder, "--output", out, "--set", "geometry.core_radius=13.0", *extra)
        assert proc.returncode == 0, proc.stderr
        runs[name] = (json.loads((out / "summary.json").read_text()), out)
    (default, _), (gamg, gamg_out) = runs["default"], runs["gamg"]
    assert default["relaxation_energy_eV"] < -1e-3  # the void relaxes: real Newton steps
    assert gamg["energy_eV"] == pytest.approx(default["energy_eV"], rel=1e-11)
    from multiscale.config import load_case

    resolved = load_case(gamg_out / "case.resolved.toml").config.solver
    assert (resolved.linear_solver, resolved.tangent_tolerance) == ("gamg", 0.0)
    assert [s["linear_solver"] for s in default["load_steps"]] == ["mumps"]  # auto in 2.5d
    assert [s["linear_solver"] for s in gamg["load_steps"]] == ["gamg"]
