"""Mesh adaptation of the continuum: refine marked cells, or cut them out to grow the hole.

Both actions return a new :class:`~continuum.mesh.MeshData` whose facet markers mean what
they meant before (``outer_tag`` on the outer boundary, ``inner_tag`` on the hole's), plus
the parent cell of every owned new cell, so that the caller can carry cell data over. The
displacement itself is carried with ``fem.create_interpolation_data`` and
``Function.interpolate_nonmatching`` (see :mod:`coupling.state`), which is exact for fields
that the new space contains.

===============================================  =========================================
operation                                        code
===============================================  =========================================
split every edge of the marked cells (Plaza),    ``dolfinx.mesh.refine`` on those edges
and more where conformity needs it
tag of a child facet = tag of its parent facet   ``parent_cell``, ``parent_facet`` maps
keep the unmarked cells                          ``dolfinx.mesh.create_submesh``
new exterior facet: outer if it was, else inner  vertex match against the parent's facets
===============================================  =========================================

``refine`` returns its parent maps in the order it created the cells, not in the new mesh's
order; :func:`_input_order` reads them through ``topology.original_cell_index``.

Facet markers are made consistent across ranks (every rank holding a facet, owner or ghost,
carries its tag) with one reverse-add and forward scatter over the facet index map, so they
never depend on which rank happened to see a facet's cell.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from dolfinx import la
from dolfinx import mesh as dmesh
from mpi4py import MPI

from continuum.mesh import INNER_TAG, MeshData

__all__ = ["refine_cells", "remove_cells"]


def _n_local(mesh: dmesh.Mesh, dim: int) -> tuple[int, int]:
    """Owned and local (owned + ghost) number of entities of dimension ``dim``."""
    mesh.topology.create_entities(dim)
    imap = mesh.topology.index_map(dim)
    return imap.size_local, imap.size_local + imap.num_ghosts


def _summed_over_ranks(mesh: dmesh.Mesh, dim: int, values: np.ndarray) -> np.ndarray:
    """Every rank's ``values`` of each local entity summed, on its owner and its ghosts.

    Args:
        mesh: the mesh.
        dim: topological dimension of the entities.
        values: ``(n_local, k)`` contributions of this rank (ghosts included).

    Returns:
        ``(n_local, k)``: for each local entity, the sum over the ranks that hold it.
    """
    imap = mesh.topology.index_map(dim)
    vec = la.vector(imap, bs=values.shape[1], dtype=np.float64)
    vec.array[:] = values.ravel()
    vec.scatter_reverse(la.InsertMode.add)
    vec.scatter_forward()
    return vec.array.reshape(values.shape).copy()


def _complete_facet_values(mesh: dmesh.Mesh, facets: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Positive facet markers on every local facet, whichever rank set them (collective).

    Args:
        mesh: the mesh.
        facets: local facet indices this rank marks.
        values: their positive markers (ranks that mark one facet must agree).

    Returns:
        ``(n_local_facets,)`` int32 markers, 0 where no rank marked the facet.
    """
    fdim = mesh.topology.dim - 1
    _, n = _n_local(mesh, fdim)
    acc = np.zeros((n, 2))
    acc[facets, 0] = values
    acc[facets, 1] = 1.0
    acc = _summed_over_ranks(mesh, fdim, acc)
    out = np.zeros(n, dtype=np.int32)
    has = acc[:, 1] > 0
    out[has] = np.rint(acc[has, 0] / acc[has, 1]).astype(np.int32)
    return out


def _facet_tags(mesh: dmesh.Mesh, values: np.ndarray) -> dmesh.MeshTags:
    """Facet markers from ``(n_local_facets,)`` values (0: unmarked)."""
    facets = np.flatnonzero(values > 0).astype(np.int32)
    return dmesh.meshtags(mesh, mesh.topology.dim - 1, facets, values[facets].astype(np.int32))


def _cell_facets(mesh: dmesh.Mesh) -> np.ndarray:
    """Local facets of every local cell, ``(n_local_cells, n_facets_per_cell)``."""
    tdim = mesh.topology.dim
    mesh.topology.create_connectivity(tdim, tdim - 1)
    return mesh.topology.connectivity(tdim, tdim - 1).array.reshape(-1, tdim + 1)


