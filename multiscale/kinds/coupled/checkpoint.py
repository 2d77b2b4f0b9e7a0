"""Checkpoints of a coupled run, for ``multiscale run CASE --restart``.

Two checkpoints, both in the output folder, with the same three files:

- ``<output>/checkpoint/``: after every converged load step (:func:`write_step_checkpoint`);
- ``<output>/adaptive/checkpoint/``: at the start of every adaptive iteration ``k`` (its
  state solved, nothing estimated yet).

Each write replaces the previous checkpoint atomically (a new folder renamed over the old
one, so a run killed while writing leaves the last complete one):

===================  ==========================================================================
file                 content
===================  ==========================================================================
``mesh.npz``         the mesh: node coordinates and cells by global node number, the tagged
                     boundary facets (by their nodes) with their tags
``state.npz``        the free atoms' sites and displacements, the FE displacement at the FE
                     dofs' coordinates, the core's balls (centres, radii)
``record.json``      the load step (``step``) or the iteration (``iteration``, and the
                     ``load_step`` it is at), the load steps' records so far, the wall time
                     so far; an iteration's also the history rows before it, notes, budgets
                     reached, oracle calls, retraining rounds
===================  ==========================================================================

The adaptive checkpoint supersedes the load-step one: the loop's first checkpoint removes
``checkpoint/``, and a restart of an adaptive case takes ``adaptive/checkpoint/`` when there
is one. A run that starts from the beginning (no ``--restart``, or no checkpoint) removes
both first, so that a checkpoint is always of the run in progress or the last one. A finished
run keeps its last checkpoint (the last load step's, or the last iteration's).

``multiscale run CASE --restart`` rebuilds the mesh (and the grown region) from the
checkpoint, puts the atoms and the FE field back where they were (atoms by site, the field
by dof coordinate, so the partition of a restarted ``mpiexec`` run may differ). From a load
step ``k`` it goes on with step ``k + 1`` (the state is that of the uninterrupted run; when
no step is left it solves once at the last load, which rebuilds the ghost-force correction
at the solution); from an iteration ``k`` it solves once (already the solution, to the
solver's tolerance) and goes on with iteration ``k``, then (``adaptivity.load_steps =
"every"``) with the load steps after the checkpoint's, the loop after each.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "CHECKPOINT_DIR",
    "STEP_CHECKPOINT_DIR",
    "Checkpoint",
    "latest_checkpoint",
    "read_checkpoint",
    "remove_checkpoints",
    "restore_run",
    "restore_steps",
    "step_states",
    "write_checkpoint",
    "write_step_checkpoint",
]

#: Folder of the adaptive loop's checkpoint, under the output folder.
CHECKPOINT_DIR = Path("adaptive") / "checkpoint"
#: Folder of the load steps' checkpoint, under the output folder.
STEP_CHECKPOINT_DIR = Path("checkpoint")


@dataclasses.dataclass(kw_only=True)
class Checkpoint:
    """What a restart needs (rank 0 holds the arrays; other ranks hold ``record`` only)."""

    record: dict[str, Any]
    mesh: dict[str, np.ndarray] | None
    state: dict[str, np.ndarray] | None

    @property
    def adaptive(self) -> bool:
        """The adaptive loop's checkpoint (else a load step's)."""
        return "iteration" in self.record


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


def write_checkpoint(
    out: Path, run: Any, record: dict[str, Any], *, folder: Path = CHECKPOINT_DIR
) -> None:
    """Replace ``out/folder`` by the run's current state (collective)."""
    mesh = _gather_mesh(run.system.problem.mesh_data)
    state = _gather_state(run)
    comm = run.system.comm
    if comm.rank == 0:
        assert mesh is not None and state is not None
        final = out / folder
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.parent / f".{final.name}.{os.getpid()}"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        np.savez(tmp / "mesh.npz", **mesh)
        np.savez(tmp / "state.npz", **state)
        (tmp / "record.json").write_text(json.dumps(record, indent=1), encoding="utf-8")
        old = final.parent / f".{final.name}.old.{os.getpid()}"
        if final.exists():
            final.rename(old)
        tmp.rename(final)
        if old.exists():
            shutil.rmtree(old)
    comm.barrier()


def step_states(run: Any) -> list[dict[str, Any]]:
    """The run's load-step records, JSON-ready (:func:`_steps_from` reads them back)."""
    return [dataclasses.asdict(s) for s in run.steps]


def _steps_from(states: list[dict[str, Any]]) -> list[Any]:
    from multiscale.kinds.coupled.solve import StepRecord

    return [
        StepRecord(**{**s, "correction_changes": tuple(s["correction_changes"])}) for s in states
    ]


