"""Perfect crystals: oriented periodic cells, primitive cells and finite clusters.

Cubic lattices (fcc, bcc, diamond) may be oriented by three mutually orthogonal Miller
directions ``[[h, k, l], ...]`` for the ``x``, ``y`` and ``z`` axes. Along each axis the
cell edge ``T_i = t_i R_i`` is the shortest lattice translation (``t_i`` is ``1/2`` or ``1``
over the reduced Miller indices), so three orthogonal translations span the periodic box

    cell = diag(a |T_0|, a |T_1|, a |T_2|),   atoms = n_conventional · |det T|

and positions map from the cubic frame as ``x' = Q x`` with ``Q_i = R_i/|R_i|``.
hcp uses the orthorhombic 4-atom cell ``diag(a, a√3, c)`` (``a`` along ``x``, ``c`` along
``z``). All lengths are in Å. Every builder sets ``atoms.arrays['region']`` to
:data:`~atomistic.regions.REGION_CORE` and records the lattice in ``atoms.info``
(``'lattice'``, ``'lattice_constant'``, and ``'orientation'`` for cubic lattices), which
:func:`atomistic.defects.interstitial` reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import product

import numpy as np
from ase import Atoms

from atomistic.regions import REGION_CORE, Region, carve

__all__ = [
    "LATTICES",
    "LatticeError",
    "crystal",
    "finite_cluster",
    "rotation_from_orientation",
    "unit_cell",
]

#: Lattice names accepted by :func:`crystal` and :func:`unit_cell`.
LATTICES = ("bcc", "diamond", "fcc", "hcp")

_FCC = np.array([[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]])
# Conventional cubic bases (units of a) and the sublattice of each basis site; two element
# symbols fill the two sublattices (B2 for bcc, zincblende for diamond).
_CUBIC_BASIS = {
    "fcc": (_FCC, np.zeros(4, dtype=int)),
    "bcc": (np.array([[0, 0, 0], [0.5, 0.5, 0.5]]), np.array([0, 1])),
    "diamond": (np.vstack([_FCC, _FCC + 0.25]), np.repeat([0, 1], 4)),
}
_N_SUBLATTICES = {"fcc": 1, "bcc": 2, "diamond": 2, "hcp": 2}
# Orthorhombic hcp cell diag(a, a√3, c), fractional positions; sublattice A at z = 0.
_HCP_ORTHO = np.array([[0, 0, 0], [0.5, 0.5, 0], [0, 1 / 3, 0.5], [0.5, 5 / 6, 0.5]])


class LatticeError(ValueError):
    """A lattice name, constant, orientation or size that cannot be built."""


def _check_structure(structure: str) -> str:
    if structure not in LATTICES:
        raise LatticeError(f"unknown lattice {structure!r}; allowed: {', '.join(LATTICES)}")
    return structure


def _check_lengths(structure: str, a: float, c: float | None) -> float | None:
    """Validate ``a`` and ``c``; return ``c`` (ideal ``a·sqrt(8/3)`` for hcp by default)."""
    if not a > 0:
        raise LatticeError(f"lattice constant a must be positive, got a={a!r}")
    if structure != "hcp":
        if c is not None:
            raise LatticeError(f"c is only used for hcp, got c={c!r} for {structure!r}")
        return None
    if c is None:
        return float(a) * np.sqrt(8.0 / 3.0)
    if not c > 0:
        raise LatticeError(f"hcp lattice constant c must be positive, got c={c!r}")
    return float(c)


def _symbols(structure: str, element: str | Sequence[str]) -> list[str]:
    """Return one element symbol per sublattice."""
    n_sub = _N_SUBLATTICES[structure]
    names = [element] if isinstance(element, str) else list(element)
    if len(names) == 1:
        return names * n_sub
    if len(names) != n_sub:
        raise LatticeError(
            f"element {element!r} for {structure!r} must be one symbol or {n_sub} "
            "(one per sublattice)"
        )
    return names


def _check_orientation(
    structure: str, orientation: Sequence[Sequence[int]] | np.ndarray | None
) -> np.ndarray | None:
    """Return the ``(3, 3)`` int orientation (rows = Miller axes x, y, z), or ``None``."""
    if structure == "hcp":
        if orientation is not None:
            raise LatticeError(
                f"hcp supports only orientation=None (a along x, c along z), got {orientation!r}"
            )
        return None
    if orientation is None:
        return np.eye(3, dtype=int)
    raw = np.asarray(orientation)
    if raw.shape != (3, 3) or not np.all(raw == np.round(raw)):
        raise LatticeError(f"orientation must be three integer Miller axes, got {orientation!r}")
    rows = raw.astype(int)
    if np.any(~rows.any(axis=1)):
        raise LatticeError(f"orientation {rows.tolist()} has a zero axis")
    gram = rows @ rows.T
    if np.any(gram[~np.eye(3, dtype=bool)] != 0):
        raise LatticeError(f"orientation axes {rows.tolist()} are not mutually orthogonal")
    if round(np.linalg.det(rows)) < 0:
        raise LatticeError(
            f"orientation {rows.tolist()} is left-handed; negate one axis to make it right-handed"
        )
    return rows


def _check_size(size: int | Sequence[int]) -> tuple[int, int, int]:
    counts = np.broadcast_to(np.asarray(size), (3,))
    if counts.dtype.kind not in "iu" or np.any(counts < 1):
        raise LatticeError(f"size must be one or three positive integers, got {size!r}")
    return int(counts[0]), int(counts[1]), int(counts[2])


def rotation_from_orientation(orientation: np.ndarray) -> np.ndarray:
    """Return ``Q``, ``(3, 3)``, rows ``R_i/|R_i|``: cubic-frame vectors map as ``x' = Q x``."""
    rows = np.asarray(orientation, dtype=float)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def _shortest_translations(structure: str, rows: np.ndarray, mixed: bool) -> np.ndarray:
    """Return ``T``, ``(3, 3)`` in units of ``a``: the shortest translation along each row."""
    primitive = rows // np.gcd.reduce(rows, axis=1, keepdims=True)
    if structure == "bcc" and not mixed:
        halves = np.all(primitive % 2 == 1, axis=1)  # ½⟨odd, odd, odd⟩ is a bcc translation
    elif structure == "bcc":
        halves = np.zeros(3, dtype=bool)  # B2 keeps only simple-cubic translations
    else:
        halves = primitive.sum(axis=1) % 2 == 0  # ½⟨h k l⟩ with h + k + l even is fcc
    return primitive * np.where(halves, 0.5, 1.0)[:, None]


