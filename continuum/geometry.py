"""Shapes of the continuum domain: an outer body with an optional hole for the atomistic core.

All lengths are in Å. The 2D shapes (:class:`Disk`, :class:`Rectangle`) build triangle meshes
in the ``xy`` plane, the 3D shapes (:class:`Ball`, :class:`Box`) tetrahedral meshes. Each shape
knows how to add itself to a gmsh OpenCASCADE model (:meth:`add_to_occ`), its centroid, its
dimension and whether a point set lies on its surface (used to tell hole facets from outer
facets after the boolean cut).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

__all__ = ["Ball", "Box", "Disk", "GeometryError", "Rectangle", "Shape"]


class GeometryError(ValueError):
    """A shape or a pair of shapes that cannot describe a continuum domain."""


class Shape(Protocol):
    """What :func:`continuum.mesh.graded_mesh` needs from a shape."""

    @property
    def dim(self) -> int:
        """Topological dimension of the shape (2 or 3)."""
        ...

    @property
    def centroid(self) -> np.ndarray:
        """Centre of the shape, shape ``(3,)`` in Å (``z = 0`` in 2D)."""
        ...

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Axis-aligned bounding box ``(lo, hi)``, each of shape ``(3,)`` in Å."""
        ...

    def add_to_occ(self, occ: Any) -> int:
        """Add the shape to a gmsh OCC kernel and return the entity tag.

        Args:
            occ: ``gmsh.model.occ`` (gmsh ships no type information).
        """
        ...