def _owned_cells(mesh_data: MeshData, cells: np.ndarray, *, name: str) -> np.ndarray:
    """``cells`` as int32, checked to be owned local cell indices."""
    arr = np.asarray(cells).reshape(-1)
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must hold integer cell indices, got dtype {arr.dtype}")
    n_owned, _ = _n_local(mesh_data.mesh, mesh_data.mesh.topology.dim)
    if arr.size and (arr.min() < 0 or arr.max() >= n_owned):
        raise ValueError(f"{name} must be owned local cells in [0, {n_owned}), got {arr.min()}…")
    return np.unique(arr.astype(np.int32))


def _input_order(new: dmesh.Mesh, n_input: int) -> np.ndarray:
    """Row of each owned cell of a refined mesh in ``refine``'s parent arrays.

    ``refine`` returns its parent maps in the order the new cells were created; the mesh
    built from them renumbers its cells. ``original_cell_index`` holds each cell's global
    creation index, and with cells kept on their rank the local rows are offset by the
    number of cells the lower ranks created.
    """
    n_owned, _ = _n_local(new, new.topology.dim)
    offset = new.comm.exscan(n_input)  # collective; None on rank 0
    offset = 0 if new.comm.rank == 0 else int(offset)
    rows = np.asarray(new.topology.original_cell_index[:n_owned], dtype=np.int64) - offset
    if rows.size and (rows.min() < 0 or rows.max() >= n_input):  # pragma: no cover
        raise RuntimeError("refine moved cells between ranks: the parent maps do not apply")
    return rows


def refine_cells(mesh_data: MeshData, *, cells: np.ndarray) -> tuple[MeshData, np.ndarray]:
    """Refine the marked cells (and what conformity needs) by Plaza edge bisection.

    Every edge of a marked cell is split; the refinement closes the mesh conformingly, so
    some neighbours are split too. Cells stay on their rank and the ghost layer is rebuilt.
    Facet markers are carried from each parent facet to its children through refine's
    parent maps (not ``transfer_meshtag``). Collective: every rank calls it, with an empty
    ``cells`` if it marks none.

    In 3D the bisection breaks ties between equally long edges by rank-dependent numbering:
    the same marks on another number of ranks give as many cells, not always the same ones.

    Args:
        mesh_data: the mesh and its facet markers (triangles or tetrahedra).
        cells: owned local cell indices to refine, any integer array (duplicates allowed).

    Returns:
        ``(new_mesh_data, parent)``: the refined mesh with its markers, and for each owned
        cell of the new mesh the local index of its parent cell in the old mesh,
        ``(n_owned_new_cells,)`` int32.

    Raises:
        ValueError: a cell index is not an owned local cell.
    """
    mesh = mesh_data.mesh
    tdim = mesh.topology.dim
    marked = _owned_cells(mesh_data, cells, name="cells")
    old_tags = _complete_facet_values(
        mesh, mesh_data.facet_tags.indices, mesh_data.facet_tags.values
    )
    mesh.topology.create_connectivity(tdim, 1)
    n_edges = {2: 3, 3: 6}[tdim]
    cell_edges = mesh.topology.connectivity(tdim, 1).array.reshape(-1, n_edges)
    edges = np.unique(cell_edges[marked]).astype(np.int32)
    new, parent_cell, parent_facet = dmesh.refine(
        mesh, edges, option=dmesh.RefinementOption.parent_cell_and_facet
    )
    order = _input_order(new, len(parent_cell))
    parent = np.asarray(parent_cell, dtype=np.int32)[order]
    local_parent_facet = np.asarray(parent_facet).reshape(-1, tdim + 1)[order]
    child, k = np.nonzero(local_parent_facet >= 0)
    old_facet = _cell_facets(mesh)[parent[child], local_parent_facet[child, k]]
    values = old_tags[old_facet]
    sel = values > 0
    new_facet = _cell_facets(new)[child[sel], k[sel]]
    tags = _complete_facet_values(new, new_facet, values[sel])
    out = dataclasses.replace(mesh_data, mesh=new, facet_tags=_facet_tags(new, tags))
    return out, parent


