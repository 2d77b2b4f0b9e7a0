"""Atomistic engine: crystals, neighbour lists, potentials, relaxation, Cauchy–Born.

=================  ==========================================================================
where              what
=================  ==========================================================================
``lattice``,       crystals in any orientation, regions (per-atom ``region`` codes), vacancies,
``regions``,       interstitials, voids
``defects``
``neighbours``     neighbour lists (vesin indices, torch vectors, skin reuse)
``potentials/``    the potential protocol, EAM, SW, pair, MACE, one registry of kinds
``mlip/``          network potentials, committees, training, datasets, oracles, validation
``calculator``     the ASE calculator of any potential
``relax``          FIRE and L-BFGS at fixed cell
``cauchy_born``    ``W``, ``P``, ``∂P/∂F`` batched over ``F``
``equilibrium``    the equilibrium lattice constant, plane spacings, vacancy formation energy
``stress``         per-atom first Piola (and Kirchhoff) stresses from edge gradients
``strain``         site strains of a displacement field and the strain error between two
``dislocation``    where a relaxed dislocation's partials sit (slip profile)
``device``         which torch device to use
=================  ==========================================================================

Never imports dolfinx, ufl, basix, petsc4py, ``continuum``, ``coupling`` or ``multiscale``
(DESIGN.md §4; ``tests/test_layering.py``).
"""

from atomistic import _moved
from atomistic.calculator import Calculator
from atomistic.cauchy_born import EV_PER_A3_TO_GPA, CauchyBorn, voigt_from_tangent
from atomistic.defects import interstitial, vacancy, void
from atomistic.device import DeviceError, resolve_device
from atomistic.lattice import (
    LATTICES,
    LatticeError,
    crystal,
    finite_cluster,
    rotation_from_orientation,
    unit_cell,
)
from atomistic.mlip import (
    ACSF,
    MLIP,
    ACSFSpec,
    Committee,
    DatasetError,
    LammpsCalculator,
    MomentDescriptor,
    MomentSpec,
    OracleSpec,
    TrainingConfig,
    TrainingResult,
    TrainingStateError,
    append_dataset,
    fine_tune,
    fit_calibration,
    force_spread,
    make_oracle,
    oracle_cutoff,
    read_dataset,
    save_potential,
    train,
    write_dataset,
)
from atomistic.neighbours import Graph, NeighbourList, build_graph
from atomistic.potentials import (
    EAM,
    EAMFileError,
    LennardJones,
    Morse,
    Potential,
    PotentialFileError,
    StillingerWeber,
    UnknownElementError,
    evaluate,
    find_potential_file,
    lammps_potentials_dir,
    load_potential,
    species_indices,
)
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
from atomistic.stress import site_stresses

_moved.install()


def __getattr__(name: str) -> object:
    """Renamed public names fail with a message that names the new one.

    An ImportError, not an AttributeError: ``from atomistic import old`` would replace an
    AttributeError by its own message, which does not name the new one.
    """
    new = _moved.RENAMED.get(name)
    if new is not None:
        raise ImportError(f"atomistic.{name} was renamed; use atomistic.{new}", name=name)
    raise AttributeError(f"module 'atomistic' has no attribute {name!r}")


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
    "DeviceError",
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
    "find_potential_file",
    "resolve_device",
    "rotation_from_orientation",
    "save_potential",
    "set_region",
    "site_stresses",
    "species_indices",
    "train",
    "unit_cell",
    "vacancy",
    "void",
    "voigt_from_tangent",
    "write_dataset",
]
