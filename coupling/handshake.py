"""Handshake geometry and the blending function β.

The atomistic core is a union of balls (3D), or of disks in the ``x–y`` plane for a
cylinder along ``z`` (2.5D slabs). The first ball is ``(center, core_radius)``; more are
added by :meth:`Handshake.grow` (an anisotropic region: along a glide plane or a crack line,
not across it). With ``d_i(x) = |x − c_i| − r_i`` (in the ``x–y`` plane for a cylinder), the
signed distance to the core's boundary is the smooth minimum

    depth(x) = −τ log Σ_i exp(−d_i(x)/τ)   (evaluated as  m − τ log Σ_i exp(−(d_i − m)/τ),
                                             m = min_i d_i)

with a small softness ``τ`` (Å). It lies within ``τ log n_balls`` below the hard minimum
``m``, is C^∞ where the hard minimum has a crease (the seam between two balls), has
``|∇ depth| ≤ 1``, and with one ball it is exactly ``|x − c| − R``. Then

=============  =============================  ==============================================
region         where                          β
=============  =============================  ==============================================
core           ``depth ≤ 0``                  1
handshake      ``0 < depth < w``              ``1 − s(t)``, ``t = depth/w``
pad            ``w ≤ depth ≤ w + p``          0 (slaved to the FE field)
far            beyond                         no atoms
=============  =============================  ==============================================

``s(t) = 10t³ − 15t⁴ + 6t⁵`` (smootherstep), so β is C² in ``x``. The continuum carries
``1 − β``; its mesh has a hole inside the core (``β = 1`` there, so no FE energy is lost).
The pad is at least ``r_cut`` wide, so every atom with ``β > 0`` sees a full neighbourhood.

Cost: a KD-tree per distinct ball radius. The sum runs over the balls with
``d_i − m < 40 τ`` (the others add less than ``4·10⁻¹⁸`` relative); points with
``m − τ log n_balls > w + p`` (certainly far, β = 0) get the hard minimum ``m`` instead,
so far quadrature points of a large mesh cost one nearest-neighbour query.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy.spatial import cKDTree

from atomistic.regions import REGION_CORE, REGION_FAR, REGION_HANDSHAKE, REGION_PAD

__all__ = ["Handshake", "smootherstep"]

#: Terms of the smooth minimum with ``(d_i − m)/τ`` beyond this are dropped (e⁻⁴⁰ ≈ 4e-18).
_TAIL = 40.0
#: Points per batch of the smooth minimum (bounds the memory of the candidate pairs).
_CHUNK = 8192

Ball = tuple[tuple[float, float, float], float]


def smootherstep(t: np.ndarray) -> np.ndarray:
    """``s(t) = 10t³ − 15t⁴ + 6t⁵`` on ``[0, 1]``, clamped outside (C² at both ends)."""
    t = np.clip(t, 0.0, 1.0)
    return t * t * t * (10.0 + t * (-15.0 + 6.0 * t))


def _points(x: np.ndarray) -> np.ndarray:
    return np.atleast_2d(np.asarray(x, dtype=np.float64))


@dataclass(frozen=True, kw_only=True)
class Handshake:
    """Geometry of the atomistic core, the blended handshake and the pad.

    Attributes:
        shape: ``"sphere"`` (3D) or ``"cylinder"`` (2.5D; axis along ``z``).
        center: ``(3,)`` centre of the first ball in Å (``z`` ignored for a cylinder).
        core_radius: ``R`` in Å, the first ball's radius.
        width: handshake width ``w`` in Å (``w ≥ 2 r_cut`` is advised).
        pad_width: ``p`` in Å, at least the potential cutoff.
        balls: further core balls (disks for a cylinder), each ``((x, y, z), radius)`` in Å;
            :meth:`grow` adds them.
        softness: ``τ`` in Å of the smooth minimum over the balls.
    """

    shape: str
    center: tuple[float, float, float]
    core_radius: float
    width: float
    pad_width: float
    balls: tuple[Ball, ...] = ()
    softness: float = 0.25

    def __post_init__(self) -> None:
        if self.shape not in ("sphere", "cylinder"):
            raise ValueError(f"handshake shape must be 'sphere' or 'cylinder', got {self.shape!r}")
        if self.core_radius < 0 or self.width <= 0 or self.pad_width <= 0:
            raise ValueError(
                "handshake needs core_radius >= 0, width > 0 and pad_width > 0 (Å), got "
                f"{self.core_radius}, {self.width}, {self.pad_width}"
            )
        if not self.softness > 0:
            raise ValueError(f"handshake softness must be > 0 Å, got {self.softness}")
        for c, r in self.balls:
            if len(c) != 3 or not np.all(np.isfinite(c)) or not r > 0:
                raise ValueError(
                    f"handshake ball needs a finite (3,) centre and radius > 0, got {c}, {r}"
                )

    # -- sizes -------------------------------------------------------------------------------
    @property
    def outer_radius(self) -> float:
        """``R + w``: where β reaches 0 around the first ball (the whole region: one ball)."""
        return self.core_radius + self.width

    @property
    def atom_radius(self) -> float:
        """``R + w + p``: the first ball's atomistic set (see :attr:`reach` for all balls)."""
        return self.core_radius + self.width + self.pad_width

    @property
    def reach(self) -> float:
        """Radius in Å around ``center`` that holds every point with ``depth ≤ w + p``.

        ``max_i (|c_i − center| + r_i) + w + p + τ log n_balls``: sites must be cut from a
        cluster of this radius. With one ball it is :attr:`atom_radius`.
        """
        if not self.balls:
            return self.atom_radius
        k = self._k
        far = np.linalg.norm(self.ball_centers[:, :k] - self.ball_centers[0, :k], axis=1)
        extent = float(np.max(far + self.ball_radii))
        return float(extent + self.width + self.pad_width + self.softness * np.log(self.n_balls))

    @property
    def n_balls(self) -> int:
        """Number of balls of the core, the first included."""
        return 1 + len(self.balls)

    @property
    def ball_centers(self) -> np.ndarray:
        """``(n_balls, 3)`` centres in Å, the first ball's first."""
        return np.array([self.center, *(c for c, _ in self.balls)], dtype=np.float64)

    @property
    def ball_radii(self) -> np.ndarray:
        """``(n_balls,)`` radii in Å, the first ball's first."""
        return np.array([self.core_radius, *(r for _, r in self.balls)], dtype=np.float64)

    @property
    def _k(self) -> int:
        return 2 if self.shape == "cylinder" else 3

    # -- distances ---------------------------------------------------------------------------
    def distance(self, x: np.ndarray) -> np.ndarray:
        """Distance ``(n,)`` in Å of points ``x`` ``(n, 2|3)`` from the first ball's centre."""
        x = _points(x)
        c = np.asarray(self.center, dtype=np.float64)
        k = self._k
        return np.linalg.norm(x[:, :k] - c[:k], axis=1)

    def depth(self, x: np.ndarray) -> np.ndarray:
        """Signed smooth distance ``(n,)`` in Å of ``x`` ``(n, 2|3)`` to the core's boundary.

        ``−τ log Σ_i exp(−(|x − c_i| − r_i)/τ)``: ``≤ 0`` in the core, ``|x − c| − R``
        exactly with one ball. Where the hard minimum ``m`` exceeds ``w + p + τ log n``
        (far: β = 0 either way) it is ``m`` itself.
        """
        x = _points(x)
        if not self.balls:
            return self.distance(x) - self.core_radius
        xk = x[:, : self._k]
        hard = np.full(len(xk), np.inf)
        for tree, r in self._trees:
            dist, _ = tree.query(xk)
            np.minimum(hard, dist - r, out=hard)
        out = hard.copy()
        bound = self.width + self.pad_width + self.softness * np.log(self.n_balls)
        near = np.flatnonzero(hard <= bound)
        for start in range(0, len(near), _CHUNK):
            rows = near[start : start + _CHUNK]
            out[rows] = self._smooth_min(xk[rows], hard[rows])
        return out

    def _smooth_min(self, xk: np.ndarray, hard: np.ndarray) -> np.ndarray:
        """``m − τ log Σ exp(−(d_i − m)/τ)`` over the balls with ``d_i < m + 40 τ``."""
        tau = self.softness
        rows, excess = [], []
        for tree, r in self._trees:
            hits = tree.query_ball_point(xk, hard + r + _TAIL * tau, return_sorted=False)
            counts = np.fromiter(map(len, hits), dtype=np.int64, count=len(xk))
            if counts.sum() == 0:
                continue
            cols = np.concatenate(hits).astype(np.int64)
            row = np.repeat(np.arange(len(xk)), counts)
            d = np.linalg.norm(xk[row] - tree.data[cols], axis=1) - r
            rows.append(row)
            excess.append(d - hard[row])
        row, e = np.concatenate(rows), np.concatenate(excess)
        total = np.bincount(row, weights=np.exp(-e / tau), minlength=len(xk))
        return hard - tau * np.log(total)

    @cached_property
    def _trees(self) -> list[tuple[cKDTree, float]]:
        """One KD-tree of the centres per distinct radius."""
        centers, radii = self.ball_centers[:, : self._k], self.ball_radii
        return [(cKDTree(centers[radii == r]), float(r)) for r in np.unique(radii)]

    # -- β and regions ----------------------------------------------------------------------
    def beta(self, x: np.ndarray) -> np.ndarray:
        """Blending weight ``β = 1 − s(depth/w)`` ``(n,)`` at points ``x`` ``(n, 2|3)``."""
        return 1.0 - smootherstep(self.depth(x) / self.width)

    def continuum_weight(self, x: np.ndarray) -> np.ndarray:
        """``1 − β`` ``(n,)``: the weight of the Cauchy–Born energy density."""
        return 1.0 - self.beta(x)

    def classify(self, x: np.ndarray) -> np.ndarray:
        """Region code ``(n,)`` of each point.

        One of :data:`atomistic.regions.REGION_CORE`, ``REGION_HANDSHAKE``, ``REGION_PAD``
        and ``REGION_FAR``.
        """
        if self.balls:
            d, core, outer, atom = self.depth(x), 0.0, self.width, self.width + self.pad_width
        else:  # the radii themselves, so that a one-ball region keeps its sites bit for bit
            d, core, outer, atom = (
                self.distance(x),
                self.core_radius,
                self.outer_radius,
                self.atom_radius,
            )
        code = np.full(d.shape, REGION_FAR, dtype=np.int64)
        code[d <= atom] = REGION_PAD
        code[d < outer] = REGION_HANDSHAKE
        code[d <= core] = REGION_CORE
        return code

    def in_core(self, x: np.ndarray) -> np.ndarray:
        """``(n,)`` True where ``x`` ``(n, 2|3)`` lies in the core (``depth ≤ 0``, β = 1)."""
        return self.classify(x) == REGION_CORE

    def cells_in_core(self, points: np.ndarray) -> np.ndarray:
        """``(n_cells,)`` True for the cells whose given points all lie in the core.

        Args:
            points: ``(n_cells, n_points, 2|3)`` points of each cell in Å.

        Passed a mesh's quadrature points, these are the cells whose weight ``1 − β`` is zero
        at every quadrature point (vertices alone are not enough: a cell with a vertex just
        outside the core can have every quadrature point inside). The cells a grown region
        cuts from the mesh are a superset: :func:`coupling.core_cells.core_cells` also cuts
        those whose weight is below its floor.
        """
        v = np.asarray(points, dtype=np.float64)
        return self.in_core(v.reshape(-1, v.shape[-1])).reshape(v.shape[:-1]).all(axis=1)

    # -- growth ------------------------------------------------------------------------------
    def grow(self, *, centers: np.ndarray, radius: float) -> Handshake:
        """The region with core balls of ``radius`` around ``centers`` added.

        Args:
            centers: ``(m, 2|3)`` ball centres in Å (``z`` ignored for a cylinder).
            radius: their radius in Å.

        Returns:
            A new :class:`Handshake`; balls that already lie in the core
            (``depth(c) + radius ≤ 0``, since ``|∇ depth| ≤ 1``) and repeated centres are
            dropped (``self`` itself when none is left).

        Raises:
            ValueError: a non-positive radius or centres of the wrong shape.
        """
        c = _points(centers)
        if not radius > 0 or c.shape[1] not in (2, 3) or not np.all(np.isfinite(c)):
            raise ValueError(
                f"grow needs finite (m, 2|3) centres and radius > 0, got {c.shape}, {radius}"
            )
        if c.shape[1] == 2:
            c = np.column_stack([c, np.full(len(c), self.center[2])])
        if self.shape == "cylinder":
            c[:, 2] = self.center[2]
        c = c[self.depth(c) + radius > 0]
        _, first = np.unique(c[:, : self._k], axis=0, return_index=True)
        added = tuple(
            ((float(x), float(y), float(z)), float(radius)) for x, y, z in c[np.sort(first)]
        )
        if not added:
            return self
        return dataclasses.replace(self, balls=self.balls + added)
