"""Potentials: the site-energy protocol, the classical potentials and one registry of kinds.

``Potential`` (:mod:`~atomistic.potentials.protocol`) is what every potential provides;
EAM, Stillinger–Weber, Lennard-Jones/Morse and MACE implement it here, the network
potentials in :mod:`atomistic.mlip`. :func:`load_potential` reads any of them from a file
(:mod:`~atomistic.potentials.registry`); :func:`find_potential_file` finds the file.
"""

from atomistic.potentials.eam import EAM, EAMFileError
from atomistic.potentials.files import (
    PotentialFileNotFoundError,
    find_potential_file,
    lammps_potentials_dir,
)
from atomistic.potentials.pair import LennardJones, Morse
from atomistic.potentials.protocol import (
    Potential,
    PotentialFileError,
    UnknownElementError,
    evaluate,
    interaction_range,
    species_indices,
)
from atomistic.potentials.registry import POTENTIAL_KINDS, PotentialKind, load_potential
from atomistic.potentials.sw import StillingerWeber

__all__ = [
    "EAM",
    "POTENTIAL_KINDS",
    "EAMFileError",
    "LennardJones",
    "Morse",
    "Potential",
    "PotentialFileError",
    "PotentialFileNotFoundError",
    "PotentialKind",
    "StillingerWeber",
    "UnknownElementError",
    "evaluate",
    "find_potential_file",
    "interaction_range",
    "lammps_potentials_dir",
    "load_potential",
    "species_indices",
]
