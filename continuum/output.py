"""ParaView output of the continuum fields: VTX (``.bp``) and XDMF, written atomically.

Files written by :func:`write_fields` into ``directory``:

==========================  =================================================================
file                        fields
==========================  =================================================================
``<stem>_nodes.bp``         ``displacement`` (P1, Å), ``beta`` (P1, if given)
``<stem>_cells.bp``         per cell (DG0): ``green_lagrange_strain``, ``small_strain``,
                            ``stress_pk1`` and ``stress_cauchy`` (eV/Å³),
                            ``energy_density`` (eV/Å³)
``<stem>.xdmf`` + ``.h5``   all of the above
==========================  =================================================================

:func:`write_cell_fields` writes any per-cell arrays (the error indicators of an adaptive
iteration, say) on any mesh as ``<stem>_cells.bp`` and ``<stem>.xdmf`` + ``.h5``; the mesh
changes from one adaptive iteration to the next, so each iteration gets its own stem.

VTX needs every function of a file to share one element family and degree, hence one ``.bp``
per family. Everything is first written into a temporary directory next to the targets and
then renamed into place, so readers never see a half-written snapshot.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import tempfile
from collections.abc import Callable

import numpy as np
from dolfinx import fem, io
from dolfinx.mesh import Mesh

from continuum.mesh import MeshData
from continuum.problem import HyperelasticProblem

__all__ = ["cell_function", "write_cell_fields", "write_fields"]


def cell_function(
    domain: HyperelasticProblem | MeshData | Mesh, *, values: np.ndarray, name: str
) -> fem.Function:
    """A DG0 function holding one value (scalar, vector or tensor) per owned cell.

    Args:
        domain: the problem, mesh data or mesh whose cells the values belong to.
        values: ``(n_owned_cells, *shape)`` in the owned cells' local order; ``shape`` is
            ``()``, ``(k,)`` or ``(k, l)``.
        name: the function's name (what ParaView shows).

    Returns:
        The DG0 function, ghost cells refreshed from their owners (collective).

    Raises:
        ValueError: ``values`` does not have one row per owned cell, or is not finite.
    """
    mesh = domain if isinstance(domain, Mesh) else domain.mesh
    arr = np.asarray(values, dtype=np.float64)
    n_owned = mesh.topology.index_map(mesh.topology.dim).size_local
    if arr.ndim == 0 or arr.shape[0] != n_owned or not np.all(np.isfinite(arr)):
        raise ValueError(
            f"{name}: need {n_owned} finite rows (one per owned cell), got shape {arr.shape}"
        )
    shape = arr.shape[1:]
    space = fem.functionspace(mesh, ("DG", 0, shape) if shape else ("DG", 0))
    f = fem.Function(space, name=name)
    bs = space.dofmap.index_map_bs
    dofs = space.dofmap.list[:n_owned, 0]
    f.x.array.reshape(-1, bs)[dofs] = arr.reshape(n_owned, -1)
    f.x.scatter_forward()
    return f


def _cell_fields(problem: HyperelasticProblem) -> list[fem.Function]:
    cells = problem.material.cell_averages()
    F, P = cells["F"], cells["P"]
    FtF = np.einsum("nki,nkj->nij", F, F)
    H = F - np.eye(3)
    J = np.linalg.det(F)
    with np.errstate(divide="ignore", invalid="ignore"):
        sigma = np.einsum("nik,njk->nij", P, F) / J[:, None, None]
    fields = {
        "green_lagrange_strain": 0.5 * (FtF - np.eye(3)),
        "small_strain": 0.5 * (H + H.transpose(0, 2, 1)),
        "stress_pk1": P,
        "stress_cauchy": sigma,
        "energy_density": cells["W"],
    }
    return [cell_function(problem, values=values, name=name) for name, values in fields.items()]


def _node_fields(
    problem: HyperelasticProblem, beta: Callable[[np.ndarray], np.ndarray] | None
) -> list[fem.Function]:
    fields = [problem.u]
    if beta is not None:
        space = fem.functionspace(problem.mesh, ("Lagrange", 1))
        x = space.tabulate_dof_coordinates()
        values = np.asarray(beta(x), dtype=np.float64)
        if values.shape != (x.shape[0],):
            raise ValueError(f"beta must return {x.shape[0]} values, got shape {values.shape}")
        b = fem.Function(space, name="beta")
        b.x.array[:] = values
        fields.append(b)
    return fields


def _move_into_place(tmp: pathlib.Path, directory: pathlib.Path, names: list[str]) -> None:
    """Rename the finished files over the targets; an old ``.bp`` folder is moved aside first."""
    trash = tmp / ".old"
    trash.mkdir()
    for name in names:
        target = directory / name
        if target.is_dir():
            os.replace(target, trash / name)
        os.replace(tmp / name, target)
    shutil.rmtree(tmp)


def _write_snapshot(
    *,
    mesh: Mesh,
    directory: str | os.PathLike[str],
    stem: str,
    time: float,
    groups: list[tuple[str, list[fem.Function]]],
) -> list[pathlib.Path]:
    """One ``<stem>_<group>.bp`` per group and ``<stem>.xdmf`` + ``.h5`` with everything.

    The files are written into a temporary folder next to the targets and renamed into
    place (collective).
    """
    comm = mesh.comm
    directory = pathlib.Path(directory)
    names = [f"{stem}_{group}.bp" for group, _ in groups] + [f"{stem}.xdmf", f"{stem}.h5"]
    made = None
    if comm.rank == 0:
        directory.mkdir(parents=True, exist_ok=True)
        made = tempfile.mkdtemp(prefix=f".{stem}-", dir=directory)
    tmp = pathlib.Path(comm.bcast(made, root=0))
    for name, (_, functions) in zip(names, groups, strict=False):
        with io.VTXWriter(comm, tmp / name, functions) as vtx:
            vtx.write(time)
    with io.XDMFFile(comm, tmp / names[-2], "w") as xdmf:
        xdmf.write_mesh(mesh)
        for _, functions in groups:
            for f in functions:
                xdmf.write_function(f, time)
    comm.barrier()
    if comm.rank == 0:
        _move_into_place(tmp, directory, names)
    comm.barrier()
    return [directory / name for name in names]


def write_fields(
    *,
    problem: HyperelasticProblem,
    directory: str | os.PathLike[str],
    time: float = 0.0,
    beta: Callable[[np.ndarray], np.ndarray] | None = None,
    stem: str = "continuum",
) -> list[pathlib.Path]:
    """Write displacement, strain, stress (and β) of ``problem`` for ParaView (collective).

    Args:
        problem: the continuum problem at its current displacement.
        directory: output folder (created if missing).
        time: time (or load-step) value stored with the snapshot.
        beta: optional blending function ``beta(x (n, 3)) -> (n,)`` written as a P1 field.
        stem: file name stem; use one stem per snapshot for a series.

    Returns:
        The paths written (``.bp`` folders, ``.xdmf`` and ``.h5``), on every rank.
    """
    groups = [("nodes", _node_fields(problem, beta)), ("cells", _cell_fields(problem))]
    return _write_snapshot(
        mesh=problem.mesh, directory=directory, stem=stem, time=time, groups=groups
    )


def write_cell_fields(
    *,
    mesh: HyperelasticProblem | MeshData | Mesh,
    fields: dict[str, np.ndarray],
    directory: str | os.PathLike[str],
    time: float = 0.0,
    stem: str = "indicators",
) -> list[pathlib.Path]:
    """Write per-cell arrays as DG0 fields for ParaView (collective).

    Writes ``<stem>_cells.bp`` (VTX) and ``<stem>.xdmf`` + ``<stem>.h5``. Meant for the
    error indicators of one adaptive iteration (``CellIndicators.fields()``); since each
    iteration has its own mesh, give each its own stem (``indicators_003``).

    Args:
        mesh: the problem, mesh data or mesh the values live on.
        fields: ``{name: (n_owned_cells, *shape) array}`` (shape ``()``, ``(k,)`` or
            ``(k, l)``), owned cells in local order; booleans are written as 0/1.
        directory: output folder (created if missing).
        time: time (or iteration) value stored with the snapshot.
        stem: file name stem.

    Returns:
        The paths written (``.bp`` folder, ``.xdmf`` and ``.h5``), on every rank.

    Raises:
        ValueError: no fields, or a field without one finite row per owned cell.
    """
    if not fields:
        raise ValueError("write_cell_fields needs at least one field")
    domain = mesh if isinstance(mesh, Mesh) else mesh.mesh
    functions = [cell_function(domain, values=v, name=k) for k, v in fields.items()]
    return _write_snapshot(
        mesh=domain, directory=directory, stem=stem, time=time, groups=[("cells", functions)]
    )
