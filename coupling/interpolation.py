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

import hashlib
import weakref
from typing import Any

import dolfinx
import numpy as np
import scipy.sparse as sp
from mpi4py import MPI

__all__ = ["PointOutsideMeshError", "containing_cells", "p1_interpolation_matrix", "points_in_mesh"]


class PointOutsideMeshError(ValueError):
    """A point (an atom) is not inside any cell of the mesh."""


def _barycentric(vertices: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Barycentric coordinates ``(m, d+1)`` of ``points`` ``(m, d)`` in simplices."""
    T = np.swapaxes(vertices[:, 1:] - vertices[:, :1], 1, 2)  # (m, d, d)
    lam = np.linalg.solve(T, (points - vertices[:, 0])[..., None])[..., 0]
    return np.concatenate([1.0 - lam.sum(axis=1, keepdims=True), lam], axis=1)


def _locate(
    V: dolfinx.fem.FunctionSpace, points: np.ndarray, tol: float, *, with_cells: bool = False
) -> tuple[np.ndarray, ...]:
    """Each point's first owned cell that contains it (barycentric coordinates ``>= −tol``).

    Returns:
        ``(hit, cell_nodes, lam)``: per point the row into ``cell_nodes``/``lam`` of its
        containing candidate (−1: none on this rank), the candidates' local nodes ``(m, d+1)``
        and barycentric coordinates ``(m, d+1)``; with ``with_cells`` also the candidates'
        local cell indices ``(m,)``.
    """
    mesh = V.mesh
    tdim, gdim = mesh.topology.dim, mesh.geometry.dim
    n = len(points)
    tree = _owned_cells_tree(mesh)
    query = points.copy()
    if gdim == 2:
        query[:, 2] = 0.0
    candidates = dolfinx.geometry.compute_collisions_points(tree, query)
    point_of = np.repeat(np.arange(n), np.diff(candidates.offsets))
    cells = candidates.array.astype(np.int64)
    coords = V.tabulate_dof_coordinates()[:, :gdim]
    cell_nodes = V.dofmap.list[cells]  # (m, d+1) local node indices
    lam = (
        _barycentric(coords[cell_nodes], points[point_of, :gdim])
        if len(cells)
        else np.zeros((0, tdim + 1))
    )
    inside = np.flatnonzero(np.all(lam >= -tol, axis=1))
    hit = np.full(n, -1, dtype=np.int64)
    first = np.unique(point_of[inside], return_index=True)
    hit[first[0]] = inside[first[1]]
    if with_cells:
        return hit, cell_nodes, lam, cells
    return hit, cell_nodes, lam


#: Bounding-box tree of each live mesh's owned cells: building an atom system locates the
#: pad and the handshake atoms (and checks them first) on the same mesh, and the tree over
#: every cell is the dear part of each lookup.
_TREES: weakref.WeakKeyDictionary[Any, tuple[bytes, Any]] = weakref.WeakKeyDictionary()


def _owned_cells_tree(mesh: Any) -> Any:
    """:func:`dolfinx.geometry.bb_tree` of ``mesh``'s owned cells, built once per mesh.

    Kept while the mesh lives, and rebuilt should its vertex coordinates have changed.
    """
    tdim = mesh.topology.dim
    x = mesh.geometry.x
    stamp = hashlib.blake2b(np.ascontiguousarray(x).view(np.uint8), digest_size=16).digest()
    try:
        cached = _TREES.get(mesh)
    except TypeError:  # not weakly referable: no cache
        cached = None
    if cached is not None and cached[0] == stamp:
        return cached[1]
    n_owned_cells = mesh.topology.index_map(tdim).size_local
    tree = dolfinx.geometry.bb_tree(mesh, tdim, entities=np.arange(n_owned_cells, dtype=np.int32))
    try:
        _TREES[mesh] = (stamp, tree)
    except TypeError:
        pass
    return tree


def _owners(comm: MPI.Comm, found: np.ndarray) -> np.ndarray:
    """The lowest rank that found each point (``comm.size``: none)."""
    owner = np.where(found, comm.rank, comm.size).astype(np.int32)
    comm.Allreduce(MPI.IN_PLACE, owner, op=MPI.MIN)
    return owner


def containing_cells(
    V: dolfinx.fem.FunctionSpace, points: np.ndarray, *, tol: float = 1e-10
) -> np.ndarray:
    """``(n,)`` the local owned cell that holds each point on this rank, else −1 (collective).

    A point on a cell boundary shared by two ranks belongs to the lowest rank only (as in
    :func:`p1_interpolation_matrix`), so each point inside the mesh is counted on one rank.
    """
    points = np.ascontiguousarray(points, dtype=np.float64).reshape(-1, 3)
    hit, _, _, cells = _locate(V, points, tol, with_cells=True)
    owner = _owners(V.mesh.comm, hit >= 0)
    out = np.full(len(points), -1, dtype=np.int64)
    mine = (owner == V.mesh.comm.rank) & (hit >= 0)
    out[mine] = cells[hit[mine]]
    return out


def points_in_mesh(
    V: dolfinx.fem.FunctionSpace, points: np.ndarray, *, tol: float = 1e-10
) -> np.ndarray:
    """``(n,)`` True for the points inside an owned cell of some rank (collective).

    The test is that of :func:`p1_interpolation_matrix`, so every point kept here can be
    interpolated there.
    """
    points = np.ascontiguousarray(points, dtype=np.float64).reshape(-1, 3)
    hit, _, _ = _locate(V, points, tol)
    return _owners(V.mesh.comm, hit >= 0) < V.mesh.comm.size


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
    comm = V.mesh.comm
    points = np.ascontiguousarray(points, dtype=np.float64).reshape(-1, 3)
    n = len(points)
    hit, cell_nodes, lam = _locate(V, points, tol)
    owner = _owners(comm, hit >= 0)
    if np.any(owner == comm.size):
        bad = np.flatnonzero(owner == comm.size)
        raise PointOutsideMeshError(
            f"{len(bad)} point(s) lie outside the mesh, e.g. {points[bad[0]].tolist()} Å"
        )
    mine = np.flatnonzero(owner == comm.rank)
    pairs = hit[mine]
    nodes = cell_nodes[pairs]  # (m, d+1)
    weights = lam[pairs]
    m, k = nodes.shape
    rows = (3 * mine[:, None, None] + np.arange(3)[None, None, :]).repeat(k, axis=1)
    cols = 3 * nodes[:, :, None] + np.arange(3)[None, None, :]
    vals = np.broadcast_to(weights[:, :, None], (m, k, 3))
    n_nodes = V.dofmap.index_map.size_local + V.dofmap.index_map.num_ghosts
    return sp.csr_matrix((vals.ravel(), (rows.ravel(), cols.ravel())), shape=(3 * n, 3 * n_nodes))
