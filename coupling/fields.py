"""Displacement fields given as functions: the homogeneous far field and background fields."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["Background", "Displacement", "homogeneous"]

#: ``X (n, 3) -> u (n, 3)`` in Å.
Displacement = Callable[[np.ndarray], np.ndarray]


def homogeneous(F: np.ndarray) -> Displacement:
    """``X ↦ (F − I) X`` for a 3×3 ``F``."""
    D = np.asarray(F, dtype=float) - np.eye(3)
    return lambda X: np.asarray(X, dtype=float).reshape(-1, 3) @ D.T


@dataclass(frozen=True, kw_only=True)
class Background:
    """A prescribed displacement field ``u_bg`` that the FE unknown corrects.

    Attributes:
        displacement: ``X (n, 3) -> u_bg (n, 3)`` in Å; may jump across a branch cut by a
            lattice vector.
        gradient: ``X (n, 3) -> ∇u_bg (n, 3, 3)``.
    """

    displacement: Displacement
    gradient: Callable[[np.ndarray], np.ndarray]
