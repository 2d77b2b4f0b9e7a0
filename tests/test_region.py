"""A general atomistic region: a smooth union of balls (disks) grown along a glide plane.

Checks against independent answers: today's one-ball formulas written out here, a brute-force
smooth and hard minimum over every ball, the convergence of finite differences (a kink does
not converge), and the patch test of a coupled system whose core is not a ball.
"""

import dataclasses
import pathlib

import dolfinx
import numpy as np
import pytest
import ufl
from mpi4py import MPI
from scipy.spatial import cKDTree

from atomistic import Cylinder, finite_cluster
from atomistic.regions import REGION_CORE, REGION_FAR, REGION_HANDSHAKE, REGION_PAD
from continuum.geometry import Disk
from continuum.mesh import INNER_TAG, OUTER_TAG, MeshData, graded_mesh
from continuum.problem import HyperelasticProblem
from coupling.core_cells import WEIGHT_FLOOR, cells_holding, core_cells
from coupling.handshake import Handshake, smootherstep
from coupling.solver import SolverOptions
from coupling.system import build_coupled_system, homogeneous

ROOT = pathlib.Path(__file__).resolve().parents[1]
A0 = 3.614925  # Cu_mishin1 stress-free lattice constant (tests/test_cauchy_born.py)
TAU = 0.25


def brute_force(hs, x):
    """Hard and smooth minimum of ``|x − c_i| − r_i`` over every ball, written out."""
    k = 2 if hs.shape == "cylinder" else 3
    d = np.linalg.norm(x[:, None, :k] - hs.ball_centers[None, :, :k], axis=2) - hs.ball_radii
    hard = d.min(axis=1)
    soft = hard - hs.softness * np.log(np.exp(-(d - hard[:, None]) / hs.softness).sum(axis=1))
    return hard, soft


# -- geometry ------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", ["sphere", "cylinder"])
def test_one_ball_region_is_todays_ball_bit_for_bit(shape, rng):
    R, w, p = 5.0, 4.0, 2.0
    hs = Handshake(shape=shape, center=(1.0, -2.0, 0.5), core_radius=R, width=w, pad_width=p)
    k = 2 if shape == "cylinder" else 3
    x = rng.uniform(-15, 15, (5000, 3))
    # points exactly on the three radii along x (d computed as below: exact)
    edges = np.array([[1.0 + r, -2.0, 0.5] for r in (R, R + w, R + w + p)])
    x = np.vstack([x, edges])
    d = np.linalg.norm(x[:, :k] - np.array([1.0, -2.0, 0.5])[:k], axis=1)
    old_code = np.full(len(x), REGION_FAR)
    old_code[d <= R + w + p] = REGION_PAD
    old_code[d < R + w] = REGION_HANDSHAKE
    old_code[d <= R] = REGION_CORE
    np.testing.assert_array_equal(hs.depth(x), d - R)
    np.testing.assert_array_equal(hs.beta(x), 1.0 - smootherstep((d - R) / w))
    np.testing.assert_array_equal(hs.classify(x), old_code)
    assert hs.classify(edges).tolist() == [REGION_CORE, REGION_PAD, REGION_PAD]
    np.testing.assert_array_equal(hs.in_core(x), d <= R)
    assert hs.reach == hs.atom_radius == R + w + p
    # a ball inside the first one is no growth: the same region
    assert hs.grow(centers=np.array([[2.0, -2.0, 0.5]]), radius=R - 1.0) is hs


def test_depth_of_a_union_is_the_smooth_minimum_within_tau_log_m_of_the_hard_one(rng):
    hs = Handshake(shape="sphere", center=(0, 0, 0), core_radius=5.0, width=4.0, pad_width=2.0)
    hs = hs.grow(centers=np.array([[4.0, 0, 0], [-3.0, 3.0, 0], [0, 0, 4.5]]), radius=3.0)
    assert hs.n_balls == 4
    x = np.vstack([rng.uniform(-14, 14, (4000, 3)), rng.uniform(-300, 300, (500, 3))])
    hard, soft = brute_force(hs, x)
    depth = hs.depth(x)
    m = hs.n_balls
    assert np.all(depth <= hard + 1e-12) and np.all(depth >= hard - TAU * np.log(m) - 1e-12)
    # the exact smooth minimum wherever it could be within the pad; the hard one beyond
    near = hard - TAU * np.log(m) <= hs.width + hs.pad_width
    assert near.sum() > 1000 and (~near).sum() > 400
    np.testing.assert_allclose(depth[near], soft[near], rtol=0, atol=1e-12)
    np.testing.assert_array_equal(depth[~near], hard[~near])
    assert np.all(depth[~near] > hs.width + hs.pad_width)  # far either way
    # every point of the core, handshake or pad lies within reach of the centre
    assert np.all(np.linalg.norm(x[hs.classify(x) != REGION_FAR], axis=1) <= hs.reach)
    assert hs.reach == pytest.approx(4.5 + 3.0 + 6.0 + TAU * np.log(4), abs=1e-12)


