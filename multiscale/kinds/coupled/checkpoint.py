"""Checkpoints of the adaptive loop: ``<output>/adaptive/checkpoint/``, one per iteration.

At the start of iteration ``k`` (its state solved, nothing estimated yet) the loop writes
what it needs to go on from there, replacing the previous checkpoint atomically (a new folder
renamed over the old one, so a run killed while writing leaves the last complete one):

===================  ==========================================================================
file                 content
===================  ==========================================================================
``mesh.npz``         the mesh: node coordinates and cells by global node number, the tagged
                     boundary facets (by their nodes) with their tags
``state.npz``        the free atoms' sites and displacements, the FE displacement at the FE
                     dofs' coordinates, the core's balls (centres, radii)
``record.json``      the iteration ``k``, the history rows before it, notes, budgets reached,
                     oracle calls, the wall time so far
===================  ==========================================================================

``multiscale run CASE --restart`` rebuilds the mesh and the grown region from these, puts the
atoms and the FE field back where they were (atoms by site, the field by dof coordinate, so
the partition of a restarted ``mpiexec`` run may differ), solves once from there (it is
already the solution, to the solver's tolerance) and goes on with iteration ``k``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["CHECKPOINT_DIR", "Checkpoint", "read_checkpoint", "restore_run", "write_checkpoint"]

#: Folder of the checkpoint, under the output folder.
CHECKPOINT_DIR = Path("adaptive") / "checkpoint"


@dataclasses.dataclass(kw_only=True)
class Checkpoint:
    """What a restart needs (rank 0 holds the arrays; other ranks hold ``record`` only)."""

    record: dict[str, Any]
    mesh: dict[str, np.ndarray] | None
    state: dict[str, np.ndarray] | None


def _gather_mesh(mesh_data: Any) -> dict[str, np.ndarray] | None:
    """The mesh on rank 0 by global node number (collective; None on other ranks)."""
    mesh = mesh_data.mesh
    comm = mesh.comm
    tdim = mesh.topology.dim
    geometry = mesh.geometry
    imap = geometry.index_map()
    n_local = imap.size_local + imap.num_ghosts
    glob = imap.local_to_global(np.arange(n_local, dtype=np.int32)).astype(np.int64)
    n_owned_cells = mesh.topology.index_map(tdim).size_local
    cells = glob[geometry.dofmaps[0][:n_owned_cells]]
    x = geometry.x[: imap.size_local, : geometry.dim]
    tags = mesh_data.facet_tags
    from dolfinx.mesh import entities_to_geometry

    n_owned_facets = mesh.topology.index_map(tdim - 1).size_local
    mine = tags.indices < n_owned_facets
    facets = tags.indices[mine].astype(np.int32)
    facet_nodes = glob[entities_to_geometry(mesh, tdim - 1, facets)] if len(facets) else None
    parts = comm.gather(
        (
            glob[: imap.size_local],
            x.copy(),
            cells,
            np.zeros((0, tdim), np.int64) if facet_nodes is None else facet_nodes,
            tags.values[mine].copy(),
        ),
        root=0,
    )
    if comm.rank != 0:
        return None
    assert parts is not None
    n = int(imap.size_global)
    coords = np.zeros((n, geometry.dim))
    for g, xs, *_ in parts:
        coords[g] = xs
    return {
        "x": coords,
        "cells": np.vstack([p[2] for p in parts]),
        "facets": np.vstack([p[3] for p in parts]),
        "facet_values": np.concatenate([p[4] for p in parts]).astype(np.int32),
        "outer_tag": np.array(mesh_data.outer_tag),
        "inner_tag": np.array(-1 if mesh_data.inner_tag is None else mesh_data.inner_tag),
    }


def _build_mesh(comm: Any, data: dict[str, np.ndarray] | None) -> Any:
    """The mesh of :func:`_gather_mesh`, distributed over ``comm`` (collective)."""
    import basix.ufl
    import ufl
    from dolfinx.mesh import (
        GhostMode,
        create_cell_partitioner,
        create_mesh,
        entities_to_geometry,
        meshtags,
    )

    from continuum.mesh import MeshData

    head = None
    if comm.rank == 0:
        assert data is not None
        head = (
            int(data["x"].shape[1]),
            int(data["outer_tag"]),
            int(data["inner_tag"]),
            data["facets"],
            data["facet_values"],
        )
    gdim, outer_tag, inner_tag, facets, values = comm.bcast(head, root=0)
    cell = "triangle" if gdim == 2 else "tetrahedron"
    element = ufl.Mesh(basix.ufl.element("Lagrange", cell, 1, shape=(gdim,)))
    if comm.rank == 0:
        assert data is not None
        cells, x = data["cells"].astype(np.int64), data["x"]
    else:
        cells, x = np.zeros((0, gdim + 1), np.int64), np.zeros((0, gdim))
    partitioner = create_cell_partitioner(GhostMode.shared_facet, 2)  # type: ignore[call-arg]
    mesh = create_mesh(comm, cells, element, x, partitioner=partitioner)
    tdim = mesh.topology.dim
    mesh.topology.create_entities(tdim - 1)
    mesh.topology.create_connectivity(tdim - 1, tdim)
    n_facets = (
        mesh.topology.index_map(tdim - 1).size_local + mesh.topology.index_map(tdim - 1).num_ghosts
    )
    original = np.asarray(mesh.geometry.input_global_indices, dtype=np.int64)
    nodes = original[entities_to_geometry(mesh, tdim - 1, np.arange(n_facets, dtype=np.int32))]
    pairs = zip(facets.tolist(), values.tolist(), strict=True)
    lookup = {tuple(sorted(f)): int(v) for f, v in pairs}
    keys = [tuple(sorted(f)) for f in nodes.tolist()]
    found = np.array([k in lookup for k in keys], dtype=bool)
    indices = np.flatnonzero(found).astype(np.int32)
    tag_values = np.array([lookup[keys[i]] for i in indices], dtype=np.int32)
    tags = meshtags(mesh, tdim - 1, indices, tag_values)
    return MeshData(
        mesh=mesh,
        facet_tags=tags,
        outer_tag=outer_tag,
        inner_tag=None if inner_tag < 0 else inner_tag,
        dim=tdim,
    )


def _gather_state(run: Any) -> dict[str, np.ndarray] | None:
    """Atoms, FE field and the core's balls on rank 0 (collective)."""
    system, setup = run.system, run.setup
    comm = system.comm
    V = system.problem.V
    n_owned = V.dofmap.index_map.size_local
    system.model.layout.fe_of(system.z, out=system.problem.u)
    values = system.problem.u.x.array.reshape(-1, 3)[:n_owned].copy()
    coords = V.tabulate_dof_coordinates()[:n_owned].copy()
    parts = comm.gather((coords, values), root=0)
    atoms = system.model.layout.atoms_of(system.z)  # the free atoms (collective)
    if comm.rank != 0:
        return None
    assert parts is not None
    balls = setup.handshake.balls
    return {
        "sites": np.asarray(system.positions[: system.n_free], dtype=np.float64),
        "displacements": np.asarray(atoms, dtype=np.float64).reshape(-1, 3),
        "fe_points": np.vstack([p[0] for p in parts]),
        "fe_values": np.vstack([p[1] for p in parts]),
        "ball_centres": np.array([b[0] for b in balls], dtype=np.float64).reshape(-1, 3),
        "ball_radii": np.array([b[1] for b in balls], dtype=np.float64),
    }


