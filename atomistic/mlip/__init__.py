"""Machine-learned potentials: networks, descriptors, committees, training and their data.

==========================  ===============================================================
module                      what it holds
==========================  ===============================================================
``network``                 :class:`MLIP` (one network per element on a descriptor)
``acsf``, ``moments``       the descriptors (Behler–Parrinello ACSF, moment tensors)
``radial``                  what both descriptors share: cutoff functions, G2, settings
``jacobian``                descriptor Jacobians for force training
``moment_kernels``          the moment descriptor compiled (numba), first two derivatives
``moment_autograd``         autograd functions over those kernels
``hessian``                 Hessian-vector products of a network potential (Newton–Krylov)
``committee``               :class:`Committee`: members in one batched pass, calibrated spread
``serialization``           save and load network potentials (``.pt``)
``batches``                 labelled frames turned into training batches
``training``                force matching, fine-tuning with replay, resumable state
``configurations``          generators of training configurations
``oracles``                 reference calculators (LAMMPS, EMT, any ASE calculator)
``dataset``                 labelled extended-XYZ datasets
``validation``              a potential against an oracle: RMSEs, constants, defects, surfaces
==========================  ===============================================================
"""

from atomistic.mlip.acsf import ACSF, ACSFSpec
from atomistic.mlip.committee import Committee, fit_calibration, force_spread
from atomistic.mlip.dataset import DatasetError, append_dataset, read_dataset, write_dataset
from atomistic.mlip.moments import MomentDescriptor, MomentSpec
from atomistic.mlip.network import MLIP, NetworkPotential
from atomistic.mlip.oracles import LammpsCalculator, OracleSpec, make_oracle, oracle_cutoff
from atomistic.mlip.serialization import load_network, save_potential
from atomistic.mlip.training import (
    TrainingConfig,
    TrainingResult,
    TrainingStateError,
    fine_tune,
    train,
)

__all__ = [
    "ACSF",
    "MLIP",
    "ACSFSpec",
    "Committee",
    "DatasetError",
    "LammpsCalculator",
    "MomentDescriptor",
    "MomentSpec",
    "NetworkPotential",
    "OracleSpec",
    "TrainingConfig",
    "TrainingResult",
    "TrainingStateError",
    "append_dataset",
    "fine_tune",
    "fit_calibration",
    "force_spread",
    "load_network",
    "make_oracle",
    "oracle_cutoff",
    "read_dataset",
    "save_potential",
    "train",
    "write_dataset",
]
