"""Handshake geometry and the blending function β.

The atomistic region is a ball (3D) or a cylinder along ``z`` (2.5D slabs) around
``center``. With ``d`` the distance from the centre (in the ``x–y`` plane for a cylinder),

=============  =====================================  =====================
region         where                                  β
=============  =====================================  =====================
core           ``d ≤ R``                              1
handshake      ``R < d < R + w``                      ``1 − s(t)``, ``t = (d − R)/w``
pad            ``R + w ≤ d ≤ R + w + p``              0 (slaved to the FE field)
far            beyond                                 no atoms
=============  =====================================  =====================

``s(t) = 10t³ − 15t⁴ + 6t⁵`` (smootherstep), so β is C² in ``d``. The continuum carries
``1 − β``; its mesh has a hole of radius ``R`` (``β = 1`` there, so no FE energy is lost).
The pad is at least ``r_cut`` wide, so every atom with ``β > 0`` sees a full neighbourhood.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from atomistic.regions import REGION_CORE, REGION_FAR, REGION_HANDSHAKE, REGION_PAD

__all__ = ["Handshake", "smootherstep"]


def smootherstep(t: np.ndarray) -> np.ndarray:
    """``s(t) = 10t³ − 15t⁴ + 6t⁵`` on ``[0, 1]``, clamped outside (C² at both ends)."""
    t = np.clip(t, 0.0, 1.0)
    return t * t * t * (10.0 + t * (-15.0 + 6.0 * t))


@dataclass(frozen=True, kw_only=True)
class Handshake:
    """Geometry of the atomistic core, the blended handshake and the pad.

    Attributes:
        shape: ``"sphere"`` (3D) or ``"cylinder"`` (2.5D; axis along ``z``).
        center: ``(3,)`` centre in Å (``z`` ignored for a cylinder).
        core_radius: ``R`` in Å, where ``β = 1``.
        width: handshake width ``w`` in Å (``w ≥ 2 r_cut`` is advised).
        pad_width: ``p`` in Å, at least the potential cutoff.
    """

    shape: str
    center: tuple[float, float, float]
    core_radius: float
    width: float
    pad_width: float

    def __post_init__(self) -> None:
        if self.shape not in ("sphere", "cylinder"):
            raise ValueError(f"handshake shape must be 'sphere' or 'cylinder', got {self.shape!r}")
        if self.core_radius < 0 or self.width <= 0 or self.pad_width <= 0:
            raise ValueError(
                "handshake needs core_radius >= 0, width > 0 and pad_width > 0 (Å), got "
                f"{self.core_radius}, {self.width}, {self.pad_width}"
            )

    @property
    def outer_radius(self) -> float:
        """``R + w``: where β reaches 0."""
        return self.core_radius + self.width

    @property
    def atom_radius(self) -> float:
        """``R + w + p``: the radius of the atomistic set (core, handshake and pad)."""
        return self.core_radius + self.width + self.pad_width

    def distance(self, x: np.ndarray) -> np.ndarray:
        """Distance ``(n,)`` in Å of points ``x`` ``(n, 2|3)`` from the centre (axis)."""
        x = np.atleast_2d(np.asarray(x, dtype=np.float64))
        c = np.asarray(self.center, dtype=np.float64)
        k = 2 if self.shape == "cylinder" else 3
        return np.linalg.norm(x[:, :k] - c[:k], axis=1)

    def beta(self, x: np.ndarray) -> np.ndarray:
        """Blending weight ``β`` ``(n,)`` at points ``x`` ``(n, 2|3)``."""
        t = (self.distance(x) - self.core_radius) / self.width
        return 1.0 - smootherstep(t)

    def continuum_weight(self, x: np.ndarray) -> np.ndarray:
        """``1 − β`` ``(n,)``: the weight of the Cauchy–Born energy density."""
        return 1.0 - self.beta(x)

    def classify(self, x: np.ndarray) -> np.ndarray:
        """Region code ``(n,)`` of each point.

        One of :data:`atomistic.regions.REGION_CORE`, ``REGION_HANDSHAKE``, ``REGION_PAD``
        and ``REGION_FAR``.
        """
        d = self.distance(x)
        code = np.full(d.shape, REGION_FAR, dtype=np.int64)
        code[d <= self.atom_radius] = REGION_PAD
        code[d < self.outer_radius] = REGION_HANDSHAKE
        code[d <= self.core_radius] = REGION_CORE
        return code
