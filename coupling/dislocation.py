"""A straight dislocation's anisotropic Volterra field, as the background of a coupled problem.

The line runs along ``z`` through ``center``. The field (Stroh, with the Cauchy–Born elastic
constants, :func:`continuum.elastic_fields.dislocation_displacement`) has its branch cut on
the half-plane ``y = c_y, x < c_x`` (the slip plane of an edge dislocation with ``b ∥ x``):
the displacement jumps there by ``b``, a lattice vector, so the atoms see a perfect crystal
across it. FS/RH convention, line sense ``+z``: ``u`` just above the cut exceeds ``u`` just
below by ``b``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from continuum.elastic_fields import (
    dislocation_displacement,
    dislocation_displacement_gradient,
)

__all__ = ["NotALatticeVectorError", "VolterraDislocation", "lab_burgers_vector"]


class NotALatticeVectorError(ValueError):
    """A Burgers vector that is not a lattice vector: the cut would leave a fault.

    Attributes:
        fractional: ``(3,)`` the vector in units of the cell it was checked against.
    """

    def __init__(self, fractional: np.ndarray) -> None:
        self.fractional = np.asarray(fractional, dtype=float)
        super().__init__(
            "not a lattice vector (in units of the primitive cell: "
            f"{np.round(self.fractional, 4).tolist()})"
        )


def lab_burgers_vector(
    burgers: np.ndarray, *, a: float, orientation: np.ndarray, cell: np.ndarray
) -> np.ndarray:
    """A Burgers vector given in units of ``a`` along the cubic axes, in the lab frame (Å).

    Args:
        burgers: ``(3,)`` in units of ``a`` along the cubic crystal axes.
        a: lattice constant in Å.
        orientation: ``(3, 3)`` Miller rows of the lab axes x, y, z.
        cell: ``(3, 3)`` rows of the primitive (or any) cell of the lattice in the lab frame.

    Raises:
        NotALatticeVectorError: the vector is not a lattice vector (the cut would leave a
            fault).
    """
    rows = np.asarray(orientation, dtype=float)
    axes = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    b = axes @ (a * np.asarray(burgers, dtype=float))
    frac = np.linalg.solve(np.asarray(cell, dtype=float).T, b)
    if np.max(np.abs(frac - np.round(frac))) > 1e-6:
        raise NotALatticeVectorError(frac)
    return b


@dataclass(frozen=True, kw_only=True)
class VolterraDislocation:
    """A straight dislocation along ``z`` and its anisotropic linear-elastic (Stroh) field.

    Attributes:
        burgers: ``(3,)`` Burgers vector in the lab frame, Å (FS/RH, line ``+z``).
        center: ``(2,)`` position of the line, Å.
        C66: ``(6, 6)`` Cauchy–Born elastic constants of the lattice in the lab frame, eV/Å³.
        plane_spacing: spacing of the lattice planes normal to ``y`` (the glide planes), Å.
    """

    burgers: np.ndarray
    center: np.ndarray
    C66: np.ndarray
    plane_spacing: float

    def displacement(self, X: np.ndarray) -> np.ndarray:
        """``(n, 3)`` Volterra displacement at ``X`` ``(n, 3)``, Å."""
        X = np.asarray(X, dtype=float).reshape(-1, 3)
        return dislocation_displacement(
            C66=self.C66, burgers=self.burgers, points=X[:, :2], center=self.center
        )

    def gradient(self, X: np.ndarray) -> np.ndarray:
        """``(n, 3, 3)`` displacement gradient ``∂u_i/∂X_j`` at ``X`` ``(n, 3)``."""
        X = np.asarray(X, dtype=float).reshape(-1, 3)
        return dislocation_displacement_gradient(
            C66=self.C66, burgers=self.burgers, points=X[:, :2], center=self.center
        )

    def crossing(self, Xi: np.ndarray, Xj: np.ndarray) -> np.ndarray:
        """``(m,)`` +1 where the bond ``i → j`` crosses the branch cut upwards, −1 downwards.

        The Volterra field is higher above the cut by ``b``, so ``u_j − u_i`` of such a bond
        carries ``s b`` that is not strain (:meth:`jump`).
        """
        yi = np.asarray(Xi, dtype=float)[:, 1] - self.center[1]
        yj = np.asarray(Xj, dtype=float)[:, 1] - self.center[1]
        xi = np.asarray(Xi, dtype=float)[:, 0] - self.center[0]
        xj = np.asarray(Xj, dtype=float)[:, 0] - self.center[0]
        crosses = (yi < 0) != (yj < 0)
        t = np.divide(-yi, yj - yi, out=np.zeros_like(yi), where=crosses)
        x_cut = xi + t * (xj - xi)
        s = np.where(yj > yi, 1.0, -1.0)
        return np.where(crosses & (x_cut < 0.0), s, 0.0)

    def jump(self, Xi: np.ndarray, Xj: np.ndarray) -> np.ndarray:
        """``(m, 3)`` displacement jump ``s b`` of bonds ``i → j`` across the branch cut."""
        return self.crossing(Xi, Xj)[:, None] * self.burgers[None, :]