def write_checkpoint(out: Path, run: Any, record: dict[str, Any]) -> None:
    """Replace ``out/adaptive/checkpoint`` by the run's current state (collective)."""
    mesh = _gather_mesh(run.system.problem.mesh_data)
    state = _gather_state(run)
    comm = run.system.comm
    if comm.rank == 0:
        assert mesh is not None and state is not None
        final = out / CHECKPOINT_DIR
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.parent / f".checkpoint.{os.getpid()}"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        np.savez(tmp / "mesh.npz", **mesh)
        np.savez(tmp / "state.npz", **state)
        (tmp / "record.json").write_text(json.dumps(record, indent=1), encoding="utf-8")
        old = final.parent / f".checkpoint.old.{os.getpid()}"
        if final.exists():
            final.rename(old)
        tmp.rename(final)
        if old.exists():
            shutil.rmtree(old)
    comm.barrier()


def read_checkpoint(out: Path, comm: Any) -> Checkpoint | None:
    """The checkpoint in ``out`` (None when there is none; collective)."""
    folder = out / CHECKPOINT_DIR
    found = comm.bcast((folder / "record.json").is_file() if comm.rank == 0 else None, root=0)
    if not found:
        return None
    record = json.loads((folder / "record.json").read_text(encoding="utf-8"))
    mesh = state = None
    if comm.rank == 0:
        with np.load(folder / "mesh.npz") as f:
            mesh = {k: f[k] for k in f.files}
        with np.load(folder / "state.npz") as f:
            state = {k: f[k] for k in f.files}
    return Checkpoint(record=record, mesh=mesh, state=state)


def restore_run(checkpoint: Checkpoint, setup: Any, *, comm: Any, reporter: Any) -> Any:
    """The run at the checkpoint's state, solved once from there (collective).

    Returns:
        A :class:`~multiscale.kinds.coupled.run.CoupledRun` whose last step is that solve.
    """
    import time

    from scipy.spatial import cKDTree

    from multiscale.kinds.coupled.run import CoupledRun, build_system, solve_step

    start = time.perf_counter()
    state = checkpoint.state
    balls = comm.bcast(
        None
        if state is None
        else tuple(
            (tuple(float(v) for v in c), float(r))
            for c, r in zip(state["ball_centres"], state["ball_radii"], strict=True)
        ),
        root=0,
    )
    setup = dataclasses.replace(setup, handshake=dataclasses.replace(setup.handshake, balls=balls))
    mesh_data = _build_mesh(comm, checkpoint.mesh)
    system = build_system(setup, comm=comm, mesh_data=mesh_data)
    sites = comm.bcast(None if state is None else state["sites"], root=0)
    u_atoms = comm.bcast(None if state is None else state["displacements"], root=0)
    here = system.positions[: system.n_free]
    if len(sites) != len(here) or not np.allclose(sites, here, atol=1e-9):
        raise RuntimeError(
            "restart: the checkpoint's atoms are not those of this case (was the case changed?)"
        )
    system.set_atom_displacements(u_atoms)
    fe = comm.bcast(None if state is None else (state["fe_points"], state["fe_values"]), root=0)
    V = system.problem.V
    n_owned = V.dofmap.index_map.size_local
    points = V.tabulate_dof_coordinates()[:n_owned]
    distance, index = cKDTree(fe[0]).query(points)
    if len(distance) and distance.max() > 1e-8:
        raise RuntimeError("restart: the checkpoint's FE field does not match its mesh")
    system.model.layout.set_fe(system.z, fe[1][index].ravel())
    deformation = setup.loading.deformation(setup.loading.steps)
    system.advance_load(deformation, deformation)
    run = CoupledRun(setup=setup, system=system, build_time_s=time.perf_counter() - start)
    k = int(checkpoint.record["iteration"])
    record = solve_step(
        setup, system, setup.loading.steps, reporter, advance=False, label=f"restart {k}"
    )
    run.steps.append(record)
    run.measure_energy_parts()
    return run