def _point(values: Sequence[float], dim: int, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if arr.shape != (dim,) or not np.all(np.isfinite(arr)):
        raise GeometryError(f"{name} must be {dim} finite numbers, got {values!r}")
    return np.concatenate([arr, np.zeros(3 - dim)])


def _positive(value: float, name: str) -> float:
    if not np.isfinite(value) or value <= 0.0:
        raise GeometryError(f"{name} must be positive and finite, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Disk:
    """A disk in the ``xy`` plane.

    Args:
        center: centre ``(x, y)`` in Å.
        radius: radius in Å.
    """

    center: tuple[float, float]
    radius: float

    def __post_init__(self) -> None:
        _point(self.center, 2, "Disk.center")
        _positive(self.radius, "Disk.radius")

    @property
    def dim(self) -> int:
        """Topological dimension: 2."""
        return 2

    @property
    def centroid(self) -> np.ndarray:
        """The centre, ``(3,)`` in Å with ``z = 0``."""
        return _point(self.center, 2, "Disk.center")

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """The bounding square ``(lo, hi)``, each ``(3,)`` in Å (``z = 0``)."""
        r = np.array([self.radius, self.radius, 0.0])
        return self.centroid - r, self.centroid + r

    def add_to_occ(self, occ: Any) -> int:
        """Add the disk to ``gmsh.model.occ``; returns its tag."""
        x, y, _ = self.centroid
        return occ.addDisk(x, y, 0.0, self.radius, self.radius)


@dataclass(frozen=True)
class Rectangle:
    """An axis-aligned rectangle in the ``xy`` plane.

    Args:
        lo: lower-left corner ``(x, y)`` in Å.
        hi: upper-right corner ``(x, y)`` in Å.
    """

    lo: tuple[float, float]
    hi: tuple[float, float]

    def __post_init__(self) -> None:
        lo, hi = _point(self.lo, 2, "Rectangle.lo"), _point(self.hi, 2, "Rectangle.hi")
        if np.any(hi[:2] <= lo[:2]):
            raise GeometryError(f"Rectangle needs hi > lo componentwise, got {self.lo}, {self.hi}")

    @property
    def dim(self) -> int:
        """Topological dimension: 2."""
        return 2

    @property
    def centroid(self) -> np.ndarray:
        """The centre, ``(3,)`` in Å with ``z = 0``."""
        lo, hi = self.bounds()
        return 0.5 * (lo + hi)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """The corners ``(lo, hi)``, each ``(3,)`` in Å (``z = 0``)."""
        return _point(self.lo, 2, "Rectangle.lo"), _point(self.hi, 2, "Rectangle.hi")

    def add_to_occ(self, occ: Any) -> int:
        """Add the rectangle to ``gmsh.model.occ``; returns its tag."""
        lo, hi = self.bounds()
        dx, dy, _ = hi - lo
        return occ.addRectangle(lo[0], lo[1], 0.0, dx, dy)


@dataclass(frozen=True)
class Ball:
    """A ball.

    Args:
        center: centre ``(x, y, z)`` in Å.
        radius: radius in Å.
    """

    center: tuple[float, float, float]
    radius: float

    def __post_init__(self) -> None:
        _point(self.center, 3, "Ball.center")
        _positive(self.radius, "Ball.radius")

    @property
    def dim(self) -> int:
        """Topological dimension: 3."""
        return 3

    @property
    def centroid(self) -> np.ndarray:
        """The centre, ``(3,)`` in Å."""
        return _point(self.center, 3, "Ball.center")

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """The bounding cube ``(lo, hi)``, each ``(3,)`` in Å."""
        return self.centroid - self.radius, self.centroid + self.radius

    def add_to_occ(self, occ: Any) -> int:
        """Add the ball to ``gmsh.model.occ``; returns its tag."""
        x, y, z = self.centroid
        return occ.addSphere(x, y, z, self.radius)


@dataclass(frozen=True)
class Box:
    """An axis-aligned box.

    Args:
        lo: lower corner ``(x, y, z)`` in Å.
        hi: upper corner ``(x, y, z)`` in Å.
    """

    lo: tuple[float, float, float]
    hi: tuple[float, float, float]

    def __post_init__(self) -> None:
        lo, hi = _point(self.lo, 3, "Box.lo"), _point(self.hi, 3, "Box.hi")
        if np.any(hi <= lo):
            raise GeometryError(f"Box needs hi > lo componentwise, got {self.lo}, {self.hi}")

    @property
    def dim(self) -> int:
        """Topological dimension: 3."""
        return 3

    @property
    def centroid(self) -> np.ndarray:
        """The centre, ``(3,)`` in Å."""
        lo, hi = self.bounds()
        return 0.5 * (lo + hi)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """The corners ``(lo, hi)``, each ``(3,)`` in Å."""
        return _point(self.lo, 3, "Box.lo"), _point(self.hi, 3, "Box.hi")

    def add_to_occ(self, occ: Any) -> int:
        """Add the box to ``gmsh.model.occ``; returns its tag."""
        lo, hi = self.bounds()
        return occ.addBox(*lo, *(hi - lo))


def check_hole_inside(outer: Shape, hole: Shape) -> None:
    """Raise :class:`GeometryError` unless ``hole`` lies strictly inside ``outer``.

    The test is conservative: the hole's bounding box must sit inside the outer shape with a
    positive margin (for disks and balls the box corners are tested against the radius).
    """
    if hole.dim != outer.dim:
        raise GeometryError(
            f"hole {type(hole).__name__} ({hole.dim}D) does not match outer "
            f"{type(outer).__name__} ({outer.dim}D)"
        )
    lo, hi = hole.bounds()
    d = outer.dim
    if isinstance(hole, Disk | Ball):
        # the farthest point of a round hole from the outer centroid is along the line of centres
        reach = np.linalg.norm(hole.centroid - outer.centroid) + hole.radius
    else:
        grid = np.meshgrid(*[[lo[i], hi[i]] for i in range(3)], indexing="ij")
        corners = np.stack([g.ravel() for g in grid], axis=1)
        reach = np.linalg.norm(corners - outer.centroid, axis=1).max()
    if isinstance(outer, Disk | Ball):
        inside = reach < outer.radius
    else:
        olo, ohi = outer.bounds()
        inside = bool(np.all(lo[:d] > olo[:d]) and np.all(hi[:d] < ohi[:d]))
    if not inside:
        raise GeometryError(f"hole {hole!r} is not strictly inside outer {outer!r}")
