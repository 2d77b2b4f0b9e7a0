"""Where a relaxed dislocation sits: the disregistry across its glide plane and its partials.

For a dislocation along ``z`` whose glide plane is ``y = c_y`` (the plane of its branch cut),
take the atoms of the two lattice planes on either side, ``c_y < y < c_y + d`` ("above") and
``c_y − d < y < c_y`` ("below"), ``d`` the spacing of those planes, and interpolate each
plane's displacement along ``x``. The disregistry is

    δ(x) = u_above(x) − u_below(x)

(the Volterra field jumps by ``b`` across its cut at ``x < c_x``, so far to the left of the
core ``δ → b`` and far to the right ``δ → 0``). The slip fraction ``s(x) = δ(x)·b / |b|²`` falls
from 1 to 0 through the core. A dislocation that dissociates into two partials of equal edge
component (a/2<110> → a/6<211> + a/6<211> in fcc) has ``s ≈ 1/2`` in the stacking fault
between them; each partial is placed where ``s`` crosses its mid-value: 3/4 (the one on the
left) and 1/4 (on the right). The fault's screw disregistry ``δ_z / |b|`` at the midpoint is
``±1/(2√3) ≈ ±0.289`` for Shockley partials of an edge dislocation.

Library code: arrays in, numbers out.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["dissociation", "slip_profile"]


def slip_profile(
    positions: np.ndarray,
    displacements: np.ndarray,
    *,
    burgers: np.ndarray,
    center: np.ndarray,
    plane_spacing: float,
    x: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Slip fraction ``s(x)`` and disregistry ``δ(x)`` across the glide plane ``y = c_y``.

    Args:
        positions: ``(n, 3)`` reference sites ``X`` in Å.
        displacements: ``(n, 3)`` their displacements in Å (Volterra jump included).
        burgers: ``(3,)`` Burgers vector in Å.
        center: ``(2,)`` position of the line in Å.
        plane_spacing: spacing ``d`` of the lattice planes normal to ``y`` in Å.
        x: ``(m,)`` abscissae in Å, inside the range of the atoms.

    Returns:
        ``(s (m,), δ (m, 3))``.
    """
    X = np.asarray(positions, dtype=float)
    u = np.asarray(displacements, dtype=float)
    b = np.asarray(burgers, dtype=float)
    y = X[:, 1] - center[1]
    above = (y > 0) & (y < plane_spacing)
    below = (y < 0) & (y > -plane_spacing)
    if above.sum() < 2 or below.sum() < 2:
        raise ValueError("too few atoms on either side of the glide plane")

    def along(mask: np.ndarray) -> np.ndarray:
        order = np.argsort(X[mask, 0])
        xs = X[mask, 0][order]
        return np.stack([np.interp(x, xs, u[mask, k][order]) for k in range(3)], axis=1)

    delta = along(above) - along(below)
    return delta @ b / (b @ b), delta


def _crossing(x: np.ndarray, s: np.ndarray, level: float, *, from_left: bool) -> float:
    """First ``x`` where ``s`` crosses ``level``, scanning from the left or the right."""
    idx = range(len(x) - 1) if from_left else range(len(x) - 2, -1, -1)
    for i in idx:
        a, b = s[i] - level, s[i + 1] - level
        if a == 0.0:
            return float(x[i])
        if a * b < 0.0:
            return float(x[i] + (x[i + 1] - x[i]) * a / (a - b))
    return float("nan")


def dissociation(
    positions: np.ndarray,
    displacements: np.ndarray,
    *,
    burgers: np.ndarray,
    center: np.ndarray,
    plane_spacing: float,
    half_width: float,
    samples: int = 2001,
) -> dict[str, Any]:
    """Positions of the two partials of a dislocation from its slip profile.

    Args:
        positions: ``(n, 3)`` reference sites in Å, as for :func:`slip_profile`.
        displacements: ``(n, 3)`` their displacements in Å, as for :func:`slip_profile`.
        burgers: ``(3,)`` Burgers vector in Å.
        center: ``(2,)`` position of the line in Å.
        plane_spacing: spacing of the lattice planes normal to ``y`` in Å.
        half_width: the profile is sampled on ``c_x ± half_width`` (inside the atoms), Å.
        samples: number of samples.

    Returns:
        ``partial_positions_A`` ``[x_left, x_right]`` (where ``s`` = 3/4 and 1/4),
        ``separation_A``, ``midpoint_A``, ``fault_slip`` (``s`` at the midpoint, ≈ 1/2 for a
        stacking fault), ``fault_screw_disregistry`` (``δ_z/|b|`` there), ``slip_at_ends``
        (``s`` at the two ends of the sampled range, ≈ 1 and ≈ 0 when the core lies inside).
    """
    c = np.asarray(center, dtype=float)
    x = np.linspace(c[0] - half_width, c[0] + half_width, samples)
    s, delta = slip_profile(
        positions, displacements, burgers=burgers, center=c, plane_spacing=plane_spacing, x=x
    )
    left = _crossing(x, s, 0.75, from_left=True)
    right = _crossing(x, s, 0.25, from_left=False)
    mid = 0.5 * (left + right)
    b_norm = float(np.linalg.norm(burgers))
    if np.isfinite(mid):
        fault = float(np.interp(mid, x, s))
        screw = float(np.interp(mid, x, delta[:, 2]) / b_norm)
    else:
        fault = screw = float("nan")
    return {
        "partial_positions_A": [left, right],
        "separation_A": right - left,
        "midpoint_A": mid,
        "fault_slip": fault,
        "fault_screw_disregistry": screw,
        "slip_at_ends": [float(s[0]), float(s[-1])],
    }
