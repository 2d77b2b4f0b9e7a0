"""Per-atom stresses of a site-energy potential: first Piola (and Kirchhoff) from edge gradients.

With ``E = Σ_i ε_i`` the total site energy, ``g_e = ∂E/∂r_e`` its gradient with respect to
the current bond vector ``r_e = x_b − x_a + S·C`` and ``R_e = X_b − X_a + S·C0`` the same
bond in the reference configuration (same periodic shift ``S``; ``C0``, ``C`` the reference
and current cells, rows are lattice vectors), each bond gives half of its stress to each of
its two atoms:

===========================================================  =================================
equation                                                     code
===========================================================  =================================
``g_e = ∂E/∂r_e``                                            one autograd pass to the vectors
``P_i = (1/Ω0_i) Σ_{e ∋ i} ½ g_e ⊗ R_e``   (first Piola)      ``index_add_`` over ``a`` and ``b``
``τ_i = (1/Ω0_i) Σ_{e ∋ i} ½ g_e ⊗ r_e``   (Kirchhoff)        the same with ``r_e``
===========================================================  =================================

Why it is the Cauchy–Born stress: under a homogeneous ``x = F X`` every bond is ``r_e = F R_e``,
so ``∂E/∂F = Σ_e g_e ⊗ R_e`` and ``Σ_i Ω0_i P_i = ∂E/∂F``; in a perfect simple lattice every
atom is alike and ``P_i = ∂W/∂F`` (:meth:`atomistic.cauchy_born.CauchyBorn.stress`) to
round-off. For any configuration, ``Σ_i Ω0_i P_i : δF`` is the first-order energy change when
``δF X`` is added to every atom (and ``C0 δFᵀ`` to the cell along periodic axes).

Conventions: index ``[a, B]`` is spatial ``a``, material ``B`` (as ``P = ∂W/∂F``); positive in
tension; eV/Å³ per reference volume. The per-atom Cauchy stress is ``τ_i / J_i`` with a local
volume ratio ``J_i`` the caller defines (``det F`` of the cell it averages over); ``τ_i = P_i Fᵀ``
under a homogeneous ``F``, and ``Σ_i Ω0_i sym(τ_i)`` is the virial of
:func:`~atomistic.potentials.protocol.evaluate`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from numpy.typing import ArrayLike

from atomistic.device import resolve_device
from atomistic.neighbours import NeighbourList, build_graph
from atomistic.potentials.protocol import Potential, species_indices

__all__ = ["site_stresses"]


def site_stresses(
    potential: Potential,
    *,
    reference_positions: np.ndarray,
    displacements: np.ndarray,
    symbols: Sequence[str],
    cell: np.ndarray,
    pbc: ArrayLike,
    volume_per_atom: ArrayLike,
    current_cell: np.ndarray | None = None,
    measure: Literal["piola", "kirchhoff"] = "piola",
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float64,
) -> np.ndarray:
    """Per-atom first Piola (or Kirchhoff) stress ``(n, 3, 3)`` in eV/Å³, positive in tension.

    Works for open clusters, slabs periodic along some axes (2.5D) and periodic cells; the
    bonds are those within ``potential.cutoff`` of the current positions, every periodic
    image included.

    Args:
        potential: a project potential (site energies from a graph); moved to ``device`` and
            ``dtype`` in place, as the calculators do.
        reference_positions: ``(n, 3)`` reference sites ``X`` in Å.
        displacements: ``(n, 3)`` displacements ``u`` in Å; the atoms are at ``X + u``.
        symbols: ``n`` chemical symbols.
        cell: ``(3, 3)`` reference cell ``C0`` in Å (rows), used along periodic axes only.
        pbc: bool or three bools.
        volume_per_atom: reference volume ``Ω0`` per atom in Å³, one number or ``(n,)``.
        current_cell: ``(3, 3)`` current cell ``C`` (rows); default ``cell`` (displacements
            periodic with the reference cell). A homogeneously deformed periodic block has
            ``C = C0 Fᵀ``.
        measure: ``"piola"``: ``P_i = (1/Ω0) Σ ½ g ⊗ R``; ``"kirchhoff"``:
            ``τ_i = (1/Ω0) Σ ½ g ⊗ r`` (the per-atom virial per reference volume).
        device: torch device; default CUDA when present.
        dtype: ``torch.float64`` (default) or ``torch.float32``.

    Returns:
        ``(n, 3, 3)`` float64; ``[i, a, B]`` with ``a`` spatial and ``B`` material.

    Raises:
        ValueError: for arrays of the wrong shape, a non-positive volume or an unknown
            ``measure``.
    """
    if measure not in ("piola", "kirchhoff"):
        raise ValueError(f"measure must be 'piola' or 'kirchhoff', got {measure!r}")
    X = np.ascontiguousarray(reference_positions, dtype=np.float64)
    n = X.shape[0]
    u = np.asarray(displacements, dtype=np.float64)
    if X.shape != (n, 3) or u.shape != (n, 3) or len(symbols) != n:
        raise ValueError(
            f"reference_positions {X.shape}, displacements {u.shape} and {len(symbols)} "
            "symbols must all describe the same n atoms, (n, 3)"
        )
    omega = np.broadcast_to(np.asarray(volume_per_atom, dtype=np.float64), (n,))
    if not np.all(omega > 0):
        raise ValueError("volume_per_atom must be positive")
    dev = resolve_device(device)
    pot = potential.to(device=dev, dtype=dtype)
    as_t = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float64), dtype=dtype, device=dev)
    C0 = np.asarray(cell, dtype=np.float64).reshape(3, 3)
    C = C0 if current_cell is None else np.asarray(current_cell, dtype=np.float64).reshape(3, 3)
    neighbours = NeighbourList(cutoff=potential.cutoff)
    species = species_indices(
        list(symbols), potential.elements, source=getattr(potential, "source", "potential")
    ).to(dev)
    graph = build_graph(
        positions=as_t(X + u), cell=as_t(C), species=species, neighbours=neighbours, pbc=pbc
    )
    vectors = graph.vectors.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(pot(graph.with_vectors(vectors)).sum(), vectors)
    if measure == "piola":
        i, j = neighbours.i, neighbours.j
        bonds = as_t(X[j] - X[i] + neighbours.shifts @ C0)
    else:
        bonds = vectors.detach()
    half = 0.5 * g[:, :, None] * bonds[:, None, :]
    out = torch.zeros((n, 3, 3), dtype=dtype, device=dev)
    out.index_add_(0, graph.i, half).index_add_(0, graph.j, half)
    return out.double().cpu().numpy() / omega[:, None, None]
