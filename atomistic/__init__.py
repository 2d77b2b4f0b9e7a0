"""Atomistic engine: crystals, neighbour lists, torch potentials, relaxation, Cauchy–Born.

Never imports dolfinx, ufl, basix or petsc4py (DESIGN.md §4).
"""

from atomistic.calculator import Calculator, default_device
from atomistic.cauchy_born import EV_PER_A3_TO_GPA, CauchyBorn, voigt_from_tangent
from atomistic.defects import interstitial, vacancy, void
from atomistic.eam import EAM, EAMFileError
from atomistic.lattice import (
    LATTICES,
    LatticeError,
    crystal,
    finite_cluster,
    rotation_from_orientation,
    unit_cell,
)
from atomistic.neighbours import Graph, NeighbourList, build_graph
from atomistic.oracles import LammpsCalculator, lammps_potentials_dir, resolve_potential_file
from atomistic.pair import LennardJones, Morse
from atomistic.potential import Potential, UnknownElementError, evaluate, species_indices
from atomistic.regions import (
    REGION_CORE,
    REGION_FAR,
    REGION_HANDSHAKE,
    REGION_NAMES,
    REGION_PAD,
    Box,
    Cylinder,
    Region,
    Sphere,
    carve,
    set_region,
)
from atomistic.relax import RelaxResult, relax
from atomistic.sw import StillingerWeber

__all__ = [
    "EAM",
    "EV_PER_A3_TO_GPA",
    "LATTICES",
    "REGION_CORE",
    "REGION_FAR",
    "REGION_HANDSHAKE",
    "REGION_NAMES",
    "REGION_PAD",
    "Box",
    "Calculator",
    "CauchyBorn",
    "Cylinder",
    "EAMFileError",
    "Graph",
    "LammpsCalculator",
    "LatticeError",
    "LennardJones",
    "Morse",
    "NeighbourList",
    "Potential",
    "Region",
    "RelaxResult",
    "Sphere",
    "StillingerWeber",
    "UnknownElementError",
    "build_graph",
    "carve",
    "crystal",
    "default_device",
    "evaluate",
    "finite_cluster",
    "interstitial",
    "lammps_potentials_dir",
    "relax",
    "resolve_potential_file",
    "rotation_from_orientation",
    "set_region",
    "species_indices",
    "unit_cell",
    "vacancy",
    "void",
    "voigt_from_tangent",
]
