"""What the figures are made from: the files of an output folder, read back.

Every figure of ``plots/`` is drawn from files that ``multiscale run`` has already written,
so ``multiscale plot OUTPUT`` draws the same figures as the run did.

=========================  ===================================================================
file                       read by
=========================  ===================================================================
``summary.json``           :func:`read_summary`
``iterations.csv``         :func:`read_iterations` (one row per Newton iteration or force
                           evaluation, numbered by solve)
``history.csv``            :func:`read_history` (the adaptive loop)
``atoms/coupled.extxyz``   :func:`read_atoms` (reference positions and ``region``)
``continuum/*.h5``         :func:`read_mesh` (the FE mesh of the XDMF file)
=========================  ===================================================================
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from multiscale.errors import CaseError
from multiscale.outputs import atomic_file

__all__ = [
    "HistoryRow",
    "read_atoms",
    "read_history",
    "read_iterations",
    "read_mesh",
    "read_summary",
    "save_figure",
]

#: The kinds whose ``summary.json`` ``multiscale plot`` knows, and a key only a run's has.
_RUN_KEYS = {"vacancy-formation": "steps", "coupled": "n_fe_dofs"}


def read_summary(out: Path) -> dict[str, Any]:
    """``out/summary.json`` of a finished ``multiscale run``.

    Raises:
        CaseError: ``out`` is not such a folder (no summary, not JSON, a reference's summary).
    """
    path = out / "summary.json"
    hint = "give the output folder of 'multiscale run'"
    if not out.is_dir():
        raise CaseError(f"{out}: no such folder; {hint}")
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CaseError(f"{out}: not a run output folder (no summary.json); {hint}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CaseError(f"{path}: cannot be read as a run summary ({err})") from None
    kind = summary.get("kind") if isinstance(summary, dict) else None
    if kind not in _RUN_KEYS or _RUN_KEYS[kind] not in summary:
        raise CaseError(
            f"{path}: not the summary of a run (case.kind {kind!r}, or a reference's); {hint}"
        )
    return summary


def read_iterations(out: Path) -> list[dict[str, Any]]:
    """Rows of ``out/iterations.csv`` (numbers as int or float; empty cells None)."""
    with open(out / "iterations.csv", encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return [{k: _number(k, v) for k, v in row.items()} for row in rows]


def _number(key: str, value: str) -> Any:
    if key == "label":
        return value
    if value == "":
        return None
    return int(value) if key in ("solve", "iteration") else float(value)


@dataclass(kw_only=True)
class HistoryRow:
    """One row of ``history.csv``, with what :mod:`multiscale.kinds.coupled.plots` draws."""

    iteration: int
    eta: dict[str, float]
    action: str
    n_atoms: int
    n_fe_dofs: int
    n_dof: int
    strain_error_rel: float | None = None
    #: the load step the state was solved at (0 in a history written before the column; a
    #: fraction for half of a cut step)
    load_step: int | float = 0
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def n_free_atoms(self) -> int:
        """Free atoms, from ``n_dof = 3 n_free + n_fe_dofs``."""
        return (self.n_dof - self.n_fe_dofs) // 3


def _load(text: str) -> int | float:
    """A ``load_step`` cell: ``4``, or ``4.5`` for half of a cut step."""
    value = float(text)
    return int(value) if value == int(value) else value


def read_history(out: Path) -> list[HistoryRow]:
    """Rows of ``out/history.csv``, written by the adaptive loop."""
    with open(out / "history.csv", encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    names = ("eta_fe", "eta_model", "eta_ml", "eta_trunc", "eta_total")
    return [
        HistoryRow(
            iteration=int(row["iteration"]),
            eta={k: float(row[k]) for k in names},
            action=row["action"],
            n_atoms=int(row["n_atoms"]),
            n_fe_dofs=int(row["n_fe_dofs"]),
            n_dof=int(row["n_dof"]),
            strain_error_rel=float(row["strain_error_rel"]) if row["strain_error_rel"] else None,
            load_step=_load(row.get("load_step") or "0"),
        )
        for row in rows
    ]


def read_atoms(out: Path) -> Any:
    """``out/atoms/coupled.extxyz`` as ASE ``Atoms`` (arrays ``region``, ``reference_position``)."""
    import ase.io

    # parallel=False: under mpiexec ASE would broadcast from rank 0 to ranks not reading
    return ase.io.read(out / "atoms" / "coupled.extxyz", parallel=False)


def read_mesh(out: Path) -> tuple[np.ndarray, np.ndarray]:
    """The FE mesh of ``out/continuum/continuum.xdmf``, from its HDF5 file.

    Read with h5py, not dolfinx: under ``mpiexec`` a dolfinx mesh read by rank 0 alone on
    ``COMM_SELF`` hangs (seen with 2 ranks) while the other ranks are in ``MPI_Finalize``.

    Returns:
        ``(points, cells)``: ``(n, gdim)`` node coordinates in Å and ``(m, k)`` node indices
        of each cell (triangles in 2.5d).
    """
    import h5py

    with h5py.File(out / "continuum" / "continuum.h5", "r") as h5:
        mesh = h5["Mesh"]["mesh"]
        return np.asarray(mesh["geometry"]), np.asarray(mesh["topology"], dtype=np.int64)


def save_figure(fig: Any, path: Path) -> None:
    """Write ``fig`` as PNG atomically (a temporary file beside ``path``, then renamed).

    Cropped to its drawn content (``bbox_inches="tight"``) unless it has a constrained layout.
    """
    # a constrained layout already fits every label inside the figure: "tight" would only draw
    # the figure a second time to measure it (a third of the cost of saving these figures)
    engine = fig.get_layout_engine()
    constrained = type(engine).__name__ == "ConstrainedLayoutEngine"
    with atomic_file(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=120, bbox_inches=None if constrained else "tight")