def _kink(f, x0, direction, h):
    """Largest step of the first and second finite-difference derivatives of ``f`` on a line."""
    s = np.arange(-1.5, 1.5 + h / 2, h)
    y = f(x0 + s[:, None] * direction)
    d1 = np.diff(y) / h
    d2 = np.diff(d1) / h
    return np.abs(np.diff(d1)).max(), np.abs(np.diff(d2)).max()


def test_beta_is_c2_across_the_seam_of_two_balls():
    """Across the crease where two spheres meet, β's difference quotients converge (no kink)."""
    hs = Handshake(shape="sphere", center=(-4.0, 0, 0), core_radius=5.0, width=4.0, pad_width=2.0)
    hs = hs.grow(centers=np.array([[4.0, 0.0, 0.0]]), radius=5.0)
    # a line in the handshake (hard depth 0.6–1.4 Å) crossing the seam plane x = 0
    x0, direction = np.array([0.0, 5.0, 0.0]), np.array([1.0, 0.0, 0.0])

    def hard_beta(x):
        return 1.0 - smootherstep(brute_force(hs, x)[0] / hs.width)

    coarse, fine = _kink(hs.beta, x0, direction, 1e-3), _kink(hs.beta, x0, direction, 1e-4)
    hard_coarse, hard_fine = (_kink(hard_beta, x0, direction, h) for h in (1e-3, 1e-4))
    # the hard minimum has a kink: its slope jumps by the same amount at any step
    assert hard_fine[0] > 0.05 and hard_fine[0] > 0.9 * hard_coarse[0]
    # the smooth one: slope and curvature steps shrink with the step (C¹, C²)
    assert coarse[0] < 5e-3 and fine[0] < 0.2 * coarse[0], (coarse, fine)
    assert fine[1] < 0.2 * coarse[1], (coarse, fine)


def test_classify_codes_and_cells_in_core():
    hs = Handshake(shape="cylinder", center=(0, 0, 0), core_radius=5.0, width=4.0, pad_width=2.0)
    hs = hs.grow(centers=np.array([[40.0, 0.0, 7.0]]), radius=3.0)  # far apart: soft = hard
    assert hs.balls == (((40.0, 0.0, 0.0), 3.0),)  # z of a disk is the axis's
    x = np.array(
        [[0, 0, 9], [4.9, 0, 0], [7, 0, 0], [10, 0, 0], [12, 0, 0], [20, 0, 0]]
        + [[40, 2.9, -3], [40, 5, 0], [40, 8.5, 0], [40, 9.5, 0]],
        dtype=float,
    )
    np.testing.assert_allclose(hs.depth(x), [-5, -0.1, 2, 5, 7, 15, -0.1, 2, 5.5, 6.5], atol=1e-12)
    P, H, C, F = REGION_PAD, REGION_HANDSHAKE, REGION_CORE, REGION_FAR
    assert hs.classify(x).tolist() == [C, C, H, P, F, F, C, H, P, F]
    assert hs.in_core(x).tolist() == [True, True] + [False] * 4 + [True] + [False] * 3
    np.testing.assert_allclose(hs.beta(x), [1, 1, 0.5, 0, 0, 0, 1, 0.5, 0, 0], atol=1e-12)
    cells = np.array(
        [[[0, 0], [4, 0], [0, 4]], [[0, 0], [6, 0], [0, 4]], [[40, 0], [41, 1], [39, 2]]]
    )
    assert hs.cells_in_core(cells).tolist() == [True, False, True]


def test_grow_along_a_glide_plane_makes_the_region_long_in_x_and_not_in_y():
    hs = Handshake(shape="cylinder", center=(0, 0, 0), core_radius=6.0, width=4.0, pad_width=2.0)
    line = np.column_stack([np.arange(-20.0, 20.5, 2.0), np.zeros(21), np.zeros(21)])
    grown = hs.grow(centers=line, radius=3.0)
    # the balls deep inside the first disk (|x| + 3 <= 6) are dropped
    assert grown.n_balls == 1 + 21 - 3
    assert grown.grow(centers=line, radius=3.0) is grown  # nothing new the second time

    def extent(direction):
        s = np.linspace(0.0, 40.0, 40001)
        inside = grown.in_core(s[:, None] * np.asarray(direction, dtype=float))
        return s[inside].max()

    assert 23.0 <= extent([1, 0, 0]) <= 23.0 + TAU * np.log(3) + 1e-3
    assert 6.0 <= extent([0, 1, 0]) <= 6.01
    assert extent([1, 0, 0]) > 3.5 * extent([0, 1, 0])


