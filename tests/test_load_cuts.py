"""A load step that does not converge is cut in two (``loading.max_cuts``).

The failure is injected into a real solve: the first increment of a small mode-I crack is
solved, then its state is wrecked (random displacements, as a Newton step that left the
basin would leave it) and the step reported as not converged. The cut must put back the
state from before the step (atoms, FE field, the crack's K field) and solve 0 → 1/2 → 1:
the loads of a run with twice the steps, from the same state, which it must reproduce.
"""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import MPIEXEC, subprocess_environment, write_case
from mpi4py import MPI
from test_crack import SMALL_CRACK

import multiscale.kinds.coupled.solve as coupled_solve
from multiscale.config import load_case
from multiscale.kinds.coupled.setup import resolve_setup
from multiscale.kinds.coupled.solve import run_coupled
from multiscale.progress import Reporter

#: Two runs whose states differ in round-off agree in energy only to what the correction
#: passes allow: the passes before the last are solved loosely (the first to 1e-4 eV/Å, the
#: others to a tenth of the change), and where a loose solve stops moves with round-off; they
#: then settle within ``coupling.correction_tolerance`` of the fixed point on either path
#: (measured: 2e-5 to 7e-5 eV on this 1 000-atom crack, 16 549 eV)
PASSES_ENERGY = 5e-4


def _run(setup, steps, max_cuts, monkeypatch, *, wreck_first: bool, reason="DIVERGED_LINE_SEARCH"):
    """Run the crack in ``steps`` steps; record the state each solve starts from."""
    loading = dataclasses.replace(setup.loading, steps=steps, max_cuts=max_cuts)
    setup = dataclasses.replace(setup, loading=loading)
    real = coupled_solve.solve_step
    starts: dict[float, tuple[np.ndarray, np.ndarray]] = {}
    wrecked: list[float] = []

    def solve_step(setup, system, k, reporter, *, previous=None, **kwargs):
        before = k - 1 if previous is None else previous
        load = before / setup.loading.steps
        probe = system.positions[: system.n_free : 7]
        starts.setdefault(load, (system.z.array.copy(), system.background.displacement(probe)))
        record = real(setup, system, k, reporter, previous=previous, **kwargs)
        if wreck_first and not wrecked:
            wrecked.append(k)
            z = system.z.copy()
            rng = np.random.default_rng(0)
            z.array[:] += rng.normal(scale=0.3, size=z.array.shape)
            system.z = z
            return dataclasses.replace(record, converged=False, reason=reason)
        return record

    monkeypatch.setattr(coupled_solve, "solve_step", solve_step)
    run = run_coupled(setup, comm=MPI.COMM_WORLD, reporter=Reporter(enabled=False))
    monkeypatch.setattr(coupled_solve, "solve_step", real)
    return run, starts


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = write_case(tmp_path_factory.mktemp("crack"), SMALL_CRACK)
    return resolve_setup(load_case(folder))


def test_a_step_that_fails_is_solved_in_two_halves_from_the_state_before_it(setup, monkeypatch):
    cut, cut_starts = _run(setup, 1, 2, monkeypatch, wreck_first=True)
    two, two_starts = _run(setup, 2, 0, monkeypatch, wreck_first=False)

    assert cut.cuts == [{"from": 0, "to": 1, "reason": "DIVERGED_LINE_SEARCH"}]
    assert [s.step for s in cut.steps] == [0.5, 1]
    assert [s.load_factor for s in cut.steps] == [s.load_factor for s in two.steps] == [0.5, 1.0]
    assert cut.converged and two.converged
    # the half increment starts where the step did, not from the wrecked state
    z0, bg0 = cut_starts[0.0]
    assert set(cut_starts) == set(two_starts) == {0.0, 0.5}
    assert np.array_equal(z0, two_starts[0.0][0])
    assert np.array_equal(bg0, two_starts[0.0][1])  # the K field of K_0, not K_1
    # and the halves reproduce the run with two steps, to what the correction passes allow
    for a, b in zip(cut.steps, two.steps, strict=True):
        assert a.energy == pytest.approx(b.energy, abs=PASSES_ENERGY)
        assert a.crack_tip_x == pytest.approx(b.crack_tip_x, abs=1e-6)
    za = cut.system.model.layout.atoms_of(cut.system.z)
    zb = two.system.model.layout.atoms_of(two.system.z)
    assert np.abs(za - zb).max() < 1e-3  # measured 1.5e-4 Å


def test_without_cuts_a_step_that_fails_ends_the_run(setup, monkeypatch):
    run, _ = _run(setup, 1, 0, monkeypatch, wreck_first=True)
    assert run.cuts == [] and not run.converged
    assert [s.step for s in run.steps] == [1]


