"""The estimate (:mod:`coupling.estimator`) against closed forms.

**Normalisation.**

``D² = Σ_i β_i |G_i − (F−I)|² + Σ_K n_K w_K |Ḡ_K − (F−I)|²`` is the solution's own defect
strain summed over the lattice sites of the domain, the atoms' share ``β`` and the
continuum's ``w = 1 − β`` splitting each site between them. For a homogeneous displacement
gradient ``A`` measured against a far field of ``F = I`` it is ``|A|²`` times the number of
lattice sites of the domain, ``t |Ω_domain| / Ω_0`` (``t`` the slab period in 2.5d, 1 in 3d),
whatever the handshake. In 2.5d the continuum problem's weight is ``t (1 − β)`` (it
integrates per Å of thickness); read as the share it counted the continuum's sites ``t``
times (4.4 for Cu's slab): that is what the first test catches.

**Projected error.** At ``F X`` (the patch test: an equilibrium of both the coupled and the
atomistic energy) plus a small displacement ``δ`` of a few atoms deep in the core (more than
``2 r_cut`` from the handshake, where ``H_c = H_a``), the atomistic energy's gradient is
``H_a δ`` to first order, the Newton direction ``−H_c⁻¹ H_a δ = −δ``, and its step length
from the atomistic curvature 1: ``e* = −δ``, whose site strain is known.
"""

import numpy as np
import pytest
from mpi4py import MPI

from atomistic import Cylinder, Sphere, finite_cluster
from atomistic.strain import SHELL_FACTOR, site_gradients
from continuum.geometry import Ball, Box, Disk
from continuum.mesh import graded_mesh
from continuum.problem import HyperelasticProblem
from coupling.estimator import Material, estimate, projected_error
from coupling.handshake import Handshake
from coupling.system import build_coupled_system, homogeneous

A0 = 3.614925  # Cu_mishin1 stress-free lattice constant
GRADIENT = np.array([[0.004, 0.002, 0.0], [-0.001, 0.003, 0.0], [0.0, 0.0, 0.0]])


def _system(eam, law, mode, core=None, outer=40.0):
    """A coupled disk (2.5d, core 6 Å) or box (3d, core 2 Å) at zero displacement, and the
    number of lattice sites of its domain times the site volume."""
    rc, comm = eam.cutoff, MPI.COMM_WORLD
    if core is None:
        core = 6.0 if mode == "2.5d" else 2.0
    perfect = None
    if mode == "2.5d":
        hs = Handshake(
            shape="cylinder", center=(0, 0, 0), core_radius=core, width=2 * rc, pad_width=rc
        )
        region = Cylinder(center=(0, 0, 0), radius=hs.atom_radius + 1, axis=2)
        atoms = finite_cluster("fcc", element="Cu", a=A0, region=region, periodic_axes=(2,))
        wide = Cylinder(center=(0, 0, 0), radius=hs.atom_radius + 1 + rc, axis=2)
        perfect = finite_cluster("fcc", element="Cu", a=A0, region=wide, periodic_axes=(2,))
        md = graded_mesh(
            comm=comm,
            outer=Disk(center=(0, 0), radius=outer),
            hole=Disk(center=(0, 0), radius=core),
            focus_radius=hs.atom_radius,
            h_min=2.5,
            h_max=8.0,
            growth=0.3,
        )
        t = float(atoms.cell[2, 2])
        volume = np.pi * outer**2
    else:
        hs = Handshake(
            shape="sphere", center=(0, 0, 0), core_radius=core, width=2 * rc, pad_width=rc
        )
        atoms = finite_cluster(
            "fcc", element="Cu", a=A0, region=Sphere(center=(0, 0, 0), radius=hs.atom_radius + 1)
        )
        perfect = finite_cluster(
            "fcc",
            element="Cu",
            a=A0,
            region=Sphere(center=(0, 0, 0), radius=hs.atom_radius + 1 + rc),
        )
        half = hs.atom_radius + 8.0
        md = graded_mesh(
            comm=comm,
            outer=Box(lo=(-half,) * 3, hi=(half,) * 3),
            hole=Ball(center=(0, 0, 0), radius=core),
            focus_radius=hs.atom_radius,
            h_min=3.0,
            h_max=10.0,
            growth=0.4,
        )
        t = 1.0
        volume = (2 * half) ** 3
    problem = HyperelasticProblem(
        mesh_data=md, law=law, mode=mode, weight=lambda x: t * hs.continuum_weight(x)
    )
    system = build_coupled_system(
        potential=eam,
        atoms=atoms,
        handshake=hs,
        problem=problem,
        kappa=1.0,
        ghost_force_correction=True,
        perfect_atoms=perfect,
    )
    return system, volume * t


@pytest.mark.parametrize("mode", ["2.5d", "3d"])
def test_defect_strain_of_a_homogeneous_gradient_counts_every_site_once(eam, law, mode):
    system, sites_volume = _system(eam, law, mode)
    F = np.eye(3) + GRADIENT
    system.set_boundary(homogeneous(F), predictor=homogeneous(F))
    system.z = system.state_from(homogeneous(F))
    omega = A0**3 / 4
    material = Material(
        strain=np.zeros((3, 3)),
        shear_modulus=0.34,
        r_cut=eam.cutoff,
        r_nn=A0 / np.sqrt(2),
        volume_per_atom=omega,
        inradius=30.0,
    )
    est = estimate(system, material=material)
    n_sites = sites_volume / omega
    expected = float(np.sum(GRADIENT**2)) * n_sites
    # the lattice sum of β against its integral and the polygonal disk: a few per cent
    assert est.norm2 == pytest.approx(expected, rel=0.04)


