"""Point defects and voids. Each function returns new atoms and leaves its input alone.

Distances are minimum-image along periodic axes. Interstitial sites are found from the
lattice recorded in ``atoms.info`` by :mod:`atomistic.lattice` (or given explicitly); the
site offsets from a host atom, in the cubic frame and units of ``a``, are

===========  =====================  ================================
lattice      octahedral             tetrahedral
===========  =====================  ================================
fcc          ½⟨100⟩ (6), at a/2     ¼⟨111⟩ (8), at a√3/4
bcc          ½⟨100⟩ (6), at a/2     ⟨½ ¼ 0⟩ (24), at a√5/4
===========  =====================  ================================
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from itertools import permutations, product

import numpy as np
from ase import Atoms
from ase.geometry import get_distances

from atomistic.lattice import LatticeError, rotation_from_orientation
from atomistic.regions import REGION_CORE

__all__ = ["interstitial", "vacancy", "void"]

_OCTAHEDRAL = 0.5 * np.vstack([np.eye(3), -np.eye(3)])
_FCC_TETRAHEDRAL = 0.25 * np.array(list(product((-1, 1), repeat=3)), dtype=float)
_BCC_TETRAHEDRAL = np.unique(
    [
        np.array(p) * np.array(s)
        for p in permutations((0.5, 0.25, 0.0))
        for s in product((-1, 1), repeat=3)
    ],
    axis=0,
)
_SITE_OFFSETS = {
    ("fcc", "octahedral"): _OCTAHEDRAL,
    ("fcc", "tetrahedral"): _FCC_TETRAHEDRAL,
    ("bcc", "octahedral"): _OCTAHEDRAL,
    ("bcc", "tetrahedral"): _BCC_TETRAHEDRAL,
}


def _cell_centre(atoms: Atoms) -> np.ndarray:
    return atoms.get_celldisp().reshape(3) + 0.5 * atoms.cell.array.sum(axis=0)


def _point(value: Sequence[float] | np.ndarray, *, name: str) -> np.ndarray:
    point = np.asarray(value, dtype=float)
    if point.shape != (3,):
        raise ValueError(f"{name} must be a (3,) point in Å, got {value!r}")
    return point


def _displacements(atoms: Atoms, point: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(n, 3)`` minimum-image vectors ``point → atom`` (Å) and their ``(n,)`` lengths."""
    vectors, lengths = get_distances(point[None, :], atoms.positions, atoms.cell, atoms.pbc)
    return vectors[0], lengths[0]


def vacancy(
    atoms: Atoms,
    *,
    index: int | None = None,
    near: Sequence[float] | None = None,
) -> Atoms:
    """Remove one atom: ``index``, or the atom nearest ``near`` (default the cell centre).

    Args:
        atoms: the host (not modified).
        index: the atom to remove; give ``index`` or ``near``, not both.
        near: ``(3,)`` point in Å; the nearest atom (lowest index on ties) is removed.

    Returns:
        A copy with one atom fewer.

    Raises:
        ValueError: if both ``index`` and ``near`` are given, or the atoms are empty.
        IndexError: if ``index`` is out of range.
    """
    if index is not None and near is not None:
        raise ValueError(f"give index or near, not both (index={index!r}, near={near!r})")
    if len(atoms) == 0:
        raise ValueError("cannot make a vacancy in empty atoms")
    if index is None:
        point = _cell_centre(atoms) if near is None else _point(near, name="near")
        index = int(np.argmin(_displacements(atoms, point)[1]))
    elif not -len(atoms) <= index < len(atoms):
        raise IndexError(f"vacancy index {index} out of range for {len(atoms)} atoms")
    defective = atoms.copy()
    del defective[index]
    return defective


def void(atoms: Atoms, *, center: Sequence[float], radius: float) -> Atoms:
    """Remove every atom within ``radius`` of ``center`` (a ball of vacancies).

    Args:
        atoms: the host (not modified).
        center: ``(3,)`` centre in Å.
        radius: radius in Å (> 0); atoms at distance ``<= radius`` are removed.

    Returns:
        A copy without those atoms.
    """
    if not radius > 0:
        raise ValueError(f"void radius must be positive, got {radius!r}")
    lengths = _displacements(atoms, _point(center, name="center"))[1]
    return atoms[lengths > radius]