def test_a_step_stalled_at_round_off_is_not_cut(setup, monkeypatch):
    """Forces at their round-off (``DIVERGED_ROUNDOFF``) meet no ``fmax`` below it at any
    load: the step is not cut although cuts are left, and the run ends on it."""
    run, _ = _run(setup, 1, 2, monkeypatch, wreck_first=True, reason="DIVERGED_ROUNDOFF")
    assert run.cuts == [] and not run.converged
    assert [s.step for s in run.steps] == [1]
    assert run.steps[0].reason == "DIVERGED_ROUNDOFF"


class Killed(Exception):
    """Stands in for SIGKILL right after the first load-step checkpoint."""


def test_a_restart_from_the_checkpoint_of_a_half_step_finishes_the_step(
    setup, monkeypatch, tmp_path
):
    from multiscale.kinds.coupled.checkpoint import (
        STEP_CHECKPOINT_DIR,
        read_checkpoint,
        restore_steps,
        write_step_checkpoint,
    )

    straight, _ = _run(setup, 1, 2, monkeypatch, wreck_first=True)
    loading = dataclasses.replace(setup.loading, steps=1, max_cuts=2)
    one = dataclasses.replace(setup, loading=loading)
    real, wrecked = coupled_solve.solve_step, []

    def solve_step(setup, system, k, reporter, *, previous=None, **kwargs):
        record = real(setup, system, k, reporter, previous=previous, **kwargs)
        if not wrecked:
            wrecked.append(k)
            return dataclasses.replace(record, converged=False, reason="DIVERGED_MAXITS")
        return record

    def checkpoint_then_die(run, elapsed):
        write_step_checkpoint(tmp_path, run, elapsed=elapsed)
        raise Killed

    comm, quiet = MPI.COMM_WORLD, Reporter(enabled=False)
    monkeypatch.setattr(coupled_solve, "solve_step", solve_step)
    with pytest.raises(Killed):
        run_coupled(one, comm=comm, reporter=quiet, after_step=checkpoint_then_die)
    monkeypatch.setattr(coupled_solve, "solve_step", real)
    checkpoint = read_checkpoint(tmp_path, comm, folder=STEP_CHECKPOINT_DIR)
    assert checkpoint is not None and checkpoint.record["step"] == 0.5
    restored = restore_steps(checkpoint, one, comm=comm)
    assert [s.step for s in restored.steps] == [0.5]
    run = run_coupled(one, comm=comm, reporter=quiet, restored=restored)
    assert [s.step for s in run.steps] == [0.5, 1]
    assert run.converged
    assert run.last.energy == pytest.approx(straight.last.energy, abs=PASSES_ENERGY)
    assert run.last.crack_tip_x == pytest.approx(straight.last.crack_tip_x, abs=1e-6)


def _adaptive_run(monkeypatch, out, *, steps, max_cuts, fail_at):
    """``cases/adaptive-refine`` (80 Å) with the loop at every step; the first solve of load
    ``fail_at`` is reported as not converged."""
    from multiscale.kinds.coupled.adaptive import AdaptiveLoop

    root = Path(__file__).resolve().parents[1]
    case = load_case(
        root / "cases" / "adaptive-refine",
        overrides=[
            "geometry.radius=80",
            f"loading.steps={steps}",
            f"loading.max_cuts={max_cuts}",
            "adaptivity.max_iterations=1",
            "adaptivity.load_steps=every",
        ],
    )
    setup = resolve_setup(case)
    comm, quiet = MPI.COMM_WORLD, Reporter(enabled=False)
    loop = AdaptiveLoop(case.config.adaptivity, reporter=quiet, out=out, comm=comm)
    real, wrecked = coupled_solve.solve_step, []

    def solve_step(setup, system, k, reporter, *, previous=None, **kwargs):
        record = real(setup, system, k, reporter, previous=previous, **kwargs)
        if k == fail_at and not wrecked:
            wrecked.append(k)
            return dataclasses.replace(record, converged=False, reason="DIVERGED_MAXITS")
        return record

    monkeypatch.setattr(coupled_solve, "solve_step", solve_step)
    return run_coupled(setup, comm=comm, reporter=quiet, adapt=loop), loop


