"""Finite-element continuum: graded meshes, quadrature-point material, hyperelastic problem.

Never imports torch, atomistic or coupling (DESIGN.md §4): constitutive laws reach the
continuum as plain callables ``law(F) -> (W, P, A)`` on numpy arrays.
"""

from continuum.geometry import Ball, Box, Disk, GeometryError, Rectangle, Shape
from continuum.laws import (
    ConstitutiveLaw,
    LinearElasticLaw,
    isotropic_stiffness,
    rotate_voigt,
    stiffness_tensor,
    voigt_matrix,
)
from continuum.material import LawError, QuadratureMaterial
from continuum.mesh import INNER_TAG, OUTER_TAG, MeshData, MeshError, graded_mesh
from continuum.newton import NewtonError, newton_solve
from continuum.output import write_fields
from continuum.problem import HyperelasticProblem

__all__ = [
    "INNER_TAG",
    "OUTER_TAG",
    "Ball",
    "Box",
    "ConstitutiveLaw",
    "Disk",
    "GeometryError",
    "HyperelasticProblem",
    "LawError",
    "LinearElasticLaw",
    "MeshData",
    "MeshError",
    "NewtonError",
    "QuadratureMaterial",
    "Rectangle",
    "Shape",
    "graded_mesh",
    "isotropic_stiffness",
    "newton_solve",
    "rotate_voigt",
    "stiffness_tensor",
    "voigt_matrix",
    "write_fields",
]
