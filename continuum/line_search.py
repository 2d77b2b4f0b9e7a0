"""The backtracking line search shared by every Newton loop (continuum and coupled).

==============================================  ============================================
accept ``α`` when                               why
==============================================  ============================================
``E(α) ≤ E₀ + c α s``                           Armijo sufficient decrease (``s = ∇E·d < 0``)
``|E(α) − E₀| ≤ ε max(1, |E₀|)`` and the        near a minimum, energy differences are
gradient norm fell                              round-off; the gradient still tells progress
==============================================  ============================================

``α`` starts at 1 and is halved until one holds, at most ``max_halvings`` times.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["LineSearchResult", "backtracking_line_search"]


@dataclass(frozen=True, kw_only=True)
class LineSearchResult:
    """Outcome of :func:`backtracking_line_search`.

    Attributes:
        accepted: a step length was accepted.
        alpha: the accepted step length (the last one tried otherwise).
        energy: the energy at the accepted step (``E₀`` otherwise), eV.
    """

    accepted: bool
    alpha: float
    energy: float


def backtracking_line_search(
    trial: Callable[[float], float],
    *,
    energy: float,
    slope: float,
    gradient_decreased: Callable[[], bool],
    sufficient_decrease: float = 1e-4,
    roundoff: float = 1e-12,
    max_halvings: int = 30,
) -> LineSearchResult:
    """Backtrack along a descent direction until the step is accepted (module docstring).

    Args:
        trial: ``α ↦ E(z₀ + α d)`` in eV; it leaves the state at ``z₀ + α d``, where
            ``gradient_decreased`` is then asked.
        energy: ``E₀ = E(z₀)`` in eV.
        slope: ``∇E(z₀)·d`` in eV (negative).
        gradient_decreased: whether the gradient norm at the last trial point is below the
            one at ``z₀`` (asked only when the energy change is within round-off).
        sufficient_decrease: Armijo's ``c``.
        roundoff: ``ε``, the relative size of energy round-off.
        max_halvings: how many step lengths are tried.
    """
    alpha = 1.0
    band = roundoff * max(1.0, abs(energy))
    for _ in range(max_halvings):
        e_trial = trial(alpha)
        if np.isfinite(e_trial):
            if e_trial <= energy + sufficient_decrease * alpha * slope:
                return LineSearchResult(accepted=True, alpha=alpha, energy=float(e_trial))
            if abs(e_trial - energy) <= band and gradient_decreased():
                return LineSearchResult(accepted=True, alpha=alpha, energy=float(e_trial))
        alpha *= 0.5
    return LineSearchResult(accepted=False, alpha=alpha, energy=float(energy))
