"""``coupling.passes.solve_with_passes``: which pass's solution a load step keeps.

A scripted stand-in for the coupled system: each solve sets the state to the solve's number
and converges or not as told (a solve beyond the script converges); each recomputation of the
correction changes it by the given amount. The state left in the system, the status, and the
tolerance of each solve (passes before the last are solved inexactly, a kept pass on to the
solver's tolerance) are what a load step records.
"""

from __future__ import annotations

import pytest

from coupling.passes import CorrectionPasses, pass_options, solve_with_passes
from coupling.solver import SolveResult, SolverOptions

FMAX = 1e-6


class Scripted:
    """Solves that converge or fail in a given order; corrections that change as given."""

    def __init__(self, converged: list[bool], changes: list[float]):
        self.converged, self.changes = list(converged), list(changes)
        self.state = 0  # the solve whose solution the system holds
        self.solves = 0
        self.made: list[tuple[int, float]] = []  # (state solved from, fmax) per solve

    def solve(self, options, *, progress=None) -> SolveResult:
        ok = self.converged[self.solves] if self.solves < len(self.converged) else True
        self.made.append((self.state, float(f"{options.fmax:.12g}")))
        self.solves += 1
        self.state = self.solves
        return SolveResult(
            converged=ok,
            newton_iterations=10 * self.solves,
            krylov_iterations=100 * self.solves,
            max_atom_force=1e-6 if ok else 1.0,
            max_fe_residual=1e-6 if ok else 1.0,
            energy=-float(self.solves),
            reason="CONVERGED" if ok else "DIVERGED_LINE_SEARCH",
        )

    def update_correction(self) -> float:
        return self.changes.pop(0)

    def snapshot(self) -> int:
        return self.state

    def restore(self, state: int) -> None:
        self.state = state


def _run(converged, changes, passes=8):
    system = Scripted(converged, changes)
    said: list[str] = []
    outcome = solve_with_passes(
        system,  # type: ignore[arg-type]
        options=SolverOptions(fmax=FMAX),
        passes=CorrectionPasses(passes=passes, tolerance=1e-3),
        report=said.append,
    )
    return system, outcome, said


def test_a_later_pass_that_fails_keeps_the_last_converged_pass():
    # passes 1-3 converge (the correction still changing), pass 4's solve fails
    system, outcome, said = _run([True, True, True, False], [0.1, 0.02, 0.01])
    # pass 3 (solved inexactly) is restored and solved on to fmax: a fifth solve from it
    assert system.made[-1] == (3, FMAX) and system.state == 5
    assert outcome.result.converged and outcome.result.energy == -5.0
    assert outcome.passes == 3
    assert outcome.status == "pass 4 failed: pass 3 kept"
    # every solve made is counted, the failed one and the last too
    assert outcome.newton_iterations == 10 * (1 + 2 + 3 + 4 + 5)
    assert outcome.krylov_iterations == 100 * (1 + 2 + 3 + 4 + 5)
    assert "did not converge" in said[-2] and "pass 3" in said[-2]
    assert "on to 1.0e-06" in said[-1]


def test_the_second_pass_failing_keeps_the_first():
    system, outcome, _ = _run([True, False], [0.1])
    assert system.made[-1] == (1, FMAX) and outcome.passes == 1
    assert outcome.status == "pass 2 failed: pass 1 kept"


def test_passes_before_the_last_are_solved_to_a_tenth_of_the_change():
    system, outcome, said = _run([True] * 4, [0.1, 0.02, 1e-4])
    assert outcome.status == "converged" and outcome.passes == 4
    # the first to a tenth of the passes' tolerance, then a tenth of the last change, the
    # solve after the change under the tolerance to fmax; each from the previous solution
    assert system.made == [(0, 1e-4), (1, 1e-2), (2, 2e-3), (3, FMAX)]
    assert "solving to 1.0e-02 eV/Å" in said[0]


def test_the_last_allowed_pass_is_solved_to_fmax():
    system, outcome, _ = _run([True] * 3, [0.1, 0.05], passes=3)
    assert outcome.status == "passes exhausted" and outcome.passes == 3
    assert system.made == [(0, 1e-4), (1, 1e-2), (2, FMAX)]


def test_one_pass_and_a_loose_tolerance_are_solved_as_asked():
    system, _, _ = _run([True], [], passes=1)
    assert system.made == [(0, FMAX)]
    # a solver tolerance above a tenth of the change is never tightened
    options = SolverOptions(fmax=0.05)
    assert pass_options(options, 0.1) is options


@pytest.mark.parametrize(
    ("converged", "changes", "made", "status"),
    [
        ([False], [], [(0, 1e-4)], "solve failed"),  # the first solve fails: nothing to keep
        ([True, True, True], [0.1, 1e-4], [(0, 1e-4), (1, 1e-2), (2, FMAX)], "converged"),
        # not contracting: the first pass's state is restored and solved on to fmax
        (
            [True, True, True],
            [0.1, 0.2],
            [(0, 1e-4), (1, 1e-2), (1, FMAX)],
            "not contracting: first pass kept",
        ),
    ],
)
def test_the_other_outcomes(converged, changes, made, status):
    system, outcome, _ = _run(converged, changes)
    assert system.made == made
    assert outcome.status == status


def test_a_change_at_a_loosely_solved_state_is_no_baseline_for_the_growth_test():
    # pass 2 is solved to 1e-2 (a tenth of 0.1); the change measured there, 0.02, is hardly
    # above that residual, so the larger change at the tighter pass 3 (0.025) is no sign of
    # divergence: the passes go on and settle
    system, outcome, said = _run([True] * 5, [0.1, 0.02, 0.025, 0.002, 1e-4])
    assert outcome.status == "converged" and outcome.passes == 6
    assert not any("warning" in line for line in said)
    assert system.made[-1] == (5, FMAX)
    # a change well above the residual of its state is a baseline: growth after it rolls back
    system, outcome, _ = _run([True] * 4, [0.1, 0.05, 0.06])
    assert outcome.status == "not contracting: first pass kept"
    assert system.made[-1] == (1, FMAX)
