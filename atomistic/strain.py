"""Errors of an approximate solution (a coupled one) against a reference on lattice sites.

Energy (:func:`energy_error`):

    energy_error = |ΔE_coupled − ΔE_reference|,   ΔE = E(solution) − E(homogeneous predictor)

Strain (:func:`strain_error`; the a/c literature's W^{1,2}-type error, measured on the
reference sites):

    G_i = argmin_G Σ_{j ∈ N(i)} |u_j − u_i − G (X_j − X_i)|²
        = [Σ_j (u_j − u_i) ⊗ r_ij] [Σ_j r_ij ⊗ r_ij]⁻¹,       r_ij = X_j − X_i

    strain_error_rel = sqrt(Σ_i |G^c_i − G^ref_i|²) / sqrt(Σ_i |G^ref_i − (F − I)|²)

=====================  ==================================================================
symbol                 code
=====================  ==================================================================
``N(i)``               sites within ``shell_factor · r_nn`` of ``i`` (the nearest-
                       neighbour shell; minimum image along periodic axes), all sites,
                       held ones included
``i``                  the free reference sites
``u^ref``              the reference displacements
``u^c``                the coupled field at the reference sites
                       (:meth:`coupling.system.CoupledSystem.displacement_at`):
                       the atom's displacement where the site is a coupled free or pad
                       atom, else the FE field interpolated there, else (outside the
                       polyhedral mesh near a curved boundary, or in the held shell) the
                       boundary displacement ``(F − I) X``
``|·|``                Frobenius norm
=====================  ==================================================================

The denominator is the defect-induced part of the reference field, so the measure is 0 for
the exact answer and 1 for the homogeneous predictor (no relaxation at all); it is undefined
(``nan``) without a defect. Library code: no files, no printing.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "SHELL_FACTOR",
    "energy_error",
    "extend_displacements",
    "match_sites",
    "site_gradients",
    "strain_error",
]

#: Neighbour-shell radius in units of the nearest-neighbour distance: above the first shell
#: of every supported lattice (fcc 1, bcc 1, diamond 1, hcp 1), below the second (fcc √2,
#: bcc 2/√3 ≈ 1.155, diamond √(8/3) ≈ 1.633, hcp √2).
SHELL_FACTOR = 1.1

#: ``jump(X_i (k, 3), X_j (k, 3)) -> (k, 3)``: a known jump of the displacement across bonds.
Jump = Callable[[np.ndarray, np.ndarray], ArrayLike]
#: ``far_field(X (n, 3)) -> u (n, 3)``, in Å.
FarField = Callable[[np.ndarray], ArrayLike]


def _pairs(
    positions: np.ndarray, cutoff: float, cell: np.ndarray | None, pbc: ArrayLike
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    import vesin

    from atomistic.neighbours import vesin_box

    box, pbc3 = vesin_box(positions, np.zeros((3, 3)) if cell is None else cell, pbc, cutoff)
    nl = vesin.NeighborList(cutoff=cutoff, full_list=True)
    i, j, S = nl.compute(np.asarray(positions, dtype=float), box, pbc3, "ijS")
    r = positions[j] - positions[i] + S @ box
    return i.astype(np.int64), j.astype(np.int64), r


def site_gradients(
    positions: np.ndarray,
    displacements: np.ndarray,
    *,
    cutoff: float,
    cell: np.ndarray | None = None,
    pbc: ArrayLike = (False, False, False),
    jump: Jump | None = None,
) -> np.ndarray:
    """Least-squares displacement gradient of every site over its neighbour shell.

    Args:
        positions: ``(n, 3)`` reference sites ``X`` in Å.
        displacements: ``(n, 3)`` or ``(m, n, 3)`` displacements in Å (``m`` fields at once).
        cutoff: neighbour-shell radius in Å.
        cell: ``(3, 3)`` cell rows, used along periodic axes.
        pbc: periodic axes.
        jump: ``(X_i (k, 3), X_j (k, 3)) -> (k, 3)``: a known jump of the displacement
            across bond ``i → j`` (a dislocation's branch cut, where ``u`` jumps by a lattice
            vector), subtracted from ``u_j − u_i``; None: no jumps.

    Returns:
        ``(n, 3, 3)`` (or ``(m, n, 3, 3)``) ``G_i``, ``G[a, b] = ∂u_a/∂X_b``; sites whose
        neighbours do not span 3D get the minimum-norm (pseudo-inverse) fit.
    """
    X = np.asarray(positions, dtype=float)
    U = np.asarray(displacements, dtype=float)
    single = U.ndim == 2
    U = U[None] if single else U
    n = len(X)
    i, j, r = _pairs(X, cutoff, cell, pbc)
    A = np.zeros((n, 3, 3))
    np.add.at(A, i, r[:, :, None] * r[:, None, :])
    A_inv = np.linalg.pinv(A, hermitian=True)
    shift = 0.0 if jump is None else np.asarray(jump(X[i], X[i] + r), dtype=float)
    G = np.zeros((len(U), n, 3, 3))
    for field, u in zip(G, U, strict=True):
        du = u[j] - u[i] - shift
        B = np.zeros((n, 3, 3))
        np.add.at(B, i, du[:, :, None] * r[:, None, :])
        field[:] = B @ A_inv
    return G[0] if single else G


def strain_error(
    *,
    positions: np.ndarray,
    reference: np.ndarray,
    approximation: np.ndarray,
    strain: np.ndarray,
    cutoff: float,
    mask: np.ndarray | None = None,
    cell: np.ndarray | None = None,
    pbc: ArrayLike = (False, False, False),
    jump: Jump | None = None,
) -> float:
    """``sqrt(Σ_i |G^c_i − G^ref_i|²) / sqrt(Σ_i |G^ref_i − (F − I)|²)`` over ``mask``.

    Args:
        positions: ``(n, 3)`` reference sites in Å.
        reference: ``(n, 3)`` reference displacements in Å.
        approximation: ``(n, 3)`` displacements of the approximate (coupled) solution.
        strain: ``(3, 3)`` far-field ``F − I``.
        cutoff: neighbour-shell radius in Å (e.g. ``SHELL_FACTOR · r_nn``).
        mask: ``(n,)`` sites that are summed over (the free reference sites); all by default.
        cell: as for :func:`site_gradients`.
        pbc: as for :func:`site_gradients`.
        jump: as for :func:`site_gradients`.

    Returns:
        The relative strain error; ``nan`` when the reference is homogeneous.
    """
    G_ref, G_c = site_gradients(
        positions,
        np.stack([reference, approximation]),
        cutoff=cutoff,
        cell=cell,
        pbc=pbc,
        jump=jump,
    )
    keep = np.ones(len(positions), bool) if mask is None else np.asarray(mask, bool)
    num = float(np.sum((G_c[keep] - G_ref[keep]) ** 2))
    den = float(np.sum((G_ref[keep] - np.asarray(strain, dtype=float)) ** 2))
    return float(np.sqrt(num / den)) if den > 0 else float("nan")


def match_sites(
    points: np.ndarray, sites: np.ndarray, *, period: float | None = None, tol: float = 1e-4
) -> np.ndarray:
    """Index into ``sites`` of each of ``points`` (−1 where none lies within ``tol`` Å).

    Args:
        points: ``(n, 3)`` positions in Å.
        sites: ``(m, 3)`` positions in Å.
        period: slab period along ``z`` (2.5d), matched modulo it; None: no periodicity.
        tol: matching tolerance in Å.
    """
    from scipy.spatial import cKDTree

    P = np.array(points, dtype=float)
    S = np.array(sites, dtype=float)
    if len(S) == 0:
        return np.full(len(P), -1)
    boxsize = None
    if period is not None:
        lo = np.minimum(P.min(axis=0), S.min(axis=0)) - 1.0
        P[:, :2] -= lo[:2]
        S[:, :2] -= lo[:2]
        span = np.maximum(P.max(axis=0), S.max(axis=0)) + 1.0
        P[:, 2] %= period
        S[:, 2] %= period
        boxsize = [2 * span[0], 2 * span[1], period]
    dist, idx = cKDTree(S, boxsize=boxsize).query(P, distance_upper_bound=tol)
    return np.where(np.isfinite(dist), idx, -1)


def extend_displacements(
    points: np.ndarray,
    sites: np.ndarray,
    displacements: np.ndarray,
    *,
    far_field: FarField,
    period: float | None = None,
) -> np.ndarray:
    """A solution known on ``sites`` carried to ``points``.

    Its own value where a point is one of its sites, else ``far_field`` (e.g. a smaller
    atomistic domain inside a bigger one).

    Args:
        points: ``(n, 3)`` lattice sites in Å.
        sites: ``(m, 3)`` the sites of the solution (same lattice and registry).
        displacements: ``(m, 3)`` its displacements in Å.
        far_field: ``X (n, 3) -> u (n, 3)``, used where ``sites`` has no site.
        period: slab period along ``z`` in Å (2.5d), None in 3d.

    Returns:
        ``(n, 3)`` displacements in Å.
    """
    points = np.asarray(points, dtype=float)
    u = np.asarray(far_field(points), dtype=float).reshape(-1, 3).copy()
    index = match_sites(points, sites, period=period)
    found = index >= 0
    u[found] = np.asarray(displacements, dtype=float)[index[found]]
    return u


def energy_error(approximation: float, reference: float) -> dict[str, float]:
    """The error of a relaxation energy ``ΔE = E(solution) − E(predictor)`` against a reference.

    Args:
        approximation: ``ΔE`` of the approximate (coupled) solution, eV.
        reference: ``ΔE`` of the reference, eV.

    Returns:
        ``energy_error_eV`` ``|ΔE − ΔE_ref|`` and ``energy_error_rel``
        ``|ΔE − ΔE_ref| / |ΔE_ref|`` (``nan`` when the reference does not relax).
    """
    diff = abs(float(approximation) - float(reference))
    rel = diff / abs(float(reference)) if reference != 0 else float("nan")
    return {"energy_error_eV": diff, "energy_error_rel": rel}
