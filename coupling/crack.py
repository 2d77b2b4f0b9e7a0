"""A straight crack's anisotropic near-tip K field, as the background of a coupled problem.

The crack lies on the half-plane ``y = t_y, x < t_x`` behind its tip ``t`` and its front runs
along ``z``. The field is the Stroh mode-I K field with the Cauchy–Born elastic constants
(:func:`continuum.elastic_fields.crack_displacement`): ``σ_yy = K_I/√(2πr)`` ahead of the tip,
faces traction-free. It is linear in ``K_I``; the displacement jumps across the faces (the
opening), so the continuum that carries the correction to it is cut along them too
(:func:`continuum.mesh.graded_mesh` with a ``notch``).

Griffith: an ideally brittle crack advances when the energy release rate ``G = H K_I²``
reaches twice the surface energy of the crack plane, ``K_G = √(2γ/H)``. ``H`` is measured from
the field itself by Irwin's crack-closure integral: with the opening ``δ_y(r) = c K_I √r``
behind the tip and ``σ_yy = K_I/√(2πr)`` ahead of it, ``G = (√(2π)/8) c K_I²``
(:meth:`CrackTip.energy_release_coefficient`; for an isotropic solid this is
``(1 − ν²)/E``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from continuum.elastic_fields import crack_displacement, crack_displacement_gradient

__all__ = ["CrackTip", "crack_opening", "tip_position"]


@dataclass(frozen=True, kw_only=True)
class CrackTip:
    """A straight crack along ``z`` with its tip at ``tip`` under mode-I loading ``K_I``.

    Attributes:
        tip: ``(2,)`` position of the crack front in the ``xy`` plane, Å.
        C66: ``(6, 6)`` Cauchy–Born elastic constants of the lattice in the lab frame, eV/Å³.
        K_I: mode-I stress intensity factor, eV/Å^2.5.
        plane_spacing: spacing of the lattice planes normal to ``y`` (the crack plane lies
            midway between two of them), Å.
    """

    tip: np.ndarray
    C66: np.ndarray
    K_I: float
    plane_spacing: float

    def at(self, K_I: float) -> CrackTip:
        """The same crack under ``K_I`` (eV/Å^2.5)."""
        return dataclasses.replace(self, K_I=float(K_I))

    def displacement(self, X: np.ndarray) -> np.ndarray:
        """``(n, 3)`` K-field displacement at ``X`` ``(n, 3)``, Å (zero at the tip)."""
        X = np.asarray(X, dtype=float).reshape(-1, 3)
        if self.K_I == 0.0:
            return np.zeros_like(X)
        return crack_displacement(C66=self.C66, K_I=self.K_I, points=X[:, :2], tip=self.tip)

    def gradient(self, X: np.ndarray) -> np.ndarray:
        """``(n, 3, 3)`` displacement gradient ``∂u_i/∂X_j`` at ``X`` ``(n, 3)``."""
        X = np.asarray(X, dtype=float).reshape(-1, 3)
        if self.K_I == 0.0:
            return np.zeros((len(X), 3, 3))
        return crack_displacement_gradient(
            C66=self.C66, K_I=self.K_I, points=X[:, :2], tip=self.tip
        )

    def energy_release_coefficient(self) -> float:
        """``H`` in ``G = H K_I²`` (Å³/eV), by the crack-closure integral (module docstring)."""
        r = 10.0
        eps = 1e-9
        behind = np.array(
            [[self.tip[0] - r, self.tip[1] + eps], [self.tip[0] - r, self.tip[1] - eps]]
        )
        u = crack_displacement(C66=self.C66, K_I=1.0, points=behind, tip=self.tip)
        c = (u[0, 1] - u[1, 1]) / np.sqrt(r)
        return float(c * np.sqrt(2.0 * np.pi) / 8.0)

    def griffith(self, surface_energy: float) -> float:
        """``K_G = √(2γ/H)`` in eV/Å^2.5 for a surface energy ``γ`` in eV/Å²."""
        return float(np.sqrt(2.0 * surface_energy / self.energy_release_coefficient()))


def crack_opening(
    tip: np.ndarray, plane_spacing: float, positions: np.ndarray, displacements: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The opening of the crack plane, column by column along ``x``.

    The sites of the lattice plane just above the crack plane (``0 < y − t_y < s``, ``s`` the
    plane spacing) are paired with those of the plane just below at the same ``x`` (to
    0.01 Å; in a 2.5d slab any ``z``); the opening of a pair is the growth of its ``y``
    separation, ``u_y(above) − u_y(below)``.

    Args:
        tip: ``(2,)`` the crack tip (its ``y`` is the crack plane), Å.
        plane_spacing: spacing ``s`` of the lattice planes normal to ``y``, Å.
        positions: ``(n, 3)`` reference sites, Å.
        displacements: ``(n, 3)`` their displacements, Å.

    Returns:
        ``(x, opening)``: ``(m,)`` the ``x`` of each pair, ascending, and its opening in Å.
    """
    X = np.asarray(positions, dtype=float)
    u = np.asarray(displacements, dtype=float)
    dy = X[:, 1] - float(tip[1])
    s = float(plane_spacing)
    above = np.flatnonzero((dy > 0.0) & (dy < s))
    below = np.flatnonzero((dy < 0.0) & (dy > -s))
    key_b = np.round(X[below, 0], 2)
    order = np.argsort(key_b)
    xs: list[float] = []
    ys: list[float] = []
    for i in above[np.argsort(X[above, 0])]:
        k = np.searchsorted(key_b[order], round(float(X[i, 0]), 2))
        if k < len(order) and key_b[order][k] == round(float(X[i, 0]), 2):
            j = below[order[k]]
            if not xs or xs[-1] != X[i, 0]:
                xs.append(float(X[i, 0]))
                ys.append(float(u[i, 1] - u[j, 1]))
    return np.asarray(xs), np.asarray(ys)


def tip_position(
    tip: np.ndarray,
    plane_spacing: float,
    positions: np.ndarray,
    displacements: np.ndarray,
    *,
    threshold: float | None = None,
) -> float | None:
    """Where the crack tip is: the largest ``x`` whose opening exceeds ``threshold`` (Å).

    Args:
        tip: ``(2,)`` the crack tip (its ``y`` is the crack plane), Å.
        plane_spacing: spacing of the lattice planes normal to ``y``, Å.
        positions: ``(n, 3)`` reference sites, Å.
        displacements: ``(n, 3)`` their displacements, Å.
        threshold: opening that counts as cracked, Å; default half the plane spacing (the
            planes then sit 1.5 spacings apart, well past the inflexion of the bond).

    Returns:
        That ``x`` in Å, or None if no pair of sites has opened that far.
    """
    x, opening = crack_opening(tip, plane_spacing, positions, displacements)
    limit = 0.5 * plane_spacing if threshold is None else threshold
    cracked = x[opening > limit]
    return float(cracked.max()) if len(cracked) else None