@pytest.mark.parametrize("mode", ["2.5d", "3d"])
def test_projected_error_of_a_displaced_core_is_that_displacement(eam, law, mode):
    system, _ = _system(eam, law, mode, core=14.0, outer=50.0)
    F = np.eye(3) + np.array([[0.01, 0.0, 0.0], [0.0, -0.005, 0.0], [0.0, 0.0, 0.0]])
    if mode == "3d":
        F[2, 2] += 0.003
    system.set_boundary(homogeneous(F), predictor=homogeneous(F))
    system.z = system.state_from(homogeneous(F))
    X = system.positions[: system.n_free]
    k = 2 if mode == "2.5d" else 3
    near = np.linalg.norm(X[:, :k], axis=1) < 2.7  # 2.7 + 2 r_cut < 14 Å: deep in the core
    assert near.sum() >= 2
    delta = np.zeros_like(X)
    rng = np.random.default_rng(3)
    delta[near] = 1e-3 * rng.standard_normal((int(near.sum()), 3))
    u = system.model.layout.atoms_of(system.z)
    system.set_atom_displacements(u + delta)
    material = Material(
        strain=F - np.eye(3),
        shear_modulus=0.34,
        r_cut=eam.cutoff,
        r_nn=A0 / np.sqrt(2),
        volume_per_atom=A0**3 / 4,
        inradius=40.0,
    )
    from continuum.estimator import cell_indicators

    system.model.layout.fe_of(system.z, out=system.problem.u)
    centroid = cell_indicators(system.problem).centroid
    p = projected_error(system, material, centroid)
    assert p is not None
    assert p.alpha == pytest.approx(1.0, abs=2e-3)
    assert p.max_displacement == pytest.approx(np.linalg.norm(delta, axis=1).max(), rel=2e-3)
    period = system.slab_period
    cell = None if period is None else np.diag([1.0, 1.0, period])
    G = site_gradients(
        system.positions,
        np.vstack([delta, np.zeros((len(system.positions) - system.n_free, 3))]),
        cutoff=SHELL_FACTOR * A0 / np.sqrt(2),
        cell=cell,
        pbc=(False, False, period is not None),
    )
    expected = float(np.sum(G[: system.n_free] ** 2))
    assert float(np.sum(p.atoms)) == pytest.approx(expected, rel=5e-3)
    # everything is charged to some cell, and the FE field hardly moves
    assert float(np.sum(p.cells)) == pytest.approx(expected, rel=5e-3)


def _dilatation_mesh(law, mode):
    """A graded mesh around a hole (radius 8 Å) with the P1 interpolant of a point
    dilatation's displacement ``u = c x / r^d`` (``d`` = 3; 2 in 2.5d) set on it."""
    comm = MPI.COMM_WORLD
    if mode == "3d":
        outer, hole, d = Box(lo=(-24.0,) * 3, hi=(24.0,) * 3), Ball(center=(0, 0, 0), radius=8.0), 3
    else:
        outer, hole, d = Disk(center=(0, 0), radius=24.0), Disk(center=(0, 0), radius=8.0), 2
    md = graded_mesh(
        comm=comm, outer=outer, hole=hole, focus_radius=12.0, h_min=1.5, h_max=4.0, growth=0.3
    )
    problem = HyperelasticProblem(
        mesh_data=md, law=law, mode=mode, weight=lambda x: np.ones(len(x))
    )

    def u(x):
        out = np.zeros_like(x)
        r = np.linalg.norm(x[:d], axis=0)
        out[:d] = 10.0 * x[:d] / r**d
        return out

    problem.u.interpolate(u)
    return problem, u, d


def _analytic_slope2(u, d, x):
    """``|∇∇u|²`` at points ``x`` ``(n, 3)``, by central differences of the closed form."""
    eps = 1e-3

    def grad(p):
        G = np.zeros((len(p), 3, 3))
        for j in range(d):
            step = np.zeros((3, 1))
            step[j] = eps
            G[:, :, j] = ((u(p.T + step) - u(p.T - step)) / (2 * eps)).T
        return G

    out = np.zeros(len(x))
    for k in range(d):
        step = np.zeros(3)
        step[k] = eps
        out += np.sum(((grad(x + step) - grad(x - step)) / (2 * eps)) ** 2, axis=(1, 2))
    return out


@pytest.mark.parametrize("mode", ["2.5d", "3d"])
def test_cauchy_born_slope_of_a_point_dilatation(law, mode):
    """The Cauchy–Born term's ``|∇G|² |K|`` against a closed-form field's.

    Away from the hole and the outer boundary (where a vertex patch is one-sided), summed over
    the cells: the 2D facet jumps (what ``c_cb`` was fitted with; 1.16 times the closed form
    here) and the 3D recovered slope (1.24) read the same ``|∇G|²`` within a few tens of per
    cent; the 3D facet jumps read it larger (1.50 here; 1.7 on the void bench's mesh), which
    is why 3D does not use them.
    """
    from continuum.estimator import cell_indicators
    from coupling.estimator import _gradient_jump

    problem, u, d = _dilatation_mesh(law, mode)
    cells = cell_indicators(problem)
    r = np.linalg.norm(cells.centroid[:, :d], axis=1)
    far = np.max(np.abs(cells.centroid[:, :d]), axis=1) if mode == "3d" else r
    inner = (r > 11.0) & (far < 20.0)
    exact = float(np.sum(_analytic_slope2(u, d, cells.centroid[inner]) * cells.volume[inner]))
    used = float(np.sum(_gradient_jump(problem, cells)[inner]))
    assert 0.9 * exact < used < 1.35 * exact
    if mode == "3d":  # here 1.50 against 1.24 for the recovered slope
        assert float(np.sum(cells.gradient_jump[inner])) > 1.4 * exact
