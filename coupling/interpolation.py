"""The sparse atoms ↔ FE interpolation operator, serial or under MPI.

For P1 simplices, ``U(X_a) = Σ_k λ_k(X_a) U_k`` with ``λ`` the barycentric coordinates of
``X_a`` in the cell that contains it. Each rank builds rows for the points that fall in its
*owned* cells; a point on a cell boundary shared by two ranks goes to the lowest rank, so
every point has exactly one row set across all ranks. Columns are local DOF indices
(owned and ghost, unrolled with block size 3).

==============================  =========================================
operation                       code
==============================  =========================================
``U(X)`` on every rank          ``comm.allreduce(I_local @ U_local)``
``Iᵀ f`` into the FE vector     ``I_local.T @ f`` then reverse scatter (add)
==============================  =========================================
"""

from __future__ import annotations

import dolfinx
import numpy as np
import scipy.sparse as sp
from mpi4py import MPI

__all__ = ["PointOutsideMeshError", "p1_interpolation_matrix"]


class PointOutsideMeshError(ValueError):
    """A point (an atom) is not inside any cell of the mesh."""


def _barycentric(vertices: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Barycentric coordinates ``(m, d+1)`` of ``points`` ``(m, d)`` in simplices."""
    T = np.swapaxes(vertices[:, 1:] - vertices[:, :1], 1, 2)  # (m, d, d)
    lam = np.linalg.solve(T, (points - vertices[:, 0])[..., None])[..., 0]
    return np.concatenate([1.0 - lam.sum(axis=1, keepdims=True), lam], axis=1)


def p1_interpolation_matrix(
    V: dolfinx.fem.FunctionSpace, points: np.ndarray, *, tol: float = 1e-10
) -> sp.csr_matrix:
    """Rows ``3a + c`` map the local FE vector to component ``c`` of ``U`` at point ``a``.

    Args:
        V: P1 Lagrange space with 3 components on a simplex mesh (2D or 3D geometry).
        points: ``(n, 3)`` points in Å (for a 2D mesh, ``z`` is ignored), same on all ranks.
        tol: barycentric tolerance for points on cell boundaries.

    Returns:
        ``(3n, 3 n_local_nodes)`` CSR matrix (owned + ghost nodes); rows of points owned by
        other ranks are empty.

    Raises:
        PointOutsideMeshError: some point lies in no cell on any rank.
    """
    mesh = V.mesh
    comm = mesh.comm
    tdim = mesh.topology.dim
    gdim = mesh.geometry.dim
    points = np.ascontiguousarray(points, dtype=np.float64).reshape(-1, 3)
    n = len(points)
    n_owned_cells = mesh.topology.index_map(tdim).size_local
    tree = dolfinx.geometry.bb_tree(mesh, tdim, entities=np.arange(n_owned_cells, dtype=np.int32))
    query = points.copy()
    if gdim == 2:
        query[:, 2] = 0.0
    candidates = dolfinx.geometry.compute_collisions_points(tree, query)
    counts = np.diff(candidates.offsets)
    point_of = np.repeat(np.arange(n), counts)
    cells = candidates.array.astype(np.int64)

    dofs = V.dofmap.list  # (n_cells, d+1) local node indices
    coords = V.tabulate_dof_coordinates()[:, :gdim]
    cell_nodes = dofs[cells]
    lam = (
        _barycentric(coords[cell_nodes], points[point_of, :gdim])
        if len(cells)
        else np.zeros((0, tdim + 1))
    )
    inside = np.all(lam >= -tol, axis=1)
    # first containing candidate per point
    hit = np.full(n, -1, dtype=np.int64)
    idx = np.flatnonzero(inside)
    first = np.unique(point_of[idx], return_index=True)
    hit[first[0]] = idx[first[1]]
    found = hit >= 0

    rank = comm.rank
    owner = np.where(found, rank, comm.size).astype(np.int32)
    comm.Allreduce(MPI.IN_PLACE, owner, op=MPI.MIN)
    if np.any(owner == comm.size):
        bad = np.flatnonzero(owner == comm.size)
        raise PointOutsideMeshError(
            f"{len(bad)} point(s) lie outside the mesh, e.g. {points[bad[0]].tolist()} Å"
        )
    mine = np.flatnonzero(owner == rank)
    pairs = hit[mine]
    nodes = cell_nodes[pairs]  # (m, d+1)
    weights = lam[pairs]
    m, k = nodes.shape
    rows = (3 * mine[:, None, None] + np.arange(3)[None, None, :]).repeat(k, axis=1)
    cols = 3 * nodes[:, :, None] + np.arange(3)[None, None, :]
    vals = np.broadcast_to(weights[:, :, None], (m, k, 3))
    n_nodes = V.dofmap.index_map.size_local + V.dofmap.index_map.num_ghosts
    return sp.csr_matrix((vals.ravel(), (rows.ravel(), cols.ravel())), shape=(3 * n, 3 * n_nodes))
