"""Atomistic engine: crystals, neighbour lists, torch potentials, relaxation, Cauchy–Born.

Never imports dolfinx, ufl, basix or petsc4py (DESIGN.md §4).
"""

from atomistic.acsf import ACSF, ACSFSpec
from atomistic.calculator import Calculator, default_device
from atomistic.cauchy_born import EV_PER_A3_TO_GPA, CauchyBorn, voigt_from_tangent
from atomistic.committee import Committee, fit_calibration, force_spread
from atomistic.dataset import DatasetError, append_dataset, read_dataset, write_dataset
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
from atomistic.mlip import MLIP
from atomistic.moments import MomentDescriptor, MomentSpec
from atomistic.neighbours import Graph, NeighbourList, build_graph
from atomistic.oracles import (
    LammpsCalculator,
    OracleSpec,
    lammps_potentials_dir,
    make_oracle,
    oracle_cutoff,
    resolve_potential_file,
)
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
from atomistic.serialization import PotentialFileError, load_potential, save_potential
from atomistic.sw import StillingerWeber
from atomistic.training import (
    TrainingConfig,
    TrainingResult,
    TrainingStateError,
    fine_tune,
    train,
)

__all__ = [
    "ACSF",
    "EAM",
    "EV_PER_A3_TO_GPA",
    "LATTICES",
    "MLIP",
    "REGION_CORE",
    "REGION_FAR",
    "REGION_HANDSHAKE",
    "REGION_NAMES",
    "REGION_PAD",
    "ACSFSpec",
    "Box",
    "Calculator",
    "CauchyBorn",
    "Committee",
    "Cylinder",
    "DatasetError",
    "EAMFileError",
    "Graph",
    "LammpsCalculator",
    "LatticeError",
    "LennardJones",
    "MomentDescriptor",
    "MomentSpec",
    "Morse",
    "NeighbourList",
    "OracleSpec",
    "Potential",
    "PotentialFileError",
    "Region",
    "RelaxResult",
    "Sphere",
    "StillingerWeber",
    "TrainingConfig",
    "TrainingStateError",
    "TrainingResult",
    "UnknownElementError",
    "append_dataset",
    "build_graph",
    "carve",
    "crystal",
    "default_device",
    "evaluate",
    "fine_tune",
    "finite_cluster",
    "fit_calibration",
    "force_spread",
    "interstitial",
    "lammps_potentials_dir",
    "load_potential",
    "make_oracle",
    "oracle_cutoff",
    "read_dataset",
    "relax",
    "resolve_potential_file",
    "rotation_from_orientation",
    "save_potential",
    "set_region",
    "species_indices",
    "train",
    "unit_cell",
    "vacancy",
    "void",
    "voigt_from_tangent",
    "write_dataset",
]
