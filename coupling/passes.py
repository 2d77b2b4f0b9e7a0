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
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from coupling.solver import Progress, SolveResult, SolverOptions

if TYPE_CHECKING:
    from coupling.system import CoupledSystem

__all__ = ["INEXACT", "CorrectionPasses", "PassesOutcome", "pass_options", "solve_with_passes"]


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

    The passes before the last are solved inexactly (:func:`pass_options`): to
    :data:`INEXACT` times the correction's last change (the first pass: times the
    tolerance), never tighter than ``options.fmax``. The solve after the recomputation that
    settles, and that of the last allowed pass, are solved to ``options.fmax``; a pass kept
    by a rollback is solved on to ``options.fmax`` from its state, with its own correction.
    A change measured at a state solved to less than :data:`RESIDUAL_NOISE` times that change
    is no baseline for the growth test.

    Args:
        system: the coupled system, its boundary and first correction set.
        options: the Newton–Krylov options of every solve.
        passes: how many solves and the tolerance.
        progress: Newton progress of every solve.
        report: one line per recomputation (and the warning of a rollback).
    """
    say = report or (lambda message: None)
    run = _Solves(system, progress)
    if passes.passes == 1:
        return run.outcome(run.solve(options), kept=1, changes=[], status="one pass")
    looser = pass_options(options, passes.tolerance)
    result = run.solve(looser)
    if not result.converged:
        return run.outcome(result, kept=1, changes=[], status="solve failed")
    first = last = (system.snapshot(), result, looser)
    changes: list[float] = []
    trusted: list[bool] = []  # each change well above the residual of the state it was taken at
    kept, status = 1, "passes exhausted"
    for p in range(2, passes.passes + 1):
        changes.append(system.update_correction())
        trusted.append(changes[-1] > RESIDUAL_NOISE * looser.fmax)
        final = changes[-1] < passes.tolerance or p == passes.passes
        looser = options if final else pass_options(options, changes[-1])
        say(
            f"correction pass {p}/{passes.passes}: recomputed at the solution, changed by "
            f"{changes[-1]:.3e} eV/Å; solving to {looser.fmax:.1e} eV/Å"
        )
        if len(changes) > 1 and trusted[-2] and changes[-1] >= max(changes[-2], passes.tolerance):
            state, result, looser = first
            system.restore(state)
            kept, status = 1, "not contracting: first pass kept"
            say(
                f"warning: the correction grew from {changes[-2]:.3e} to {changes[-1]:.3e} "
                "eV/Å between passes; kept the first pass's solution"
            )
            break
        result = run.solve(looser)
        if not result.converged:
            state, result, looser = last
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
        last = (system.snapshot(), result, looser)
    if looser.fmax > options.fmax:
        say(f"solving the kept pass {kept} on to {options.fmax:.1e} eV/Å")
        result = run.solve(options)
    return run.outcome(result, kept=kept, changes=changes, status=status)


#: A change of the correction measured at a state solved only to ``fmax`` is trusted as a
#: baseline for the growth test when it exceeds this multiple of ``fmax``: below, it is as much
#: the loose solve's residual as the correction's own change (after a pass that contracted
#: by more than ``RESIDUAL_NOISE × INEXACT``), and a larger change measured at the next, tighter
#: solve is no sign that the passes diverge.
RESIDUAL_NOISE = 3.0

#: A pass before the last is solved to this fraction of the correction's last change (the
#: first pass: of the passes' tolerance). The next recomputation moves the correction, and so
#: the solution, by about that change; solving further is work the next pass undoes.
INEXACT = 0.1


def pass_options(options: SolverOptions, change: float) -> SolverOptions:
    """The options of a pass solved before the last: ``fmax`` ``INEXACT × change`` or looser."""
    fmax = max(options.fmax, INEXACT * change)
    return options if fmax == options.fmax else replace(options, fmax=fmax)


class _Solves:
    """The solves of one load step, their Newton and Krylov iterations summed."""

    def __init__(self, system: CoupledSystem, progress: Progress | None):
        self.system, self.progress = system, progress
        self.newton = self.krylov = 0

    def solve(self, options: SolverOptions) -> SolveResult:
        result = self.system.solve(options, progress=self.progress)
        self.newton += int(result.newton_iterations)
        self.krylov += int(result.krylov_iterations)
        return result

    def outcome(
        self, result: SolveResult, *, kept: int, changes: list[float], status: str
    ) -> PassesOutcome:
        return PassesOutcome(
            result=result,
            newton_iterations=self.newton,
            krylov_iterations=self.krylov,
            passes=kept,
            changes=tuple(changes),
            status=status,
        )
