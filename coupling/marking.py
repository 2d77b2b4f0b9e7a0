"""Dörfler marking over FE cells (spread over MPI ranks) and atoms, and what each mark asks.

Given squared local indicators ``η_T²`` and ``θ ∈ (0, 1]``, Dörfler (bulk) marking picks the
fewest locations, largest first, whose indicators sum to at least ``θ Σ_T η_T²``. Cells live
on the rank that owns them; atoms are counted once (on rank 0). Ties at the threshold are all
marked, so the marked set does not depend on the number of ranks.

At a marked location the dominant term picks the action:

================  =========================================================================
dominant term     action
================  =========================================================================
``eta_fe``        ``refine``: split the cell (``continuum.adapt.refine_cells``)
``eta_model``     ``expand``: add the cell, plus a buffer, to the atomistic core
``eta_ml``        ``retrain``: carve a cluster around the atom and label it with the oracle
``eta_trunc``     none: it is not marked (nothing here can act on it); marked cells whose
                  truncation term is larger than the rest are counted and reported (the
                  outer domain is too small for that accuracy)
================  =========================================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from mpi4py import MPI

if TYPE_CHECKING:
    from coupling.estimator import Estimate

__all__ = ["Marks", "dorfler", "mark"]


def dorfler(values: np.ndarray, *, theta: float, comm: MPI.Comm) -> np.ndarray:
    """``(n,)`` True for the marked entries of this rank's ``values`` (collective).

    Args:
        values: this rank's non-negative squared indicators.
        theta: the Dörfler fraction in ``(0, 1]``.
        comm: the communicator the values are spread over.

    Raises:
        ValueError: ``theta`` outside ``(0, 1]``.
    """
    if not 0.0 < theta <= 1.0:
        raise ValueError(f"theta must be in (0, 1], got {theta}")
    values = np.asarray(values, dtype=float)
    everything = np.concatenate(comm.allgather(values))
    total = float(everything.sum())
    if total <= 0.0 or not np.isfinite(total):
        return np.zeros(len(values), dtype=bool)
    if theta >= 1.0:
        return values > 0.0
    ordered = np.sort(everything)[::-1]
    reached = np.cumsum(ordered) >= theta * total * (1.0 - 1e-12)
    threshold = ordered[int(np.argmax(reached))]
    return values >= threshold


@dataclass(frozen=True, kw_only=True)
class Marks:
    """The marked locations, by action.

    Attributes:
        refine: this rank's owned cells to refine (local indices).
        expand: this rank's owned cells to add to the core (local indices).
        truncation: this rank's marked cells where the truncation term dominates.
        retrain: free atoms around which to carve clusters (every rank holds them).
    """

    refine: np.ndarray
    expand: np.ndarray
    truncation: np.ndarray
    retrain: np.ndarray

    def counts(self, comm: MPI.Comm) -> dict[str, int]:
        """Global number of marked locations per action."""
        local = np.array([len(self.refine), len(self.expand), len(self.truncation)])
        comm.Allreduce(MPI.IN_PLACE, local, op=MPI.SUM)
        return {
            "refine": int(local[0]),
            "expand": int(local[1]),
            "truncation": int(local[2]),
            "retrain": len(self.retrain),
        }


def mark(
    estimate: Estimate,
    *,
    theta: float,
    comm: MPI.Comm,
    allowed: tuple[str, ...],
    resolved: float = np.inf,
) -> Marks:
    """Dörfler-mark cells and atoms together and sort the marks by their dominant term.

    Args:
        estimate: the local indicators.
        theta: the Dörfler fraction.
        comm: the mesh's communicator.
        allowed: the actions the case permits (``refine``, ``expand``, ``retrain``); a
            location whose action is not allowed is left out of the marking altogether, so
            that the fraction ``theta`` goes to what can be acted on.
        resolved: the largest cell size (Å) on which the model term can be told from the
            FE term. Both read the same unresolved field on a coarser cell, so there a
            model-dominated cell is refined first (``2 r_cut`` in the loop).
    """
    cells = estimate.fe + estimate.model
    dominant = np.where(estimate.model > estimate.fe, "eta_model", "eta_fe")
    coarse = estimate.cells.h > resolved
    dominant = np.where(coarse & (dominant == "eta_model"), "eta_fe", dominant)
    act = {"eta_fe": "refine", "eta_model": "expand"}
    usable = np.array([act[d] in allowed for d in dominant], dtype=bool)
    cells = np.where(usable, cells, 0.0)
    atoms = estimate.ml if "retrain" in allowed else np.zeros_like(estimate.ml)
    own_atoms = atoms if comm.rank == 0 else atoms[:0]
    marked = dorfler(np.concatenate([cells, own_atoms]), theta=theta, comm=comm)
    on_cells, on_atoms = marked[: len(cells)], marked[len(cells) :]
    atom_marks = comm.bcast(np.flatnonzero(on_atoms) if comm.rank == 0 else None, root=0)
    picked = np.flatnonzero(on_cells & (cells > 0))
    by = dominant[picked]
    return Marks(
        refine=picked[by == "eta_fe"],
        expand=picked[by == "eta_model"],
        truncation=np.flatnonzero(on_cells & (estimate.trunc > cells)),
        retrain=np.asarray(atom_marks, dtype=np.int64),
    )
