"""Correction passes: solve, recompute the ghost-force correction at the solution, repeat.

The first solve of a load step uses the predictor's correction
(:meth:`coupling.correction.GhostForceCorrection.reset`); each pass after it recomputes the
correction at the previous solution (:meth:`~coupling.system.CoupledSystem.update_correction`)
and solves again, until it changes by less than a tolerance. If the change grows from one
recomputation to the next while still above the tolerance, the passes are not contracting (a
soft glide mode that the recomputed correction drives): the first pass's solution and
correction are restored from a :class:`~coupling.state.CoupledState`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from coupling.solver import Progress, SolveResult, SolverOptions

if TYPE_CHECKING:
    from coupling.system import CoupledSystem

__all__ = ["CorrectionPasses", "PassesOutcome", "solve_with_passes"]


@dataclass(frozen=True, kw_only=True)
class CorrectionPasses:
    """How often the correction is recomputed in a load step.

    Attributes:
        passes: solves per load step; each after the first recomputes the correction at the
            previous solution (1: the predictor's correction only).
        tolerance: stop once the correction changes by less than this on every atom and node
            (eV/Å).
    """

    passes: int = 1
    tolerance: float = 1e-3


@dataclass(frozen=True, kw_only=True)
class PassesOutcome:
    """What :func:`solve_with_passes` did.

    Attributes:
        result: the solve whose solution is kept.
        newton_iterations, krylov_iterations: summed over every solve made.
        passes: the solves up to the one whose solution is kept (1 when the first is kept).
        changes: the change of the correction at each recomputation (eV/Å).
        status: ``"one pass"``, ``"converged"``, ``"passes exhausted"``, ``"not contracting:
            first pass kept"``, ``"pass P failed: pass Q kept"`` or ``"solve failed"`` (the
            first of several passes).
    """

    result: SolveResult
    newton_iterations: int
    krylov_iterations: int
    passes: int
    changes: tuple[float, ...]
    status: str


def solve_with_passes(
    system: CoupledSystem,
    *,
    options: SolverOptions,
    passes: CorrectionPasses,
    progress: Progress | None = None,
    report: Callable[[str], None] | None = None,
) -> PassesOutcome:
    """Solve, recompute the correction at the solution, solve again, until it settles.

    It settles when it changes by less than ``passes.tolerance``; at most
    ``passes.passes`` solves are made. If the change grows from one recomputation to the
    next while still above the tolerance, the passes are not contracting: the first pass's
    solution and correction are restored. If the solve of a later pass fails, the last
    converged pass's solution and correction are restored and its result kept.

    Args:
        system: the coupled system, its boundary and first correction set.
        options: the Newton–Krylov options of every solve.
        passes: how many solves and the tolerance.
        progress: Newton progress of every solve.
        report: one line per recomputation (and the warning of a rollback).
    """
    say = report or (lambda message: None)
    result = system.solve(options, progress=progress)
    newton, krylov = result.newton_iterations, result.krylov_iterations
    changes: list[float] = []
    kept, status = 1, "one pass"
    first = last = None
    if passes.passes > 1 and not result.converged:
        status = "solve failed"
    elif passes.passes > 1:
        first = last = (system.snapshot(), result)
        status = "passes exhausted"
    for p in range(2, passes.passes + 1):
        if not result.converged:
            break
        changes.append(system.update_correction())
        say(
            f"correction pass {p}/{passes.passes}: recomputed at the solution, changed by "
            f"{changes[-1]:.3e} eV/Å"
        )
        if len(changes) > 1 and changes[-1] >= max(changes[-2], passes.tolerance):
            assert first is not None
            state, result = first
            system.restore(state)
            kept, status = 1, "not contracting: first pass kept"
            say(
                f"warning: the correction grew from {changes[-2]:.3e} to {changes[-1]:.3e} "
                "eV/Å between passes; kept the first pass's solution"
            )
            break
        result = system.solve(options, progress=progress)
        newton += result.newton_iterations
        krylov += result.krylov_iterations
        if not result.converged:
            assert last is not None
            state, result = last
            system.restore(state)
            status = f"pass {p} failed: pass {kept} kept"
            say(
                f"warning: the solve of correction pass {p} did not converge; kept the "
                f"solution and correction of pass {kept}"
            )
            break
        kept += 1
        if changes[-1] < passes.tolerance:
            status = "converged"
            break
        last = (system.snapshot(), result)
    return PassesOutcome(
        result=result,
        newton_iterations=int(newton),
        krylov_iterations=int(krylov),
        passes=kept,
        changes=tuple(changes),
        status=status,
    )