# -- a coupled system on a grown region ------------------------------------------------------
OUTER = 45.0


def without_core_cells(md: MeshData, hs: Handshake, sites: np.ndarray) -> MeshData:
    """The mesh without the cells of :func:`core_cells`, its boundary facets re-tagged."""
    mesh = md.mesh
    tdim, fdim = mesh.topology.dim, mesh.topology.dim - 1
    cut = core_cells(mesh=mesh, handshake=hs, sites=sites)
    sub = dolfinx.mesh.create_submesh(mesh, tdim, np.flatnonzero(~cut).astype(np.int32))[0]
    sub.topology.create_connectivity(fdim, tdim)
    boundary = dolfinx.mesh.exterior_facet_indices(sub.topology)
    outer = dolfinx.mesh.locate_entities_boundary(
        sub, fdim, lambda x: np.hypot(x[0], x[1]) > OUTER - 1e-6
    )
    values = np.where(np.isin(boundary, outer), OUTER_TAG, INNER_TAG).astype(np.int32)
    tags = dolfinx.mesh.meshtags(sub, fdim, boundary, values)
    return MeshData(mesh=sub, facet_tags=tags, inner_tag=INNER_TAG, dim=md.dim)


@pytest.fixture(scope="module")
def grown_system(eam, law):
    """A 2.5d system whose core is a disk of 6 Å and two disks of 4 Å at x = ±7 Å."""
    rc = eam.cutoff
    first = Handshake(
        shape="cylinder", center=(0, 0, 0), core_radius=6.0, width=2 * rc, pad_width=rc
    )
    hs = first.grow(centers=np.array([[7.0, 0.0, 0.0], [-7.0, 0.0, 0.0]]), radius=4.0)
    region = Cylinder(center=(0, 0, 0), radius=hs.reach + 1, axis=2)
    atoms = finite_cluster("fcc", element="Cu", a=A0, region=region, periodic_axes=(2,))
    md = graded_mesh(
        comm=MPI.COMM_WORLD,
        outer=Disk(center=(0, 0), radius=OUTER),
        hole=Disk(center=(0, 0), radius=6.0),
        focus_radius=hs.reach,
        h_min=2.5,
        h_max=12.0,
        growth=0.3,
    )
    t = atoms.cell[2, 2]

    def problem(mesh_data):
        weight = lambda x: t * hs.continuum_weight(x)  # noqa: E731
        return HyperelasticProblem(mesh_data=mesh_data, law=law, mode="2.5d", weight=weight)

    system = build_coupled_system(
        potential=eam,
        atoms=atoms,
        handshake=hs,
        problem=problem(without_core_cells(md, hs, atoms.positions)),
        kappa=1.0,
    )
    return system, problem(md)


def test_cutting_a_grown_core_from_the_mesh_keeps_its_energy(grown_system):
    """The cut cells weigh less than WEIGHT_FLOOR at every quadrature point: the FE energy of
    a homogeneous state is that of the uncut mesh less exactly what those cells held (under
    that fraction of it); no cell of zero weight is kept (none holds a pad site)."""
    system, uncut = grown_system
    hs, cut = system.handshake, system.problem
    mask = core_cells(mesh=uncut.mesh, handshake=hs, sites=system.positions)
    n_points = uncut.material.n_points
    q = uncut.quadrature_points().reshape(-1, n_points, 3)  # the problem's own points
    core = hs.in_core(q.reshape(-1, 3)).reshape(-1, n_points).all(axis=1)
    light = (hs.continuum_weight(q.reshape(-1, 3)).reshape(-1, n_points) < WEIGHT_FLOOR).all(axis=1)
    assert mask.sum() > 10 and np.all(light[mask])
    kept_empty = core & ~mask  # zero weight, kept only for a pad site they hold
    pad = system.positions[system.region == REGION_PAD]
    assert np.all(cells_holding(uncut.mesh, pad)[kept_empty])
    assert not kept_empty.any()
    assert cut.mesh.topology.index_map(2).size_local == len(mask) - mask.sum()
    inner = cut.mesh_data.facet_tags.find(INNER_TAG)
    x = cut.mesh.geometry.x[dolfinx.mesh.entities_to_geometry(cut.mesh, 1, inner)].reshape(-1, 3)
    assert x[:, 0].max() > 9.0  # the hole reaches into the bulges beyond the first disk
    assert np.all(hs.depth(x) <= 2.5)  # and stays within an element of the core
    F = np.eye(3) + np.array([[0.01, 0.003, 0.0], [0.004, -0.006, 0.0], [0.0015, 0.002, 0.0]])
    energies, cut_cells = [], 0.0
    for problem in (uncut, cut):
        problem.u.interpolate(lambda x: (F - np.eye(3)) @ x)
        energies.append(problem.energy())
        if problem is uncut:  # the energy the cut cells held, cell by cell
            V0 = dolfinx.fem.functionspace(uncut.mesh, ("DG", 0))
            held = uncut._weight * uncut.material.W * ufl.TestFunction(V0) * uncut._dx
            per_dof = dolfinx.fem.assemble_vector(dolfinx.fem.form(held)).array
            cut_cells = float(per_dof[V0.dofmap.list[: len(mask), 0][mask]].sum())
        problem.u.x.array[:] = 0.0
    assert abs(energies[0]) > 1e-3
    assert 0.0 < abs(cut_cells) < WEIGHT_FLOOR * abs(energies[0])
    assert energies[1] == pytest.approx(energies[0] - cut_cells, rel=1e-12)