def _lattice_from_info(
    atoms: Atoms, structure: str | None, a: float | None, orientation: np.ndarray | None
) -> tuple[str, float, np.ndarray]:
    structure = atoms.info.get("lattice") if structure is None else structure
    a = atoms.info.get("lattice_constant") if a is None else a
    if orientation is None:
        orientation = atoms.info.get("orientation", np.eye(3, dtype=int))
    if structure not in ("fcc", "bcc"):
        raise LatticeError(
            f"interstitial sites are defined for fcc and bcc, got lattice {structure!r}; "
            "give site as a position instead"
        )
    if a is None or not a > 0:
        raise LatticeError(f"interstitial site needs a positive lattice constant a, got {a!r}")
    return structure, float(a), np.asarray(orientation).reshape(3, 3)


def interstitial(
    atoms: Atoms,
    *,
    site: str | Sequence[float],
    element: str | None = None,
    near: Sequence[float] | None = None,
    structure: str | None = None,
    a: float | None = None,
    orientation: Sequence[Sequence[int]] | None = None,
) -> Atoms:
    """Add one atom at an interstitial site or at an explicit position.

    Args:
        atoms: the host (not modified).
        site: ``'octahedral'`` or ``'tetrahedral'`` (the site of that kind nearest
            ``near``), or a ``(3,)`` position in Å.
        element: symbol of the added atom; default the host's most common element.
        near: ``(3,)`` point in Å that picks the site; default the cell centre.
        structure: ``'fcc'`` or ``'bcc'``; default ``atoms.info['lattice']``.
        a: lattice constant in Å; default ``atoms.info['lattice_constant']``.
        orientation: Miller axes of the host; default ``atoms.info['orientation']`` or the
            cubic axes.

    Returns:
        A copy with one more atom (last), labelled ``REGION_CORE``.

    Raises:
        LatticeError: for a named site on a lattice other than fcc/bcc, or when the site
            found lies on top of a host atom (``a`` or ``orientation`` do not match).
        ValueError: for an unknown site name or a malformed point.
    """
    if element is None:
        if len(atoms) == 0:
            raise ValueError("element is required when adding to empty atoms")
        element = Counter(atoms.get_chemical_symbols()).most_common(1)[0][0]
    if isinstance(site, str):
        position = _interstitial_site(atoms, site, near, structure, a, orientation)
    else:
        position = _point(site, name="site")
    defective = atoms.copy()
    defective.extend(Atoms(element, positions=[position], cell=atoms.cell, pbc=atoms.pbc))
    if "region" in defective.arrays:
        defective.arrays["region"][-1] = REGION_CORE
    if atoms.pbc.any():
        defective.wrap()
    return defective


def _interstitial_site(
    atoms: Atoms,
    site: str,
    near: Sequence[float] | None,
    structure: str | None,
    a: float | None,
    orientation: Sequence[Sequence[int]] | None,
) -> np.ndarray:
    """Return the ``(3,)`` position (Å) of the ``site`` nearest ``near``."""
    if site not in ("octahedral", "tetrahedral"):
        raise ValueError(
            f"unknown interstitial site {site!r}; allowed: octahedral, tetrahedral, or a position"
        )
    if len(atoms) == 0:
        raise ValueError("cannot place a lattice interstitial in empty atoms")
    rows = None if orientation is None else np.asarray(orientation)
    structure, a, rows = _lattice_from_info(atoms, structure, a, rows)
    offsets = a * _SITE_OFFSETS[structure, site] @ rotation_from_orientation(rows).T
    point = _cell_centre(atoms) if near is None else _point(near, name="near")
    vectors, lengths = _displacements(atoms, point)
    # Sites lie within ~a of any point and within a√5/4 of their host atom, so hosts farther
    # than the nearest atom + 2a cannot own the nearest site.
    hosts = vectors[lengths <= lengths.min() + 2 * a]
    candidates = (hosts[:, None, :] + offsets[None, :, :]).reshape(-1, 3)
    best = candidates[np.argmin(np.linalg.norm(candidates, axis=1))]
    position = point + best
    clearance = _displacements(atoms, position)[1].min()
    expected = np.linalg.norm(offsets, axis=1).min()
    if clearance < 0.9 * expected:
        raise LatticeError(
            f"{site} site at {position.round(3).tolist()} is {clearance:.3f} Å from an atom "
            f"(expected {expected:.3f} Å): do a={a} and orientation={rows.tolist()} match "
            "the atoms?"
        )
    return position
