"""Geometric regions, carving, and the per-atom ``region`` label array.

Geometric regions (:class:`Box`, :class:`Sphere`, :class:`Cylinder`) answer one question,
vectorised over atoms: is each point inside? :func:`carve` keeps the atoms inside one.

The per-atom label array ``atoms.arrays['region']`` (int, shape ``(n,)``) tells the coupling
which role each atom plays. It survives extended XYZ, so OVITO can colour by it:

====================  ====  ==============================================
constant              code  meaning
====================  ====  ==============================================
``REGION_CORE``       0     core: fully atomistic
``REGION_HANDSHAKE``  1     handshake: atoms and continuum blended
``REGION_PAD``        2     pad: atoms driven by the continuum (ghost-free)
``REGION_FAR``        3     continuum or anything else
====================  ====  ==============================================
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from ase import Atoms

__all__ = [
    "REGION_CORE",
    "REGION_FAR",
    "REGION_HANDSHAKE",
    "REGION_NAMES",
    "REGION_PAD",
    "Box",
    "Cylinder",
    "Region",
    "Sphere",
    "carve",
    "set_region",
]

REGION_CORE = 0
REGION_HANDSHAKE = 1
REGION_PAD = 2
REGION_FAR = 3
#: Label names accepted by :func:`set_region`, indexed by code.
REGION_NAMES = ("core", "handshake", "pad", "far")
_REGION_ALIASES = {"atomistic": REGION_CORE, "continuum": REGION_FAR, "other": REGION_FAR}


class Region(Protocol):
    """A set of points in space."""

    def contains(self, positions: np.ndarray) -> np.ndarray:
        """Return ``(n,)`` bool: which of the ``(n, 3)`` positions (Å) lie inside."""
        ...

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(lo, hi)``, each ``(3,)`` in Å, an axis-aligned box holding the region.

        Entries are ``-inf``/``+inf`` along directions in which the region is unbounded.
        """
        ...


def _vector3(value: Sequence[float] | np.ndarray, *, name: str) -> np.ndarray:
    array = np.asarray(value, dtype=float)
    if array.shape != (3,):
        raise ValueError(f"{name} must have shape (3,), got {array.shape} from {value!r}")
    if np.isnan(array).any():
        raise ValueError(f"{name} must not contain NaN, got {value!r}")
    return array


def _positions(positions: np.ndarray) -> np.ndarray:
    array = np.asarray(positions, dtype=float)
    if array.ndim != 2 or array.shape[1] != 3:
        raise ValueError(f"positions must have shape (n, 3), got {array.shape}")
    return array


@dataclass(frozen=True, init=False, eq=False)
class Box:
    """Axis-aligned box ``lo <= x <= hi`` (closed); infinite bounds are allowed.

    Args:
        lo: ``(3,)`` lower corner in Å (``-inf`` for unbounded).
        hi: ``(3,)`` upper corner in Å (``+inf`` for unbounded).
    """

    lo: np.ndarray
    hi: np.ndarray

    def __init__(self, lo: Sequence[float], hi: Sequence[float]) -> None:
        lo_array = _vector3(lo, name="Box lo")
        hi_array = _vector3(hi, name="Box hi")
        if np.any(lo_array > hi_array):
            raise ValueError(f"Box lo {lo!r} exceeds hi {hi!r} along some axis")
        object.__setattr__(self, "lo", lo_array)
        object.__setattr__(self, "hi", hi_array)

    def contains(self, positions: np.ndarray) -> np.ndarray:
        """Return ``(n,)`` bool: which of the ``(n, 3)`` positions (Å) lie in the box."""
        x = _positions(positions)
        return np.all((x >= self.lo) & (x <= self.hi), axis=1)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(lo, hi)``, each ``(3,)`` in Å."""
        return self.lo.copy(), self.hi.copy()


@dataclass(frozen=True, init=False, eq=False)
class Sphere:
    """Closed ball ``|x - center| <= radius``.

    Args:
        center: ``(3,)`` centre in Å.
        radius: radius in Å (> 0).
    """

    center: np.ndarray
    radius: float

    def __init__(self, center: Sequence[float], radius: float) -> None:
        if not radius > 0:
            raise ValueError(f"Sphere radius must be positive, got {radius!r}")
        object.__setattr__(self, "center", _vector3(center, name="Sphere center"))
        object.__setattr__(self, "radius", float(radius))

    def contains(self, positions: np.ndarray) -> np.ndarray:
        """Return ``(n,)`` bool: which of the ``(n, 3)`` positions (Å) lie in the ball."""
        d = _positions(positions) - self.center
        return np.einsum("ij,ij->i", d, d) <= self.radius**2

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(lo, hi)``, each ``(3,)`` in Å."""
        return self.center - self.radius, self.center + self.radius