def test_patch_test_on_a_grown_region(grown_system):
    """A homogeneous F is an exact equilibrium, and the solver returns to it."""
    system, _ = grown_system
    free = system.positions[: system.n_free]
    assert np.abs(free[:, 0]).max() > np.abs(free[:, 1]).max() + 3.0  # not a disk of atoms
    F = np.eye(3) + np.array([[0.01, 0.003, 0.0], [0.004, -0.006, 0.0], [0.0015, 0.002, 0.0]])
    system.set_boundary(homogeneous(F), predictor=homogeneous(F))
    exact = system.state_from(homogeneous(F))
    g = system.model.layout.create_vec()
    system.model.energy_gradient(exact, g)
    assert max(system.model.max_forces(g)) < 1e-8
    rng = np.random.default_rng(1)
    p = system.model.layout.create_vec()
    p.setArray(0.03 * rng.standard_normal(p.getLocalSize()))
    system.model.zero_dirichlet(p)
    system.z = exact.copy()
    system.z.axpy(1.0, p)
    result = system.solve(SolverOptions(fmax=1e-9, max_iterations=30))
    assert result.converged and result.max_atom_force < 1e-8 and result.max_fe_residual < 1e-8
    diff = system.z.copy()
    diff.axpy(-1.0, exact)
    assert diff.norm(3) < 1e-8


def test_ghost_forces_of_a_grown_region_sit_within_r_cut_of_its_boundary(grown_system, eam):
    """Uncorrected, an atom whose neighbours all have β = 1 feels nothing at F·X."""
    system, _ = grown_system
    hs, rc = system.handshake, eam.cutoff
    F = np.eye(3) + np.array([[0.01, 0.0, 0.0], [0.0, -0.006, 0.0], [0.0, 0.0, 0.0]])
    system.set_boundary(homogeneous(F), predictor=homogeneous(F))
    model = system.model
    g = model.layout.create_vec()
    with model.without_correction():
        model.energy_gradient(system.predictor, g)
    f = np.linalg.norm(model.layout.atoms_of(g), axis=1)
    depth = hs.depth(system.positions[: system.n_free])
    assert np.all(f[depth <= -rc] < 1e-10)  # β = 1 on their whole neighbourhood
    bulge = (np.abs(system.positions[: system.n_free, 0]) > 11.0) & (depth > 0)
    assert f[bulge].max() > 1e-3  # the bulges' handshake does blend
    total = system.ghost_forces()[0]
    assert total == f.max() > 1e-3
    assert system.ghost_forces(within=rc + 0.01)[0] == total
    assert system.ghost_forces(within=0.0)[0] == f[depth > 0].max()
    assert system.ghost_forces(within=-hs.width)[0] == 0.0  # no free atom is that far out


def test_coupled_sites_cover_a_grown_region():
    from multiscale.config import load_case
    from multiscale.kinds.coupled.setup import resolve_setup
    from multiscale.kinds.coupled.sites import coupled_sites

    setup = resolve_setup(
        load_case(ROOT / "cases" / "patch-test", overrides=["lattice.a=3.614925"])
    )
    hs = setup.handshake.grow(centers=np.array([[12.0, 0.0], [18.0, 0.0]]), radius=4.0)
    atoms, perfect = coupled_sites(dataclasses.replace(setup, handshake=hs))
    wide = finite_cluster(
        "fcc",
        element="Cu",
        a=setup.lattice.a,
        region=Cylinder(center=(0, 0, 0), radius=hs.reach + 10.0, axis=2),
        periodic_axes=(2,),
    )
    needed = wide.positions[hs.classify(wide.positions) != REGION_FAR]
    # the grown region needs sites beyond the first disk's atoms
    assert np.linalg.norm(needed[:, :2], axis=1).max() > hs.atom_radius + 5.0
    dist, _ = cKDTree(atoms.positions).query(needed)
    assert dist.max() < 1e-6
    assert len(perfect) == len(atoms)
