"""``coupling.passes.solve_with_passes``: which pass's solution a load step keeps.

A scripted stand-in for the coupled system: each solve sets the state to the pass's number
and converges or not as told; each recomputation of the correction changes it by the given
amount. The state left in the system and the status are what a load step records.
"""

from __future__ import annotations

import pytest

from coupling.passes import CorrectionPasses, solve_with_passes
from coupling.solver import SolveResult, SolverOptions


class Scripted:
    """Solves that converge or fail in a given order; corrections that change as given."""

    def __init__(self, converged: list[bool], changes: list[float]):
        self.converged, self.changes = list(converged), list(changes)
        self.state = 0  # the pass whose solution the system holds
        self.solves = 0

    def solve(self, options, *, progress=None) -> SolveResult:
        ok = self.converged[self.solves]
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
        options=SolverOptions(),
        passes=CorrectionPasses(passes=passes, tolerance=1e-3),
        report=said.append,
    )
    return system, outcome, said


def test_a_later_pass_that_fails_keeps_the_last_converged_pass():
    # passes 1-3 converge (the correction still changing), pass 4's solve fails
    system, outcome, said = _run([True, True, True, False], [0.1, 0.02, 0.01])
    assert system.state == 3  # pass 3's solution and correction, not the failed one
    assert outcome.result.converged and outcome.result.energy == -3.0
    assert outcome.passes == 3
    assert outcome.status == "pass 4 failed: pass 3 kept"
    # every solve made is counted, the failed one too
    assert outcome.newton_iterations == 10 * (1 + 2 + 3 + 4)
    assert outcome.krylov_iterations == 100 * (1 + 2 + 3 + 4)
    assert "did not converge" in said[-1] and "pass 3" in said[-1]


def test_the_second_pass_failing_keeps_the_first():
    system, outcome, _ = _run([True, False], [0.1])
    assert system.state == 1 and outcome.passes == 1
    assert outcome.status == "pass 2 failed: pass 1 kept"


@pytest.mark.parametrize(
    ("converged", "changes", "state", "status"),
    [
        ([False], [], 1, "solve failed"),  # the first solve fails: nothing to keep
        ([True, True, True], [0.1, 1e-4], 3, "converged"),
        ([True, True, True], [0.1, 0.2], 1, "not contracting: first pass kept"),
    ],
)
def test_the_other_outcomes_are_unchanged(converged, changes, state, status):
    system, outcome, _ = _run(converged, changes)
    assert system.state == state
    assert outcome.status == status
