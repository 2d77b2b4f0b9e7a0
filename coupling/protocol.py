"""What the ghost-force correction and the state transfer need of a coupled system.

:class:`~coupling.system.CoupledSystem` provides it; typing against this protocol keeps
:mod:`coupling.correction` and :mod:`coupling.state` free of an import of the system that
imports them.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
from petsc4py import PETSc

from continuum.problem import HyperelasticProblem
from coupling.fields import Background, Displacement
from coupling.model import BlendedModel

__all__ = ["SystemView"]


class SystemView(Protocol):
    """The parts of a coupled system that its correction and its state use."""

    model: BlendedModel
    problem: HyperelasticProblem
    z: PETSc.Vec
    predictor: PETSc.Vec | None
    boundary: tuple[Displacement, Displacement] | None
    background: Background | None

    @property
    def positions(self) -> np.ndarray:
        """``(n_A + n_P, 3)`` reference sites, free atoms first."""
        ...

    @property
    def beta(self) -> np.ndarray:
        """``(n_A + n_P,)`` blending weights."""
        ...

    @property
    def n_free(self) -> int:
        """Number of free atoms."""
        ...

    @property
    def slab_period(self) -> float | None:
        """Period along ``z`` of a slab (2.5D), None otherwise."""
        ...

    def set_boundary(self, displacement: Displacement, *, predictor: Displacement) -> None:
        """Impose the boundary values and reset the ghost-force correction."""
        ...

    def set_background(self, background: Background | None) -> None:
        """Carry a prescribed displacement field that the FE unknown corrects, or None."""
        ...
