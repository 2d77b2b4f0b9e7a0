"""The state of a coupled problem, and how it is carried from one system to another.

A :class:`CoupledState` holds what a solve leaves behind: the monolithic vector, the
predictor of its load, the ghost-force correction in force, and, in a form that does not
depend on the system's numbering, the free atoms' sites and displacements, the FE field on
its mesh and the boundary displacement of the load.

:func:`restore_state` puts a state back:

- into the system it came from: exactly (state, predictor, correction, background field), as
  a rollback;
- into another system (a refined mesh, a grown atomistic region, a new potential), as the
  start of its next solve:

  ============================  ==========================================================
  unknown of the new system     its value
  ============================  ==========================================================
  FE node inside the old mesh   the old FE field, interpolated between the meshes
  FE node outside it            the load's boundary displacement there
  free atom on an old atom      that atom's displacement
  other free atom               the old FE field there plus the old background field
                                (the boundary displacement outside the old mesh)
  boundary and correction       :meth:`~coupling.system.CoupledSystem.set_boundary` with
                                the state's load: the first pass of the correction
  ============================  ==========================================================

  The new system keeps its own background field, set before; a correction recomputed at the
  solution is not carried (call ``update_correction`` again, as the passes do).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from dolfinx import fem
from petsc4py import PETSc

from atomistic.strain import match_sites
from coupling.interpolation import p1_interpolation_matrix, points_in_mesh
from coupling.model import Correction

if TYPE_CHECKING:
    from coupling.fields import Background, Displacement
    from coupling.protocol import SystemView

__all__ = ["CoupledState", "capture", "restore_state"]


@dataclass(frozen=True, kw_only=True)
class CoupledState:
    """A state of a coupled problem that outlives the system it was taken from.

    Attributes:
        source: ``id`` of the system it was taken from (exact restores only there).
        z: the monolithic vector ``(u_A, U)`` (a copy).
        predictor: the predictor of the load (a copy), or None before any boundary.
        correction: the ghost-force correction in force (a copy), or None.
        boundary: ``(displacement, predictor)`` of the load, as given to ``set_boundary``,
            or None.
        sites: ``(n_A, 3)`` reference sites of the free atoms, Å.
        displacements: ``(n_A, 3)`` their displacements, Å (every rank).
        fe: the FE field ``U`` on its mesh (a copy; the correction to ``background``).
        background: the background field the FE field corrects, or None.
    """

    source: int
    z: PETSc.Vec
    predictor: PETSc.Vec | None
    correction: Correction | None
    boundary: tuple[Displacement, Displacement] | None
    sites: np.ndarray
    displacements: np.ndarray
    fe: fem.Function
    background: Background | None


def capture(system: SystemView) -> CoupledState:
    """The current state of ``system`` (collective)."""
    lay = system.model.layout
    fe = fem.Function(system.problem.V)
    fe.x.array[:] = lay.fe_of(system.z)
    correction = system.model.correction
    return CoupledState(
        source=id(system),
        z=system.z.copy(),
        predictor=None if system.predictor is None else system.predictor.copy(),
        correction=None if correction is None else correction.copy(),
        boundary=system.boundary,
        sites=system.positions[: system.n_free].copy(),
        displacements=lay.atoms_of(system.z),
        fe=fe,
        background=system.background,
    )


def restore_state(system: SystemView, state: CoupledState) -> None:
    """Put ``state`` into ``system`` (module docstring; collective).

    Raises:
        ValueError: a state from another system that has no load (no boundary was set).
    """
    if state.source == id(system):
        if state.background is not system.background:
            system.set_background(state.background)
        if state.boundary is not None and state.boundary is not system.boundary:
            system.set_boundary(state.boundary[0], predictor=state.boundary[1])
        system.z = state.z.copy()
        system.predictor = None if state.predictor is None else state.predictor.copy()
        system.model.set_correction(None if state.correction is None else state.correction.copy())
        return
    if state.boundary is None:
        raise ValueError("a state carried to another system needs a load (set_boundary first)")
    boundary = state.boundary[0]
    lay = system.model.layout
    z = lay.create_vec()
    lay.set_fe(z, _fe_field(system, state, boundary)[: lay.n_fe_owned])
    lay.set_atoms(z, _free_atoms(system, state, boundary))
    system.z = z
    system.set_boundary(boundary, predictor=state.boundary[1])


def _fe_field(system: SystemView, state: CoupledState, boundary: Displacement) -> np.ndarray:
    """The new system's FE field (local, with ghosts).

    The old one interpolated between the meshes; the boundary displacement where a node is
    outside the old mesh.
    """
    V_new, V_old = system.problem.V, state.fe.function_space
    n_cells = V_new.mesh.topology.index_map(V_new.mesh.topology.dim).size_local
    cells = np.arange(n_cells, dtype=np.int32)
    data = fem.create_interpolation_data(V_new, V_old, cells, padding=1e-10)
    field = fem.Function(V_new)
    field.interpolate_nonmatching(state.fe, cells, data)
    field.x.scatter_forward()
    nodes = V_new.tabulate_dof_coordinates()
    outside = ~points_in_mesh(V_old, _gathered(system, nodes))
    values = field.x.array.reshape(-1, 3)
    local_outside = outside[_gathered_index(system, len(nodes))]
    values[local_outside] = boundary(nodes[local_outside])
    return values.ravel()


def _gathered(system: SystemView, points: np.ndarray) -> np.ndarray:
    """Every rank's ``points`` stacked in rank order, on every rank."""
    return np.vstack(system.model.comm.allgather(np.asarray(points, dtype=float)))


def _gathered_index(system: SystemView, n_local: int) -> np.ndarray:
    """The rows of this rank's points in :func:`_gathered`."""
    counts = system.model.comm.allgather(int(n_local))
    start = int(np.sum(counts[: system.model.comm.rank]))
    return np.arange(start, start + n_local)


def _free_atoms(system: SystemView, state: CoupledState, boundary: Displacement) -> np.ndarray:
    """``(n_A, 3)``: old atoms' displacements where sites match, else the old field."""
    X = system.positions[: system.n_free]
    u = np.asarray(boundary(X), dtype=float).reshape(-1, 3).copy()
    index = match_sites(X, state.sites, period=system.slab_period)
    on_atom = index >= 0
    u[on_atom] = state.displacements[index[on_atom]]
    rest = np.flatnonzero(~on_atom)
    if len(rest):
        V_old = state.fe.function_space
        inside = rest[points_in_mesh(V_old, X[rest])]
        if len(inside):
            interp = p1_interpolation_matrix(V_old, X[inside])
            u[inside] = system.model.layout.allsum(interp @ state.fe.x.array).reshape(-1, 3)
            if state.background is not None:
                u[inside] += state.background.displacement(X[inside])
    return u