def write_step_checkpoint(out: Path, run: Any, *, elapsed: float) -> None:
    """The checkpoint of the run's last load step, ``out/checkpoint`` (collective)."""
    record = {
        "step": run.last.step,
        "elapsed_s": elapsed,
        "build_time_s": run.build_time_s,
        "steps": step_states(run),
    }
    write_checkpoint(out, run, record, folder=STEP_CHECKPOINT_DIR)


def remove_checkpoints(out: Path, comm: Any, *, adaptive: bool = True, steps: bool = True) -> None:
    """Remove the checkpoints in ``out`` (collective)."""
    if comm.rank == 0:
        chosen = [CHECKPOINT_DIR] * adaptive + [STEP_CHECKPOINT_DIR] * steps
        for folder in chosen:
            if (out / folder).is_dir():
                shutil.rmtree(out / folder)
    comm.barrier()


def read_checkpoint(out: Path, comm: Any, *, folder: Path = CHECKPOINT_DIR) -> Checkpoint | None:
    """The checkpoint in ``out/folder`` (None when there is none; collective)."""
    where = out / folder
    found = comm.bcast((where / "record.json").is_file() if comm.rank == 0 else None, root=0)
    if not found:
        return None
    record = json.loads((where / "record.json").read_text(encoding="utf-8"))
    mesh = state = None
    if comm.rank == 0:
        with np.load(where / "mesh.npz") as f:
            mesh = {k: f[k] for k in f.files}
        with np.load(where / "state.npz") as f:
            state = {k: f[k] for k in f.files}
    return Checkpoint(record=record, mesh=mesh, state=state)


def latest_checkpoint(out: Path, comm: Any, *, adaptive: bool) -> Checkpoint | None:
    """What ``--restart`` goes on from (collective).

    With ``adaptive``, the loop's checkpoint when there is one, else the last load step's;
    None without either.
    """
    found = read_checkpoint(out, comm) if adaptive else None
    return found if found is not None else read_checkpoint(out, comm, folder=STEP_CHECKPOINT_DIR)


def _restored_system(checkpoint: Checkpoint, setup: Any, *, comm: Any, step: float) -> Any:
    """``(setup, system)``: the checkpoint's mesh, balls, atoms and FE field (collective).

    ``step``: the load step whose background field (a crack's K) the system carries.
    """
    from scipy.spatial import cKDTree

    from multiscale.kinds.coupled.solve import build_system

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
    system = build_system(setup, comm=comm, mesh_data=mesh_data, step=step)
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
    points = V.tabulate_dof_coordinates()[: V.dofmap.index_map.size_local]
    distance, index = cKDTree(fe[0]).query(points)
    if len(distance) and distance.max() > 1e-8:
        raise RuntimeError("restart: the checkpoint's FE field does not match its mesh")
    system.model.layout.set_fe(system.z, fe[1][index].ravel())
    deformation = setup.loading.deformation(step)
    system.advance_load(deformation, deformation)
    return setup, system


def restore_run(checkpoint: Checkpoint, setup: Any, *, comm: Any, reporter: Any) -> Any:
    """The run at an adaptive checkpoint's state, solved once from there (collective).

    The state is at the checkpoint's load step (``load_step``; the last before it was
    recorded).

    Returns:
        A :class:`~multiscale.kinds.coupled.solve.CoupledRun` whose last step is that solve
        (the load steps before it are the checkpoint's).
    """
    import time

    from multiscale.kinds.coupled.solve import CoupledRun, load_value, solve_step

    start = time.perf_counter()
    n = load_value(checkpoint.record.get("load_step", setup.loading.steps))
    setup, system = _restored_system(checkpoint, setup, comm=comm, step=n)
    run = CoupledRun(setup=setup, system=system, build_time_s=time.perf_counter() - start)
    run.steps = _steps_from(checkpoint.record.get("steps", []))[:-1]
    k = int(checkpoint.record["iteration"])
    run.steps.append(solve_step(setup, system, n, reporter, advance=False, label=f"restart {k}"))
    run.measure_energy_parts()
    return run


def restore_steps(checkpoint: Checkpoint, setup: Any, *, comm: Any) -> Any:
    """The run at a load-step checkpoint's state, its steps and build time (collective)."""
    from multiscale.kinds.coupled.solve import CoupledRun, load_value

    record = checkpoint.record
    step = load_value(record["step"])
    setup, system = _restored_system(checkpoint, setup, comm=comm, step=step)
    run = CoupledRun(setup=setup, system=system, build_time_s=float(record["build_time_s"]))
    run.steps = _steps_from(record["steps"])
    return run
