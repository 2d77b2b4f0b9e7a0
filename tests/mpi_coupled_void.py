"""A 2.5D void in Cu solved by the coupled method; run under mpiexec by test_coupling.py.

Prints one line ``RESULT <energy> <converged> <max |u|>`` on rank 0 and saves the free/pad
atom displacements to the path given as the first argument.
"""

import sys

import dolfinx_solver  # noqa: F401
import numpy as np
from mpi4py import MPI

from atomistic import EAM, CauchyBorn, Cylinder, finite_cluster, unit_cell
from continuum.geometry import Disk
from continuum.mesh import graded_mesh
from continuum.problem import HyperelasticProblem
from coupling.handshake import Handshake
from coupling.solver import SolverOptions
from coupling.system import build_coupled_system, homogeneous

A0 = 3.614925
comm = MPI.COMM_WORLD
eam = EAM.from_file("Cu_mishin1.eam.alloy")
law = CauchyBorn(eam, unit_cell("fcc", element="Cu", a=A0))
rc = eam.cutoff
hs = Handshake(shape="cylinder", center=(0, 0, 0), core_radius=12.0, width=2 * rc, pad_width=rc)
region = Cylinder(center=(0, 0, 0), radius=hs.atom_radius + 1, axis=2)
perfect = finite_cluster("fcc", element="Cu", a=A0, region=region, periodic_axes=(2,))
atoms = perfect[np.linalg.norm(perfect.positions[:, :2], axis=1) > 3.0]
md = graded_mesh(
    comm=comm,
    outer=Disk(center=(0, 0), radius=80.0),
    hole=Disk(center=(0, 0), radius=hs.core_radius),
    focus_radius=hs.atom_radius,
    h_min=2.5,
    h_max=15.0,
    growth=0.3,
)
thickness = atoms.cell[2, 2]  # the 2D continuum is per Å; the atoms are one slab period
problem = HyperelasticProblem(
    mesh_data=md, law=law, mode="2.5d", weight=lambda x: thickness * hs.continuum_weight(x)
)
system = build_coupled_system(
    potential=eam, atoms=atoms, handshake=hs, problem=problem, kappa=1.0, perfect_atoms=perfect
)
F = np.diag([0.98, 1.01, 1.0])
system.set_boundary(homogeneous(F), predictor=homogeneous(F))
system.z = system.state_from(homogeneous(F))
result = system.solve(SolverOptions(fmax=1e-8))
u = system.atom_displacements()
if comm.rank == 0:
    np.save(sys.argv[1], u)
    print("RESULT", repr(result.energy), result.converged, np.abs(u).max(), flush=True)