@dataclass(frozen=True, init=False, eq=False)
class Cylinder:
    """Closed circular cylinder, infinite along its axis unless ``length`` is given.

    Args:
        center: ``(3,)`` a point on the axis in Å (the mid-point when ``length`` is given).
        radius: radius in Å (> 0).
        axis: a Cartesian axis index ``0``, ``1`` or ``2``, or a ``(3,)`` direction.
        length: total length in Å along the axis, centred on ``center``; ``None`` = infinite.
    """

    center: np.ndarray
    radius: float
    axis: np.ndarray
    length: float | None

    def __init__(
        self,
        center: Sequence[float],
        radius: float,
        axis: int | Sequence[float] = 2,
        length: float | None = None,
    ) -> None:
        if not radius > 0:
            raise ValueError(f"Cylinder radius must be positive, got {radius!r}")
        if length is not None and not length > 0:
            raise ValueError(f"Cylinder length must be positive or None, got {length!r}")
        if isinstance(axis, int | np.integer):
            if axis not in (0, 1, 2):
                raise ValueError(f"Cylinder axis index must be 0, 1 or 2, got {axis!r}")
            direction = np.eye(3)[int(axis)]
        else:
            direction = _vector3(axis, name="Cylinder axis")
            norm = np.linalg.norm(direction)
            if norm == 0:
                raise ValueError(f"Cylinder axis must be a non-zero vector, got {axis!r}")
            direction = direction / norm
        object.__setattr__(self, "center", _vector3(center, name="Cylinder center"))
        object.__setattr__(self, "radius", float(radius))
        object.__setattr__(self, "axis", direction)
        object.__setattr__(self, "length", None if length is None else float(length))

    def contains(self, positions: np.ndarray) -> np.ndarray:
        """Return ``(n,)`` bool: which of the ``(n, 3)`` positions (Å) lie in the cylinder."""
        d = _positions(positions) - self.center
        along = d @ self.axis
        across = d - along[:, None] * self.axis
        inside = np.einsum("ij,ij->i", across, across) <= self.radius**2
        if self.length is not None:
            inside &= np.abs(along) <= 0.5 * self.length
        return inside

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(lo, hi)``, each ``(3,)`` in Å (``±inf`` along an infinite axis)."""
        # A disc of radius r normal to u reaches r·sqrt(1 - u_k²) along Cartesian axis k.
        reach = self.radius * np.sqrt(np.clip(1.0 - self.axis**2, 0.0, None))
        if self.length is None:
            reach = np.where(np.abs(self.axis) > 1e-12, np.inf, reach)
        else:
            reach = reach + 0.5 * self.length * np.abs(self.axis)
        return self.center - reach, self.center + reach


def carve(
    atoms: Atoms,
    region: Region,
    *,
    pbc: bool | Sequence[bool] | np.ndarray = (False, False, False),
) -> Atoms:
    """Return a copy of ``atoms`` holding only the atoms inside ``region``.

    The cell is unchanged, so a direction kept periodic keeps the crystal's period (for
    example, carve a :class:`Cylinder` along ``z`` and pass ``pbc=(False, False, True)``).

    Args:
        atoms: the atoms to carve from (not modified).
        region: any object with ``contains((n, 3)) -> (n,) bool``.
        pbc: periodicity of the result, one bool or three.

    Returns:
        The carved atoms, with all per-atom arrays (``region`` included) carried over.
    """
    flags = np.broadcast_to(np.asarray(pbc, dtype=bool), (3,)).copy()
    carved = atoms[region.contains(atoms.positions)]
    carved.pbc = flags
    return carved


def _region_codes(labels: np.ndarray) -> np.ndarray:
    if labels.dtype.kind in "US":
        names = {name: code for code, name in enumerate(REGION_NAMES)} | _REGION_ALIASES
        unknown = sorted({str(s) for s in np.unique(labels)} - set(names))
        if unknown:
            raise ValueError(
                f"unknown region label(s) {unknown}; allowed: {', '.join(sorted(names))}"
            )
        return np.array([names[str(s)] for s in labels], dtype=int)
    if labels.dtype.kind not in "iu" and not (
        labels.dtype.kind == "f" and np.all(labels == np.round(labels))
    ):
        raise TypeError(f"region labels must be int codes or names, got dtype {labels.dtype}")
    codes = labels.astype(int)
    bad = sorted(set(np.unique(codes).tolist()) - set(range(len(REGION_NAMES))))
    if bad:
        raise ValueError(f"unknown region code(s) {bad}; allowed: 0, 1, 2, 3 ({REGION_NAMES})")
    return codes


def set_region(
    atoms: Atoms, labels: np.ndarray | Sequence[int] | Sequence[str] | int | str
) -> None:
    """Store per-atom region codes in ``atoms.arrays['region']`` (in place).

    Args:
        atoms: the atoms to label (modified in place).
        labels: ``(n,)`` int codes (:data:`REGION_CORE` ... :data:`REGION_FAR`) or names
            (``'core'``, ``'handshake'``, ``'pad'``, ``'far'``; also ``'atomistic'``,
            ``'continuum'``, ``'other'``), or one scalar label for every atom.

    Raises:
        ValueError: for a wrong length or an unknown code or name.
        TypeError: for labels that are neither integers nor strings.
    """
    array = np.asarray(labels)
    if array.ndim == 0:
        array = np.full(len(atoms), array.item(), dtype=array.dtype)
    if array.shape != (len(atoms),):
        raise ValueError(
            f"region labels must have shape ({len(atoms)},) to match the atoms, got {array.shape}"
        )
    atoms.set_array("region", _region_codes(array), dtype=int)
