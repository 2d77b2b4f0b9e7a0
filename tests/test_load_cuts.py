"""A load step that does not converge is cut in two (``loading.max_cuts``).

The failure is injected into a real solve: the first increment of a small mode-I crack is
solved, then its state is wrecked (random displacements, as a Newton step that left the
basin would leave it) and the step reported as not converged. The cut must put back the
state from before the step (atoms, FE field, the crack's K field) and solve 0 → 1/2 → 1:
the loads of a run with twice the steps, from the same state, which it must reproduce.
"""

import dataclasses

import numpy as np
import pytest
from conftest import write_case
from mpi4py import MPI
from test_crack import SMALL_CRACK

import multiscale.kinds.coupled.run as coupled_run
from multiscale.config import load_case
from multiscale.kinds.coupled.run import run_coupled
from multiscale.kinds.coupled.setup import resolve_setup
from multiscale.progress import Reporter


def _run(setup, steps, max_cuts, monkeypatch, *, wreck_first: bool):
    """Run the crack in ``steps`` steps; record the state each solve starts from."""
    loading = dataclasses.replace(setup.loading, steps=steps, max_cuts=max_cuts)
    setup = dataclasses.replace(setup, loading=loading)
    real = coupled_run.solve_step
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
            return dataclasses.replace(record, converged=False, reason="DIVERGED_LINE_SEARCH")
        return record

    monkeypatch.setattr(coupled_run, "solve_step", solve_step)
    run = run_coupled(setup, comm=MPI.COMM_WORLD, reporter=Reporter(enabled=False))
    monkeypatch.setattr(coupled_run, "solve_step", real)
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
    # and the halves reproduce the run with two steps
    for a, b in zip(cut.steps, two.steps, strict=True):
        assert a.energy == pytest.approx(b.energy, abs=1e-6)
        assert a.crack_tip_x == pytest.approx(b.crack_tip_x, abs=1e-6)
    za = cut.system.model.layout.atoms_of(cut.system.z)
    zb = two.system.model.layout.atoms_of(two.system.z)
    assert np.abs(za - zb).max() < 1e-4


def test_without_cuts_a_step_that_fails_ends_the_run(setup, monkeypatch):
    run, _ = _run(setup, 1, 0, monkeypatch, wreck_first=True)
    assert run.cuts == [] and not run.converged
    assert [s.step for s in run.steps] == [1]
