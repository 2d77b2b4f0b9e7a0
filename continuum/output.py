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

from continuum.problem import HyperelasticProblem

__all__ = ["write_fields"]


def _cell_function(problem: HyperelasticProblem, name: str, values: np.ndarray) -> fem.Function:
    """DG0 function with ``values`` ``(n_owned_cells, *shape)`` on the owned cells."""
    shape = values.shape[1:]
    space = fem.functionspace(problem.mesh, ("DG", 0, shape) if shape else ("DG", 0))
    f = fem.Function(space, name=name)
    bs = space.dofmap.index_map_bs
    dofs = space.dofmap.list[: values.shape[0], 0]
    f.x.array.reshape(-1, bs)[dofs] = values.reshape(values.shape[0], -1)
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
    return [_cell_function(problem, name, values) for name, values in fields.items()]


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
    comm = problem.comm
    directory = pathlib.Path(directory)
    nodes = _node_fields(problem, beta)
    cells = _cell_fields(problem)
    names = [f"{stem}_nodes.bp", f"{stem}_cells.bp", f"{stem}.xdmf", f"{stem}.h5"]
    made = None
    if comm.rank == 0:
        directory.mkdir(parents=True, exist_ok=True)
        made = tempfile.mkdtemp(prefix=f".{stem}-", dir=directory)
    tmp = pathlib.Path(comm.bcast(made, root=0))
    for name, functions in zip(names[:2], (nodes, cells), strict=True):
        with io.VTXWriter(comm, tmp / name, functions) as vtx:
            vtx.write(time)
    with io.XDMFFile(comm, tmp / names[2], "w") as xdmf:
        xdmf.write_mesh(problem.mesh)
        for f in nodes + cells:
            xdmf.write_function(f, time)
    comm.barrier()
    if comm.rank == 0:
        _move_into_place(tmp, directory, names)
    comm.barrier()
    return [directory / name for name in names]
