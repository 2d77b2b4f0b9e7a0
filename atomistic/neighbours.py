"""Neighbour lists: indices from vesin, vectors recomputed in torch so that autograd flows.

The list is a *half* list (each pair once, ``i``→``j`` with the periodic shift ``S``):

    r_ij = x_j − x_i + S · cell          (row-vector convention, cell rows are lattice vectors)

Potentials that need a full list (three-body terms) mirror it with :meth:`Graph.full`.
A list built with cutoff ``r_cut + skin`` stays valid until some atom has moved more than
``skin / 2`` from where it was at the build, so relaxations rebuild only rarely.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import vesin
from numpy.typing import ArrayLike

from atomistic.pair_ops import pair_vectors

__all__ = [
    "Graph",
    "NeighbourList",
    "PairSource",
    "SpreadError",
    "build_graph",
    "vesin_box",
    "vesin_pairs",
]


class SpreadError(ValueError):
    """Atom positions no neighbour list can be built from: non-finite, or spread absurdly far.

    A minimiser's trial state can be like that (a Newton step of hundreds of Å); its energy
    is then ``+inf`` (:meth:`coupling.blended_atoms.BlendedAtoms.energy_gradient`), so the line
    search shortens the step.
    """


#: vesin's cell list (through a box) kills the process with SIGFPE when it would need more
#: cells than about 1e5 and some axis has a single cell, e.g. a slab one lattice period
#: thick and 3 000 Å wide, or a 300 Å slab with one atom 1e4 Å away (measured with vesin
#: 0.6.2 on the 2.5d slab geometry: 91 700 cells ran, 101 900 crashed). :func:`vesin_pairs`
#: keeps the cells at or below this count by asking vesin for a longer cutoff.
VESIN_MAX_CELLS = 80_000
#: ... and refuses when that cutoff would exceed this many times the list's.
VESIN_MAX_WIDENING = 4.0
#: vesin without a box (no periodic axis) crashed with atoms spread over 1e8 Å and ran at
#: 1e7 Å (300 Å of atoms, cutoff 5.5 Å); spreads beyond this many cutoffs are refused.
VESIN_MAX_OPEN_SPREAD = 1.0e6


def vesin_box(
    positions: np.ndarray, cell: np.ndarray, pbc: ArrayLike, cutoff: float
) -> tuple[np.ndarray, list[bool]]:
    """``(box, pbc)`` to hand vesin, fast for every mix of periodic and open axes.

    vesin is slow when some axes are periodic and others open (a slab periodic along z
    only takes orders of magnitude longer than the same atoms fully periodic). So an open
    axis is made periodic with a box vector orthogonal to the periodic ones and longer than
    the atoms' extent plus ``cutoff``: no pair can reach across it, its shifts are all zero
    and the pairs are those of the open axis. No axis periodic: a zero box; all periodic: the
    cell itself.

    Args:
        positions: ``(n, 3)`` positions in Å.
        cell: ``(3, 3)`` cell rows (used along periodic axes).
        pbc: bool or three bools.
        cutoff: the list's cutoff in Å (skin included).

    Returns:
        The ``(3, 3)`` box rows and the three periodic flags to pass to vesin.
    """
    pbc3 = [bool(p) for p in np.broadcast_to(np.asarray(pbc, dtype=bool), 3)]
    if not any(pbc3):
        return np.zeros((3, 3)), pbc3
    cell = np.asarray(cell, dtype=float)
    if all(pbc3):
        return cell, pbc3
    periodic = cell[[k for k in range(3) if pbc3[k]]]
    # orthonormal basis of the complement of the periodic rows
    _, _, vt = np.linalg.svd(periodic)
    complement = vt[len(periodic) :]
    box = cell.copy()
    X = np.asarray(positions, dtype=float).reshape(-1, 3)
    for row, k in zip(complement, [k for k in range(3) if not pbc3[k]], strict=True):
        proj = X @ row if len(X) else np.zeros(1)
        box[k] = row * (float(proj.max() - proj.min()) + 2.0 * cutoff + 1.0)
    if np.linalg.det(box) < 0:  # keep a right-handed box
        k = next(k for k in range(3) if not pbc3[k])
        box[k] = -box[k]
    return box, [True, True, True]


def _box_cells(box: np.ndarray, cutoff: float) -> float:
    """Cells of side ``cutoff`` that fit in ``box`` (at least one per axis)."""
    volume = abs(float(np.linalg.det(box)))
    areas = [np.linalg.norm(np.cross(box[(k + 1) % 3], box[(k + 2) % 3])) for k in range(3)]
    heights = np.array([volume / a if a > 0 else 0.0 for a in areas])
    return float(np.prod(np.maximum(1.0, np.floor(heights / cutoff))))


def vesin_pairs(
    vesin_list: vesin.NeighborList,
    positions: np.ndarray,
    cell: np.ndarray,
    pbc: list[bool],
    cutoff: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(i, j, S, box)``: the half list of pairs within ``cutoff`` from vesin, minus its crashes.

    ``vesin_list`` is a ``vesin.NeighborList`` of this ``cutoff``; ``S`` are the shifts in
    units of the rows of ``box`` (:func:`vesin_box`). When the box would need more than
    :data:`VESIN_MAX_CELLS` cells, vesin is asked for a longer cutoff (its cells fewer and
    larger) and the pairs beyond ``cutoff`` are dropped: the same pairs, found more slowly.

    Raises:
        SpreadError: non-finite positions, or atoms spread so far (a wild trial state) that
            the list cannot be built safely.
    """
    positions = np.ascontiguousarray(positions, dtype=np.float64)
    if not np.isfinite(positions).all():
        raise SpreadError("neighbour list: non-finite atom positions")
    box, periodic = vesin_box(positions, cell, pbc, cutoff)
    if not any(periodic):
        spread = float(np.ptp(positions, axis=0).max()) if len(positions) else 0.0
        if spread > VESIN_MAX_OPEN_SPREAD * cutoff:
            raise SpreadError(f"neighbour list: atoms spread over {spread:.3g} Å")
        i, j, S = vesin_list.compute(positions, box, periodic, "ijS")
        return i, j, S, box
    wide = cutoff
    while _box_cells(box, wide) > VESIN_MAX_CELLS:
        wide *= 1.1
        if wide > VESIN_MAX_WIDENING * cutoff:
            spread = float(np.ptp(positions, axis=0).max()) if len(positions) else 0.0
            raise SpreadError(
                f"neighbour list: atoms spread over {spread:.3g} Å, {_box_cells(box, cutoff):.3g} "
                f"cells of the cutoff {cutoff:g} Å"
            )
        box, periodic = vesin_box(positions, cell, pbc, wide)
    if wide == cutoff:
        i, j, S = vesin_list.compute(positions, box, periodic, "ijS")
        return i, j, S, box
    i, j, S = vesin.NeighborList(cutoff=wide, full_list=False).compute(
        positions, box, periodic, "ijS"
    )
    vectors = positions[j] - positions[i] + S @ box
    keep = np.einsum("ij,ij->i", vectors, vectors) <= cutoff * cutoff
    return i[keep], j[keep], S[keep], box