def _oriented_cubic(structure: str, translations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fractional positions ``(m, 3)`` and sublattices ``(m,)`` of the box spanned by ``T``."""
    basis, sublattice = _CUBIC_BASIS[structure]
    corners = np.array([np.array(c) @ translations for c in product((0, 1), repeat=3)])
    ranges = [
        range(int(np.floor(lo)), int(np.ceil(hi)))
        for lo, hi in zip(corners.min(0), corners.max(0), strict=True)
    ]
    cells = np.array(list(product(*ranges)), dtype=float)
    points = (cells[:, None, :] + basis[None, :, :]).reshape(-1, 3)
    # points = s @ T with s the fractional coordinates of the box. With M = 2T integer and
    # sites on a grid of a/4, s·2|det M| is an integer: wrap and deduplicate on integers.
    det_m = round(abs(np.linalg.det(2 * translations)))
    steps = 2 * det_m
    grid = np.rint(points @ np.linalg.inv(translations) * steps).astype(np.int64) % steps
    grid, first = np.unique(grid, axis=0, return_index=True)
    if 8 * len(grid) != len(basis) * det_m:  # pragma: no cover - guards the enumeration
        raise RuntimeError(f"{structure} {translations.tolist()}: {len(grid)} sites")
    return grid / steps, np.tile(sublattice, len(cells))[first]


def crystal(
    structure: str,
    *,
    element: str | Sequence[str],
    a: float,
    c: float | None = None,
    orientation: Sequence[Sequence[int]] | np.ndarray | None = None,
    size: int | Sequence[int] = (1, 1, 1),
) -> Atoms:
    """Build a periodic crystal in an orthogonal cell.

    Args:
        structure: ``'fcc'``, ``'bcc'``, ``'diamond'`` or ``'hcp'``.
        element: one symbol, or one per sublattice (2 for bcc → B2, diamond → zincblende,
            hcp → A/B basal layers).
        a: lattice constant in Å (cubic edge; basal spacing for hcp).
        c: hcp ``c`` in Å; default the ideal ``a·sqrt(8/3)``. Must be ``None`` otherwise.
        orientation: Miller axes ``[[h, k, l]] * 3`` for ``x``, ``y``, ``z`` (mutually
            orthogonal, right-handed); default the cubic axes. hcp accepts only ``None``.
        size: repeats of the oriented cell along ``x``, ``y``, ``z`` (one int or three).

    Returns:
        Periodic atoms with cell ``diag(L)`` (Å), positions wrapped into ``[0, L)``.

    Raises:
        LatticeError: for an unknown lattice, bad constants, a non-orthogonal or left-handed
            orientation, or a bad size or element list.
    """
    _check_structure(structure)
    c = _check_lengths(structure, a, c)
    symbols = _symbols(structure, element)
    rows = _check_orientation(structure, orientation)
    repeats = _check_size(size)
    if rows is None:
        frac, sublattice = _HCP_ORTHO, np.array([0, 0, 1, 1])
        lengths = np.array([a, a * np.sqrt(3.0), c])
    else:
        translations = _shortest_translations(structure, rows, symbols[0] != symbols[-1])
        frac, sublattice = _oriented_cubic(structure, translations)
        lengths = a * np.linalg.norm(translations, axis=1)
    atoms = Atoms(
        symbols=[symbols[s] for s in sublattice],
        scaled_positions=frac,
        cell=np.diag(lengths),
        pbc=True,
    ).repeat(repeats)
    atoms.wrap()
    atoms.set_array("region", np.full(len(atoms), REGION_CORE, dtype=int))
    _record_lattice(atoms, structure, a, c, rows)
    return atoms


def _record_lattice(
    atoms: Atoms, structure: str, a: float, c: float | None, rows: np.ndarray | None
) -> None:
    atoms.info["lattice"] = structure
    atoms.info["lattice_constant"] = float(a)
    if c is not None:
        atoms.info["lattice_c"] = float(c)
    if rows is not None:
        atoms.info["orientation"] = rows.copy()


def unit_cell(
    structure: str,
    *,
    element: str | Sequence[str],
    a: float,
    c: float | None = None,
    orientation: Sequence[Sequence[int]] | np.ndarray | None = None,
) -> Atoms:
    """Build the smallest periodic cell, for Cauchy–Born.

    fcc: 1 atom; bcc: 1 atom (2 for B2); diamond: 2 atoms; hcp: 2 atoms. The cell is in the
    same Cartesian frame as :func:`crystal` with the same ``orientation``, so a deformation
    gradient ``F`` means the same thing for both.

    Args:
        structure: ``'fcc'``, ``'bcc'``, ``'diamond'`` or ``'hcp'``.
        element: one symbol, or one per sublattice (see :func:`crystal`).
        a: lattice constant in Å.
        c: hcp ``c`` in Å (default ideal); must be ``None`` for cubic lattices.
        orientation: Miller axes as in :func:`crystal`; default the cubic axes.

    Returns:
        Periodic atoms; cell rows are the primitive lattice vectors in Å.

    Raises:
        LatticeError: as :func:`crystal`.
    """
    _check_structure(structure)
    c = _check_lengths(structure, a, c)
    symbols = _symbols(structure, element)
    rows = _check_orientation(structure, orientation)
    fcc_cell = 0.5 * a * (np.ones((3, 3)) - np.eye(3))
    if structure == "fcc":
        cell, cart, sublattice = fcc_cell, np.zeros((1, 3)), [0]
    elif structure == "diamond":
        cell, cart, sublattice = fcc_cell, np.array([[0, 0, 0], [a / 4] * 3]), [0, 1]
    elif structure == "bcc" and symbols[0] == symbols[1]:
        cell, cart, sublattice = 0.5 * a * (np.ones((3, 3)) - 2 * np.eye(3)), np.zeros((1, 3)), [0]
    elif structure == "bcc":
        cell, cart, sublattice = a * np.eye(3), np.array([[0, 0, 0], [a / 2] * 3]), [0, 1]
    else:
        cell = np.array([[a, 0, 0], [-a / 2, a * np.sqrt(3) / 2, 0], [0, 0, c]])
        cart, sublattice = np.array([[0, 0, 0], [1 / 3, 2 / 3, 0.5]]) @ cell, [0, 1]
    if rows is not None:
        q = rotation_from_orientation(rows)
        cell, cart = cell @ q.T, cart @ q.T
    atoms = Atoms(symbols=[symbols[s] for s in sublattice], positions=cart, cell=cell, pbc=True)
    atoms.wrap()
    atoms.set_array("region", np.full(len(atoms), REGION_CORE, dtype=int))
    _record_lattice(atoms, structure, a, c, rows)
    return atoms


def finite_cluster(
    structure: str,
    *,
    element: str | Sequence[str],
    a: float,
    region: Region,
    c: float | None = None,
    orientation: Sequence[Sequence[int]] | np.ndarray | None = None,
    periodic_axes: Sequence[int] = (),
    shift: Sequence[float] = (0.0, 0.0, 0.0),
) -> Atoms:
    """Carve the lattice sites inside ``region`` from an infinite crystal.

    The lattice is registered to the origin: a site sits at ``shift`` (Å), so place the
    region relative to the origin (e.g. ``Sphere(center=(0, 0, 0), ...)`` centres on an
    atom). Along each axis in ``periodic_axes`` the region must be unbounded and the cell
    length is the oriented crystal period; those axes are periodic, the others are not.

    Args:
        structure: ``'fcc'``, ``'bcc'``, ``'diamond'`` or ``'hcp'``.
        element: one symbol, or one per sublattice.
        a: lattice constant in Å.
        region: the region to fill, e.g. a :class:`~atomistic.regions.Sphere`, or a
            :class:`~atomistic.regions.Cylinder` along ``z`` with ``periodic_axes=(2,)``.
        c: hcp ``c`` in Å (default ideal).
        orientation: Miller axes as in :func:`crystal`.
        periodic_axes: Cartesian axes (0, 1, 2) that stay periodic.
        shift: ``(3,)`` translation of the lattice in Å.

    Returns:
        Atoms with ``pbc`` true only along ``periodic_axes``; ``celldisp`` is the lower
        corner of the cell along non-periodic axes.

    Raises:
        LatticeError: for a bad lattice, a region that is bounded along a periodic axis or
            unbounded along a non-periodic one, or a region without lattice sites.
    """
    periodic = np.zeros(3, dtype=bool)
    for axis in periodic_axes:
        if axis not in (0, 1, 2):
            raise LatticeError(f"periodic_axes entries must be 0, 1 or 2, got {periodic_axes!r}")
        periodic[axis] = True
    block = crystal(structure, element=element, a=a, c=c, orientation=orientation)
    period = block.cell.lengths()
    lo, hi = region.bounds()
    for axis in range(3):
        unbounded = np.isinf(lo[axis]) and np.isinf(hi[axis])
        if periodic[axis] and not unbounded:
            raise LatticeError(
                f"region {region!r} is bounded along periodic axis {axis} "
                f"({lo[axis]:g} to {hi[axis]:g} Å); it must span the full period"
            )
        if not periodic[axis] and not np.isfinite([lo[axis], hi[axis]]).all():
            raise LatticeError(
                f"region {region!r} is unbounded along axis {axis}, which is not in "
                f"periodic_axes={tuple(periodic_axes)!r}"
            )
    offset = np.asarray(shift, dtype=float)
    first = np.where(periodic, 0, np.floor((np.where(periodic, 0, lo) - offset) / period))
    last = np.where(periodic, 1, np.floor((np.where(periodic, 0, hi) - offset) / period) + 1)
    atoms = block.repeat(tuple(int(n) for n in last - first))
    atoms.positions += first * period + offset
    if periodic.any():
        atoms.wrap(pbc=periodic)
    cluster = carve(atoms, region, pbc=periodic)
    if len(cluster) == 0:
        raise LatticeError(f"region {region!r} holds no {structure} lattice sites")
    cluster.set_celldisp(np.where(periodic, 0.0, first * period + offset))
    return cluster