def test_the_adaptive_loop_runs_at_the_half_step(monkeypatch, tmp_path):
    from multiscale.plotting.files import read_history

    run, loop = _adaptive_run(monkeypatch, tmp_path, steps=1, max_cuts=2, fail_at=1)
    assert run.converged and [s.step for s in run.steps] == [0.5, 1]
    steps = [r["load_step"] for r in loop.record.load_steps]
    assert steps == [0.5, 1]
    rows = read_history(tmp_path)
    assert sorted({r.load_step for r in rows}) == [0.5, 1]
    first = [r for r in rows if r.load_step == 0.5]
    assert len(first) == 2 and first[0].action != "stop"  # the loop acted at the half step
    # the full step started on the mesh the loop left at the half step
    second = [r for r in rows if r.load_step == 1]
    assert (second[0].n_fe_dofs, second[0].n_atoms) == (first[-1].n_fe_dofs, first[-1].n_atoms)


def test_a_step_that_fails_leaves_the_checkpoint_of_the_last_converged_state(monkeypatch, tmp_path):
    import json

    run, loop = _adaptive_run(monkeypatch, tmp_path, steps=2, max_cuts=0, fail_at=2)
    assert not run.converged and loop.record.stop == "not converged"
    assert [it.load_step for it in loop.record.history] == [1, 1, 2]
    record = json.loads((tmp_path / "adaptive" / "checkpoint" / "record.json").read_text())
    # the start of the last iteration at load step 1, not the failed state of step 2
    assert (record["iteration"], record["load_step"]) == (1, 1)


def test_a_run_with_a_cut_step_is_complete(monkeypatch, tmp_path):
    """Through the command: summary, history and plots of a run whose step 2 was cut.

    The path it takes (the loop growing the atoms at 1.5 and refining at 2) once left an FE
    node whose cells all carry no weight, with no diagonal entry in the preconditioner.
    """
    import json

    from multiscale.cli import main
    from multiscale.plotting.files import read_history

    real, wrecked = coupled_solve.solve_step, []

    def solve_step(setup, system, k, reporter, *, previous=None, **kwargs):
        record = real(setup, system, k, reporter, previous=previous, **kwargs)
        if k == 2 and not wrecked:
            wrecked.append(k)
            return dataclasses.replace(record, converged=False, reason="DIVERGED_MAXITS")
        return record

    monkeypatch.setattr(coupled_solve, "solve_step", solve_step)
    root = Path(__file__).resolve().parents[1]
    sets = ["geometry.radius=80", "loading.steps=3", "adaptivity.max_iterations=2"]
    sets += ["adaptivity.load_steps=every"]
    args = ["run", "-T", str(root / "cases" / "adaptive-refine"), "--output", str(tmp_path)]
    assert main(args + [a for s in sets for a in ("--set", s)]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "converged"
    assert summary["load_step_cuts"] == [{"from": 1, "to": 2, "reason": "DIVERGED_MAXITS"}]
    assert [s["step"] for s in summary["load_steps"]] == [1, 1.5, 2, 3]
    assert [s["load_step"] for s in summary["adaptivity"]["load_steps"]] == [1, 1.5, 2, 3]
    assert sorted({r.load_step for r in read_history(tmp_path)}) == [1, 1.5, 2, 3]
    for name in ("load_steps.png", "terms.png", "actions.png", "convergence.png"):
        assert (tmp_path / "plots" / name).is_file(), name


@pytest.mark.skipif(not MPIEXEC.exists(), reason="mpiexec not installed")
def test_two_ranks_cut_a_failing_step_as_one_rank_does(tmp_path):
    """The cut under ``mpiexec -n 2``: every rank puts back its part of the state from before
    the step (each rank wrecks its part with its own random numbers, so a rank that kept its
    wreck would show in the energy) and the halves give the serial run's loads, Newton
    counts, tips and energies (measured: 2e-10 eV apart)."""
    folder = write_case(tmp_path, SMALL_CRACK)
    script = Path(__file__).with_name("mpi_load_cut.py")
    results = {}
    for n in (1, 2):
        path = tmp_path / f"cut{n}.json"
        proc = subprocess.run(
            [str(MPIEXEC), "-n", str(n), sys.executable, str(script), str(folder), str(path)],
            capture_output=True,
            text=True,
            env=subprocess_environment(),
            timeout=600,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        results[n] = json.loads(path.read_text())
    one, two = results[1], results[2]
    assert one["ranks"] == 1 and two["ranks"] == 2
    assert one["cuts"] == two["cuts"] == [{"from": 0, "to": 1, "reason": "DIVERGED_LINE_SEARCH"}]
    assert one["steps"] == two["steps"] == [0.5, 1]
    assert one["converged"] and two["converged"]
    assert one["newton"] == two["newton"]
    np.testing.assert_allclose(two["tips"], one["tips"], atol=1e-9)
    np.testing.assert_allclose(two["energies"], one["energies"], rtol=0, atol=1e-6)