@dataclass(frozen=True)
class PairSource:
    """Where a graph's pair vectors come from: positions and the list they were built with.

    Attributes:
        positions: ``(n, 3)`` positions in Å (the tensor given to :func:`build_graph`).
        shift_vectors: ``(E, 3)`` ``S·cell`` in Å, or ``(1, 3)`` zeros when no pair crosses
            the cell.
        cell: ``(3, 3)`` float64 NumPy cell used for the shifts.
        i32: ``(E,)`` the pairs' first atoms (:meth:`NeighbourList.compact`; its own order:
            the unshifted pairs first).
        j32: ``(E,)`` their second atoms.
        shifts: ``(m, 3)`` integer shifts ``S`` of the last ``m`` pairs (the others have none).
        version: ``positions._version`` at the build (in-place changes are detected).
    """

    positions: torch.Tensor
    shift_vectors: torch.Tensor
    cell: np.ndarray
    i32: np.ndarray
    j32: np.ndarray
    shifts: np.ndarray
    version: int

    def check(self) -> None:
        """Raise if the positions were changed in place since the graph was built."""
        if self.positions._version != self.version:
            raise RuntimeError(
                "positions were modified in place after build_graph; build the graph again"
            )


class Graph:
    """Atoms and their pair list, as torch tensors on one device.

    Attributes:
        n_atoms: number of atoms ``n``.
        species: ``(n,)`` int64, index of each atom's element in the potential's ``elements``.
        i: ``(E,)`` int64, first atom of each pair.
        j: ``(E,)`` int64, second atom of each pair.
        vectors: ``(E, 3)`` pair vectors ``x_j − x_i + S·cell`` in Å (differentiable).
        source: the positions and list the vectors come from (:func:`build_graph`), or None.
            A graph built from positions that do not require grad computes ``vectors`` on
            first access; a compiled potential may read positions and shifts instead.
    """

    __slots__ = ("_full", "_vectors", "i", "j", "n_atoms", "source", "species")

    def __init__(
        self,
        *,
        n_atoms: int,
        species: torch.Tensor,
        i: torch.Tensor,
        j: torch.Tensor,
        vectors: torch.Tensor | None = None,
        source: PairSource | None = None,
    ) -> None:
        if vectors is None and source is None:
            raise ValueError("Graph needs vectors or a source to compute them from")
        self.n_atoms = n_atoms
        self.species = species
        self.i = i
        self.j = j
        self.source = source
        self._vectors = vectors
        self._full: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    @property
    def vectors(self) -> torch.Tensor:
        """``(E, 3)`` pair vectors, computed from :attr:`source` on first access if not given."""
        if self._vectors is None:
            src = self.source
            assert src is not None
            src.check()
            self._vectors = pair_vectors(src.positions, src.shift_vectors, self.i, self.j)
        return self._vectors

    @vectors.setter
    def vectors(self, value: torch.Tensor) -> None:
        self._vectors = value
        self.source = None
        self._full = None

    def __repr__(self) -> str:
        return f"Graph(n_atoms={self.n_atoms}, pairs={self.i.shape[0]})"

    def full(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return the mirrored (full) list ``(i, j, vectors)`` with ``2E`` entries."""
        if self._full is None:
            self._full = (
                torch.cat([self.i, self.j]),
                torch.cat([self.j, self.i]),
                torch.cat([self.vectors, -self.vectors]),
            )
        return self._full

    def with_vectors(self, vectors: torch.Tensor) -> Graph:
        """Return the same graph with other pair vectors (for example a leaf for autograd)."""
        return Graph(
            n_atoms=self.n_atoms, species=self.species, i=self.i, j=self.j, vectors=vectors
        )


#: Cached tensors of a list on one device and dtype: ``(i, j, shifts or None, (cell, S·cell)
#: or None)``; ``shifts`` is None when every shift is zero.
_TorchPairs = tuple[
    torch.Tensor,
    torch.Tensor,
    torch.Tensor | None,
    tuple[torch.Tensor, torch.Tensor] | None,
]


class NeighbourList:
    """A reusable half neighbour list with a skin.

    Args:
        cutoff: interaction cutoff ``r_cut`` in Å.
        skin: extra distance in Å; the list is rebuilt once an atom moved more than ``skin/2``.
    """

    def __init__(self, *, cutoff: float, skin: float = 0.0) -> None:
        if cutoff <= 0:
            raise ValueError(f"neighbour list cutoff must be positive, got {cutoff}")
        if skin < 0:
            raise ValueError(f"neighbour list skin must be >= 0, got {skin}")
        self.cutoff = float(cutoff)
        self.skin = float(skin)
        self._vesin = vesin.NeighborList(cutoff=self.cutoff + self.skin, full_list=False)
        self._ref_positions: np.ndarray | None = None
        self._ref_cell: np.ndarray | None = None
        self._ref_pbc: tuple[bool, ...] | None = None
        self.i = np.zeros(0, dtype=np.int64)
        self.j = np.zeros(0, dtype=np.int64)
        self.shifts = np.zeros((0, 3), dtype=np.int64)
        self.n_builds = 0
        self._torch_cache: dict[tuple[torch.device, torch.dtype], _TorchPairs] = {}
        self._compact: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def needs_rebuild(self, positions: np.ndarray, cell: np.ndarray, pbc: ArrayLike) -> bool:
        """Whether the stored list may have lost a pair within ``cutoff``."""
        if (
            self._ref_positions is None
            or self._ref_cell is None
            or positions.shape != self._ref_positions.shape
        ):
            return True
        if tuple(bool(p) for p in np.broadcast_to(pbc, 3)) != self._ref_pbc:
            return True
        if not np.array_equal(cell, self._ref_cell):
            return True
        if self.skin == 0.0:
            return not np.array_equal(positions, self._ref_positions)
        moved = np.max(np.sum((positions - self._ref_positions) ** 2, axis=1), initial=0.0)
        return bool(moved > (0.5 * self.skin) ** 2)

    def update(self, positions: np.ndarray, cell: np.ndarray, pbc: ArrayLike) -> bool:
        """Rebuild the list if needed. Returns True when it was rebuilt.

        Args:
            positions: ``(n, 3)`` Cartesian positions in Å.
            cell: ``(3, 3)`` cell, rows are lattice vectors (ignored along open directions).
            pbc: bool or three bools, periodicity along each cell vector.
        """
        positions = np.ascontiguousarray(positions, dtype=np.float64)
        cell = np.ascontiguousarray(cell, dtype=np.float64)
        if not np.isfinite(positions).all():
            raise SpreadError("neighbour list: non-finite atom positions")
        if not self.needs_rebuild(positions, cell, pbc):
            return False
        pbc3 = [bool(p) for p in np.broadcast_to(pbc, 3)]
        i, j, s, _ = vesin_pairs(self._vesin, positions, cell, pbc3, self.cutoff + self.skin)
        s = s.astype(np.int64)
        s[:, [not p for p in pbc3]] = 0  # open axes: zero by construction of the box
        self.i = i.astype(np.int64)
        self.j = j.astype(np.int64)
        self.shifts = s
        self._ref_positions = positions.copy()
        self._ref_cell = cell.copy()
        self._ref_pbc = tuple(pbc3)
        self.n_builds += 1
        self._torch_cache.clear()
        self._compact = None
        return True

    def compact(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The list for compiled kernels, cached until the next rebuild: ``(i, j, S)``.

        ``i`` and ``j`` are int32 (int64 for more than 2³¹ pairs), in an order of their own:
        the pairs with a zero shift first, then the ``m`` others, whose shifts ``S`` ``(m, 3)``
        (int8 where they fit) are the rows of the last ``m`` pairs.
        """
        if self._compact is None:
            shifted = self.shifts.any(axis=1)
            order = np.argsort(shifted, kind="stable")
            s = self.shifts[order[len(order) - int(shifted.sum()) :]]
            if s.size and np.abs(s).max() <= np.iinfo(np.int8).max:
                s = s.astype(np.int8)
            small = len(self.i) < np.iinfo(np.int32).max
            idx = np.int32 if small else np.int64
            self._compact = (
                self.i[order].astype(idx),
                self.j[order].astype(idx),
                np.ascontiguousarray(s),
            )
        return self._compact

    def torch_pairs(self, cell: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(i, j, S·cell)`` as tensors on ``cell``'s device, cached until the next rebuild.

        The shift vectors are recomputed (and differentiable) when ``cell`` requires grad.
        """
        key = (cell.device, cell.dtype)
        if key not in self._torch_cache:
            i = torch.from_numpy(self.i).to(cell.device)
            j = torch.from_numpy(self.j).to(cell.device)
            s = torch.from_numpy(self.shifts).to(device=cell.device, dtype=cell.dtype)
            nonzero = bool(self.shifts.any())
            self._torch_cache[key] = (i, j, s if nonzero else None, None)
        i, j, shifts, cached = self._torch_cache[key]
        if shifts is None:
            return i, j, torch.zeros((1, 3), dtype=cell.dtype, device=cell.device)
        if cell.requires_grad:
            return i, j, _shift_vectors(shifts, cell)
        if cached is None or not torch.equal(cached[0], cell):
            cached = (cell.detach().clone(), _shift_vectors(shifts, cell))
            self._torch_cache[key] = (i, j, shifts, cached)
        return i, j, cached[1]


def _shift_vectors(shifts: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
    # Three broadcasts beat a (E,3)@(3,3) matmul, which is slow for very skinny matrices.
    return shifts[:, 0:1] * cell[0] + shifts[:, 1:2] * cell[1] + shifts[:, 2:3] * cell[2]


def build_graph(
    *,
    positions: torch.Tensor,
    cell: torch.Tensor,
    species: torch.Tensor,
    neighbours: NeighbourList,
    pbc: ArrayLike = True,
) -> Graph:
    """Update ``neighbours`` for ``positions`` and return the graph with torch pair vectors.

    Args:
        positions: ``(n, 3)`` positions in Å; gradients flow through the pair vectors.
        cell: ``(3, 3)`` cell in Å (rows are lattice vectors).
        species: ``(n,)`` int64 element indices.
        neighbours: the reusable list to update.
        pbc: periodicity along each cell vector.
    """
    cell_np = cell.detach().cpu().numpy()
    neighbours.update(positions.detach().cpu().numpy(), cell_np, pbc)
    i, j, shift_vectors = neighbours.torch_pairs(cell.to(positions.dtype))
    n = positions.shape[0]
    if positions.requires_grad or shift_vectors.requires_grad or positions.device.type != "cpu":
        vectors = pair_vectors(positions, shift_vectors, i, j)
        return Graph(n_atoms=n, species=species, i=i, j=j, vectors=vectors)
    # no autograd through the vectors: they are computed when first asked for, and a compiled
    # potential may read positions and shifts directly (PairSource)
    i32, j32, shifts = neighbours.compact()
    source = PairSource(
        positions=positions,
        shift_vectors=shift_vectors,
        cell=np.asarray(cell_np, dtype=np.float64),
        i32=i32,
        j32=j32,
        shifts=shifts,
        version=positions._version,
    )
    return Graph(n_atoms=n, species=species, i=i, j=j, source=source)
