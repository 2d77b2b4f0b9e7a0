"""The estimate's normalisation ``D²`` (:mod:`coupling.estimator`) against a closed form.

``D² = Σ_i β_i |G_i − (F−I)|² + Σ_K n_K w_K |Ḡ_K − (F−I)|²`` is the solution's own defect
strain summed over the lattice sites of the domain, the atoms' share ``β`` and the
continuum's ``w = 1 − β`` splitting each site between them. For a homogeneous displacement
gradient ``A`` measured against a far field of ``F = I`` it is ``|A|²`` times the number of
lattice sites of the domain, ``t |Ω_domain| / Ω_0`` (``t`` the slab period in 2.5d, 1 in 3d),
whatever the handshake. In 2.5d the continuum problem's weight is ``t (1 − β)`` (it
integrates per Å of thickness); read as the share it counted the continuum's sites ``t``
times (4.4 for Cu's slab): that is what this test catches.
"""

import numpy as np
import pytest
from mpi4py import MPI

from atomistic import Cylinder, Sphere, finite_cluster
from continuum.geometry import Ball, Box, Disk
from continuum.mesh import graded_mesh
from continuum.problem import HyperelasticProblem
from coupling.estimator import Material, estimate
from coupling.handshake import Handshake
from coupling.system import build_coupled_system, homogeneous

A0 = 3.614925  # Cu_mishin1 stress-free lattice constant
GRADIENT = np.array([[0.004, 0.002, 0.0], [-0.001, 0.003, 0.0], [0.0, 0.0, 0.0]])


def _system(eam, law, mode):
    rc, comm = eam.cutoff, MPI.COMM_WORLD
    if mode == "2.5d":
        hs = Handshake(shape="cylinder", center=(0, 0, 0), core_radius=6.0, width=2 * rc,
                       pad_width=rc)
        region = Cylinder(center=(0, 0, 0), radius=hs.atom_radius + 1, axis=2)
        atoms = finite_cluster("fcc", element="Cu", a=A0, region=region, periodic_axes=(2,))
        outer = 40.0
        md = graded_mesh(comm=comm, outer=Disk(center=(0, 0), radius=outer),
                         hole=Disk(center=(0, 0), radius=6.0), focus_radius=hs.atom_radius,
                         h_min=2.5, h_max=8.0, growth=0.3)
        t = float(atoms.cell[2, 2])
        volume = np.pi * outer**2
    else:
        hs = Handshake(shape="sphere", center=(0, 0, 0), core_radius=2.0, width=2 * rc,
                       pad_width=rc)
        atoms = finite_cluster("fcc", element="Cu", a=A0,
                               region=Sphere(center=(0, 0, 0), radius=hs.atom_radius + 1))
        half = hs.atom_radius + 8.0
        md = graded_mesh(comm=comm, outer=Box(lo=(-half,) * 3, hi=(half,) * 3),
                         hole=Ball(center=(0, 0, 0), radius=2.0), focus_radius=hs.atom_radius,
                         h_min=3.0, h_max=10.0, growth=0.4)
        t = 1.0
        volume = (2 * half) ** 3
    problem = HyperelasticProblem(
        mesh_data=md, law=law, mode=mode, weight=lambda x: t * hs.continuum_weight(x)
    )
    system = build_coupled_system(potential=eam, atoms=atoms, handshake=hs, problem=problem,
                                  kappa=1.0, ghost_force_correction=True)
    return system, volume * t


@pytest.mark.parametrize("mode", ["2.5d", "3d"])
def test_defect_strain_of_a_homogeneous_gradient_counts_every_site_once(eam, law, mode):
    system, sites_volume = _system(eam, law, mode)
    F = np.eye(3) + GRADIENT
    system.set_boundary(homogeneous(F), predictor=homogeneous(F))
    system.z = system.state_from(homogeneous(F))
    omega = A0**3 / 4
    material = Material(strain=np.zeros((3, 3)), shear_modulus=0.34, r_cut=eam.cutoff,
                        r_nn=A0 / np.sqrt(2), volume_per_atom=omega, inradius=30.0)
    est = estimate(system, material=material)
    n_sites = sites_volume / omega
    expected = float(np.sum(GRADIENT**2)) * n_sites
    # the lattice sum of β against its integral and the polygonal disk: a few per cent
    assert est.norm2 == pytest.approx(expected, rel=0.04)
