"""The continuum cells that a grown atomistic core removes from the mesh.

A grown region (:meth:`~coupling.handshake.Handshake.grow`) leaves cells of the mesh inside
its core, where the continuum weight ``1 − β`` is zero: their nodes carry no energy, so the
tangent is singular (or, tied to the atoms only through a penalty site near one corner,
nearly so) until they go. A cell is removed when

- its continuum weight ``1 − β`` is below :data:`WEIGHT_FLOOR` at every one of its
  quadrature points (its vertices alone are not enough: a cell with one vertex just outside
  the core can have every quadrature point inside, and a node on such cells only has no
  stiffness). At zero weight removing it leaves the discrete energy unchanged; at a weight
  below the floor it changes it by less than that fraction of the cell's energy, and the
  ghost-force correction keeps the patch test exact. A cell kept at a weight of 1e-4 has
  nothing but that weight to resist the atoms' slip through the handshake penalty: it was
  seen sheared and squashed until its smallest stretch hit the Cauchy–Born wall, which
  stopped Newton; and
- it holds no pad site, which the continuum must reach (the pad is interpolated from the
  FE field). Handshake sites left outside the cut mesh (at most a cell's size inside the
  handshake, ``β`` near 1) are simply not tied to the continuum by the penalty
  (:func:`coupling.system.build_coupled_system`).

:func:`core_cells` gives the mask; cutting the cells from the mesh is the continuum's job.
"""

from __future__ import annotations

import basix
import numpy as np
import ufl
from dolfinx import fem, geometry
from dolfinx.mesh import Mesh

from atomistic.regions import REGION_PAD
from coupling.handshake import Handshake

__all__ = ["WEIGHT_FLOOR", "cells_holding", "core_cells"]

#: Cells whose continuum weight is below this at every quadrature point are cut.
WEIGHT_FLOOR = 1e-3


def _quadrature_points(mesh: Mesh, degree: int) -> np.ndarray:
    """``(n_owned_cells, n_points, gdim)`` physical points of basix's default rule."""
    tdim, gdim = mesh.topology.dim, mesh.geometry.dim
    cells = np.arange(mesh.topology.index_map(tdim).size_local, dtype=np.int32)
    points = np.asarray(basix.make_quadrature(mesh.basix_cell(), degree)[0])
    x = fem.Expression(ufl.SpatialCoordinate(mesh), points).eval(mesh, cells)
    return np.asarray(x).reshape(len(cells), len(points), gdim)


def cells_holding(mesh: Mesh, points: np.ndarray) -> np.ndarray:
    """``(n_owned_cells,)`` True for this rank's owned cells that hold one of ``points``.

    Args:
        mesh: the mesh.
        points: ``(m, 3)`` points in Å (``z`` ignored on a 2D mesh). A point on a shared
            facet or vertex marks every cell that touches it.
    """
    tdim = mesh.topology.dim
    n = mesh.topology.index_map(tdim).size_local
    x = np.array(points, dtype=np.float64).reshape(-1, 3)
    if mesh.geometry.dim == 2:
        x[:, 2] = 0.0
    tree = geometry.bb_tree(mesh, tdim, entities=np.arange(n, dtype=np.int32))
    hits = geometry.compute_colliding_cells(mesh, geometry.compute_collisions_points(tree, x), x)
    held = np.zeros(n, dtype=bool)
    held[np.asarray(hits.array, dtype=np.int64)] = True
    return held


def core_cells(
    *, mesh: Mesh, handshake: Handshake, sites: np.ndarray, quadrature_degree: int = 2
) -> np.ndarray:
    """``(n_owned_cells,)`` True for the owned cells that the core removes (module docstring).

    Args:
        mesh: the continuum mesh (each rank marks its owned cells; no communication).
        handshake: the (grown) region.
        sites: ``(n, 3)`` reference sites of the coupled atoms in Å (any superset of the
            pad sites; the same on every rank).
        quadrature_degree: that of the continuum problem
            (:class:`~continuum.problem.HyperelasticProblem`'s default is 2).
    """
    points = _quadrature_points(mesh, quadrature_degree)
    weight = handshake.continuum_weight(points.reshape(-1, points.shape[-1]))
    inside = (weight.reshape(points.shape[:-1]) < WEIGHT_FLOOR).all(axis=1)
    X = np.asarray(sites, dtype=np.float64).reshape(-1, 3)
    reached = X[handshake.classify(X) == REGION_PAD]
    return inside & ~cells_holding(mesh, reached)
