"""An assembled monolithic matrix ``M ≈ H`` that preconditions the Newton–Krylov solve.

    M = [ μ L_AA + κ S_Hᵀ S_H          μ L_AP I_P − κ S_Hᵀ I_H              ]
        [ (·)ᵀ                         K + μ I_Pᵀ L_PP I_P + κ I_Hᵀ I_H       ]

``K`` is the assembled FE tangent, so the FE block is exact and the iteration count does not
grow as the mesh is refined. ``L`` is a graph Laplacian of the atoms with weights
``max(β_i, β_j) exp(−A (r_ij/r_nn − 1))`` (the "Exp" preconditioner of Packwood et al.,
J. Chem. Phys. 144, 164109 (2016)), scaled by ``μ`` fitted to the atomistic Hessian along
smooth test modes. ``M`` is SPD and factorised with MUMPS.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp
import vesin
from petsc4py import PETSc

from atomistic.neighbours import vesin_box

if TYPE_CHECKING:
    from coupling.layout import MonolithicLayout

__all__ = [
    "NEAREST_NEIGHBOURS",
    "PreconditionerData",
    "atom_laplacian",
    "fit_laplacian_scale",
    "monolithic_matrix",
]

#: ``cutoff_factor`` of :func:`atom_laplacian` that links only the nearest neighbours of an
#: fcc lattice (the second shell is at √2 r_nn), used with 3D meshes (GAMG). On the void
#: benchmark (cases/void-cu-3d, R = 21.5 Å) it gave 50 CG iterations against 54 with the three
#: shells of the default 1.8, a third as many atom entries in ``M``, and a cheaper GAMG set-up
#: and V-cycle; the answer is the same (the preconditioner steers CG only).
NEAREST_NEIGHBOURS = 1.2


@dataclass(frozen=True, kw_only=True)
class PreconditionerData:
    """What the monolithic preconditioner needs beyond the FE tangent.

    Attributes:
        L: unit atom Laplacian over free then pad atoms (rank 0; None elsewhere).
        mu: its scale in eV/Å² (every rank).
        n_free: number of free atoms.
        penalty_atoms: ``(n_H,)`` indices of handshake atoms among the free ones.
        kappa: penalty stiffness in eV/Å².
        pad_interpolation: local ``I_P``.
        penalty_interpolation: local ``I_H``.
    """

    L: sp.csr_matrix | None
    mu: float
    n_free: int
    penalty_atoms: np.ndarray
    kappa: float
    pad_interpolation: sp.csr_matrix
    penalty_interpolation: sp.csr_matrix


def atom_laplacian(
    *,
    positions: np.ndarray,
    beta: np.ndarray,
    cell: np.ndarray,
    pbc: tuple[bool, bool, bool],
    r_nn: float,
    A: float = 3.0,
    cutoff_factor: float = 1.8,
    shift: float = 1e-3,
) -> sp.csr_matrix:
    """Weighted graph Laplacian ``(3n, 3n)`` of the atoms (unit stiffness, eV/Å² per μ).

    Args:
        positions: ``(n, 3)`` atom positions in Å.
        beta: ``(n,)`` blending weights.
        cell: ``(3, 3)`` cell (periodic axes only).
        pbc: three bools.
        r_nn: nearest-neighbour distance in Å.
        A: decay of the weights with distance.
        cutoff_factor: pairs up to ``cutoff_factor · r_nn`` are linked.
        shift: diagonal shift (relative), which keeps ``L`` definite.
    """
    box, pbc3 = vesin_box(positions, cell, pbc, cutoff_factor * r_nn)
    nl = vesin.NeighborList(cutoff=cutoff_factor * r_nn, full_list=False)
    i, j, d = nl.compute(np.asarray(positions, dtype=float), box, pbc3, "ijd")
    n = len(positions)
    w = np.maximum(beta[i], beta[j]) * np.exp(-A * (d / r_nn - 1.0))
    keep = i != j
    i, j, w = i[keep], j[keep], w[keep]
    L = sp.coo_matrix((-w, (i, j)), shape=(n, n))
    L = (L + L.T).tocsr()
    diag = -np.asarray(L.sum(axis=1)).ravel()
    L = L + sp.diags(diag + shift * max(diag.max(initial=1.0), 1e-12))
    return sp.kron(L, sp.identity(3), format="csr")


def fit_laplacian_scale(
    hessian_vector: Callable[[np.ndarray], np.ndarray], positions: np.ndarray, L: sp.csr_matrix
) -> float:
    """``μ`` so that ``μ L`` matches the Hessian on smooth shear waves (Rayleigh quotients).

    Args:
        hessian_vector: callable ``v (n, 3) -> H v (n, 3)`` (atoms only).
        positions: ``(n, 3)`` in Å.
        L: the unit Laplacian from :func:`atom_laplacian`.
    """
    x = np.asarray(positions, dtype=float)
    span = np.ptp(x, axis=0) + 1e-9
    ratios = []
    # three transverse (shear) modes, one per axis: the softer waves, which set the Krylov
    # iteration count; on a cubic lattice they give one value, and the median of all nine
    # (three longitudinal) was the same, at three times the cost in Hessian products
    for axis, comp in ((0, 1), (1, 2), (2, 0)):
        v = np.zeros_like(x)
        v[:, comp] = np.sin(np.pi * (x[:, axis] - x[:, axis].min()) / span[axis])
        vLv = float(v.ravel() @ (L @ v.ravel()))
        vHv = float(np.sum(v * hessian_vector(v)))
        if vLv > 0 and vHv > 0:
            ratios.append(vHv / vLv)
    return float(np.median(ratios)) if ratios else 1.0


def monolithic_matrix(
    *,
    layout: MonolithicLayout,
    tangent: PETSc.Mat,
    dirichlet_rows: np.ndarray,
    data: PreconditionerData,
) -> PETSc.Mat:
    """Assemble ``M`` (see the module docstring) as a distributed PETSc AIJ matrix.

    Args:
        layout: the :class:`~coupling.layout.MonolithicLayout`.
        tangent: assembled FE tangent ``K`` (DOLFINx layout, unconstrained).
        dirichlet_rows: global monolithic indices of Dirichlet DOFs owned here.
        data: the atom Laplacian, penalty and interpolation operators.
    """
    comm = layout.comm
    N = layout.size_global
    # global interpolation operators, gathered on rank 0 (small: a few entries per atom)
    I_P = _gather_global(data.pad_interpolation, layout, N)
    I_H = _gather_global(data.penalty_interpolation, layout, N)
    ai, aj, av = tangent.getValuesCSR()
    blocks = _atom_blocks(data, I_P, I_H, N) if comm.rank == 0 else None
    if comm.size == 1:
        # one rank owns every row: the tangent's CSR arrays shifted past the atom rows, and the
        # atom blocks added as a sparse sum (no triplets of the whole tangent to sort)
        assert blocks is not None
        indptr = np.concatenate([np.zeros(layout.fe_offset, dtype=ai.dtype), ai])
        K = sp.csr_matrix((av, layout.fe_offset + aj, indptr), shape=(N, N))
        # scipy's sum drops entries that are exactly zero, such as the diagonal of an idle
        # node whose cells all carry no weight, and zeroRowsColumns below needs the diagonal
        # of every Dirichlet row: a 1 there first (it sets the diagonal to 1 anyway)
        fixed = np.zeros(N)
        fixed[np.asarray(dirichlet_rows, dtype=np.int64)] = 1.0
        M = _aij_matrix(layout, (K + blocks.tocsr() + sp.diags(fixed)).tocsr(), N)
    else:
        r0 = tangent.getOwnershipRange()[0]
        rows = [layout.fe_offset + r0 + np.repeat(np.arange(len(ai) - 1), np.diff(ai))]
        cols, vals = [layout.fe_offset + np.asarray(aj)], [np.asarray(av)]
        if blocks is not None:
            c = blocks.tocoo()
            rows.append(c.row)
            cols.append(c.col)
            vals.append(c.data)
        M = _owned_csr_matrix(
            layout, np.concatenate(rows), np.concatenate(cols), np.concatenate(vals), N
        )
    M.zeroRowsColumns(np.asarray(dirichlet_rows, dtype=PETSc.IntType), diag=1.0)  # type: ignore[arg-type]
    return M


def _atom_blocks(
    data: PreconditionerData, I_P: sp.csr_matrix | None, I_H: sp.csr_matrix | None, N: int
) -> sp.spmatrix:
    """The atom Laplacian and penalty blocks of ``M`` over all ``N`` rows (rank 0)."""
    assert I_P is not None and I_H is not None  # gathered on rank 0
    L, mu, n_free, kappa = data.L, data.mu, data.n_free, data.kappa
    penalty_atoms = data.penalty_atoms
    nA = 3 * n_free
    S = sp.csr_matrix(
        (
            np.ones(3 * len(penalty_atoms)),
            (
                np.arange(3 * len(penalty_atoms)),
                (3 * np.asarray(penalty_atoms)[:, None] + np.arange(3)).ravel(),
            ),
        ),
        shape=(3 * len(penalty_atoms), N),
    )
    blocks = kappa * (S - I_H).T @ (S - I_H)
    if L is not None and mu > 0:
        L = mu * L
        # z → (free, pad) atom displacements: identity on the free atoms, I_P on the pad
        T = sp.vstack([sp.eye(nA, N, format="csr"), I_P]).tocsr()
        blocks = blocks + T.T @ L @ T
    return blocks


def _gather_global(local: sp.csr_matrix, layout: MonolithicLayout, N: int) -> sp.csr_matrix | None:
    """Stack the per-rank rows of an interpolation matrix with global columns, on rank 0."""
    c = local.tocoo()
    triplets = (c.row, layout.fe_global[c.col], c.data)
    gathered = layout.comm.gather(triplets, root=0)
    if layout.comm.rank != 0:
        return None
    rows = np.concatenate([t[0] for t in gathered])
    cols = np.concatenate([t[1] for t in gathered])
    vals = np.concatenate([t[2] for t in gathered])
    # a ghost node can appear from two ranks for the same point only if both own the row,
    # which the interpolation forbids, so duplicates are genuine sums of one row
    return sp.csr_matrix((vals, (rows, cols)), shape=(local.shape[0], N))


def _owned_csr_matrix(
    layout: MonolithicLayout, rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, N: int
) -> PETSc.Mat:
    """The AIJ matrix (block size 3) summing the triplets every rank contributes.

    Triplets of rows another rank owns are sent to it; each rank then sums its own rows
    (duplicates added) and hands PETSc one CSR array, which preallocates exactly.
    """
    comm = layout.comm
    bounds = np.cumsum([0, *comm.allgather(layout.size_local)])
    start, stop = int(bounds[comm.rank]), int(bounds[comm.rank + 1])
    if comm.size > 1:
        owner = np.searchsorted(bounds, rows, side="right") - 1
        parts = [np.flatnonzero(owner == r) for r in range(comm.size)]
        received = comm.alltoall([(rows[k], cols[k], vals[k]) for k in parts])
        rows, cols, vals = (np.concatenate([t[i] for t in received]) for i in range(3))
    local = sp.csr_matrix((vals, (rows - start, cols)), shape=(stop - start, N))
    return _aij_matrix(layout, local, N)


def _aij_matrix(layout: MonolithicLayout, local: sp.csr_matrix, N: int) -> PETSc.Mat:
    """The AIJ matrix (block size 3) whose rows owned here are ``local`` (duplicates added)."""
    local.sum_duplicates()
    local.sort_indices()
    size = ((local.shape[0], N), (local.shape[0], N))
    csr = (
        local.indptr.astype(PETSc.IntType),
        local.indices.astype(PETSc.IntType),
        local.data.astype(PETSc.ScalarType),
    )
    return PETSc.Mat().createAIJ(size, bsize=3, csr=csr, comm=layout.comm)