def _parent_facets(
    sub: dmesh.Mesh,
    mesh: dmesh.Mesh,
    facets: np.ndarray,
    maps: tuple[dmesh.EntityMap, dmesh.EntityMap],
) -> np.ndarray:
    """Local facet of ``mesh`` that each local facet of the submesh ``sub`` is.

    Args:
        sub: the submesh.
        mesh: its parent mesh.
        facets: local facet indices of ``sub``.
        maps: ``(cell_map, vertex_map)`` of :func:`dolfinx.mesh.create_submesh`.

    Returns:
        ``(len(facets),)`` local facet indices of ``mesh``.
    """
    cell_map, vertex_map = maps
    tdim = mesh.topology.dim
    for m in (sub, mesh):
        m.topology.create_connectivity(tdim - 1, 0)
        m.topology.create_connectivity(tdim - 1, tdim)
    f2c = sub.topology.connectivity(tdim - 1, tdim)
    cell = f2c.array[f2c.offsets[facets]]  # any cell of the facet
    parent_cell = np.asarray(cell_map.sub_topology_to_topology(cell, False), dtype=np.int32)
    sub_vertices = sub.topology.connectivity(tdim - 1, 0).array.reshape(-1, tdim)[facets]
    vertices = np.asarray(vertex_map.sub_topology_to_topology(sub_vertices.ravel(), False))
    vertices = np.sort(vertices.reshape(-1, tdim), axis=1)
    candidates = _cell_facets(mesh)[parent_cell]  # (n, tdim + 1)
    parent_f2v = mesh.topology.connectivity(tdim - 1, 0).array.reshape(-1, tdim)
    candidate_vertices = np.sort(parent_f2v[candidates], axis=2)
    match = np.all(candidate_vertices == vertices[:, None, :], axis=2)
    if not np.all(match.sum(axis=1) == 1):  # pragma: no cover - a submesh facet is a facet
        raise RuntimeError("a submesh facet matches no facet of its parent cell")
    return candidates[np.arange(len(facets)), np.argmax(match, axis=1)]


def remove_cells(mesh_data: MeshData, *, remove: np.ndarray) -> tuple[MeshData, np.ndarray]:
    """A new mesh without the marked cells: the hole grows into them.

    Facets that were marked ``outer_tag`` and are still on the boundary keep it; every other
    exterior facet of the new mesh gets ``inner_tag`` (:data:`~continuum.mesh.INNER_TAG` if
    the mesh had no hole). Ghost cells follow their owner's decision, so the new mesh keeps
    the ghost layer. Collective: every rank calls it, with an empty ``remove`` if it marks none.

    Args:
        mesh_data: the mesh and its facet markers (triangles or tetrahedra).
        remove: owned local cell indices to remove.

    Returns:
        ``(new_mesh_data, parent)``: the remaining mesh with its markers, and for each owned
        cell of the new mesh the local index of the same cell in the old mesh,
        ``(n_owned_new_cells,)`` int32.

    Raises:
        ValueError: a cell index is not an owned local cell, or every cell would be removed.
    """
    mesh = mesh_data.mesh
    tdim = mesh.topology.dim
    drop = _owned_cells(mesh_data, remove, name="remove")
    n_owned, n_local = _n_local(mesh, tdim)
    flag = np.zeros((n_local, 1))
    flag[drop] = 1.0
    flag = _summed_over_ranks(mesh, tdim, flag)  # ghosts learn their owner's decision
    keep = np.flatnonzero(flag[:, 0] == 0).astype(np.int32)
    if mesh.comm.allreduce(int(np.count_nonzero(keep < n_owned)), op=MPI.SUM) == 0:
        raise ValueError("remove_cells would remove every cell of the mesh")
    old_tags = _complete_facet_values(
        mesh, mesh_data.facet_tags.indices, mesh_data.facet_tags.values
    )
    sub, cell_map, vertex_map, _ = dmesh.create_submesh(mesh, tdim, keep)
    n_owned_sub, _ = _n_local(sub, tdim)
    parent = np.asarray(
        cell_map.sub_topology_to_topology(np.arange(n_owned_sub, dtype=np.int32), False),
        dtype=np.int32,
    )
    sub.topology.create_connectivity(tdim - 1, tdim)
    exterior = dmesh.exterior_facet_indices(sub.topology)
    was = old_tags[_parent_facets(sub, mesh, exterior, (cell_map, vertex_map))]
    inner_tag = INNER_TAG if mesh_data.inner_tag is None else mesh_data.inner_tag
    values = np.where(was == mesh_data.outer_tag, mesh_data.outer_tag, inner_tag)
    tags = _complete_facet_values(sub, exterior, values)
    any_inner = mesh.comm.allreduce(bool(np.any(tags == inner_tag)), op=MPI.LOR)
    out = dataclasses.replace(
        mesh_data,
        mesh=sub,
        facet_tags=_facet_tags(sub, tags),
        inner_tag=inner_tag if any_inner else None,
    )
    return out, parent
