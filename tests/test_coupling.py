"""The blended a/c energy: patch test, ghost forces, exact gradient and Hessian, solver.

Every check compares against an independent answer: the exact homogeneous solution, central
finite differences of the energy, or the uncorrected (BQCE-like) scheme.
"""

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from mpi4py import MPI

from atomistic import Cylinder, Sphere, finite_cluster
from continuum.geometry import Ball, Box, Disk
from continuum.mesh import graded_mesh
from continuum.problem import HyperelasticProblem
from coupling.handshake import Handshake, smootherstep
from coupling.solver import SolverOptions
from coupling.system import build_coupled_system, homogeneous

A0 = 3.614925  # Cu_mishin1 stress-free lattice constant (tests/test_cauchy_born.py)

STRAINS = [
    np.array([[0.01, 0.003, 0.002], [0.004, -0.006, 0.001], [0.0015, 0.002, 0.005]]),
    np.array([[-0.02, 0.0, 0.0], [0.0, 0.01, 0.0], [0.0, 0.0, 0.0]]),
    np.array([[0.0, 0.015, -0.004], [0.015, 0.0, 0.006], [0.0, -0.002, 0.012]]),
]


def make_system(eam, law, *, mode, width=None, core=None, gfc=True, outer=None, sites=False):
    rc = eam.cutoff
    comm = MPI.COMM_WORLD
    width = 2 * rc if width is None else width
    if mode == "2.5d":
        core = 6.0 if core is None else core
        hs = Handshake(
            shape="cylinder", center=(0, 0, 0), core_radius=core, width=width, pad_width=rc
        )
        region = Cylinder(center=(0, 0, 0), radius=hs.atom_radius + 1, axis=2)
        atoms = finite_cluster("fcc", element="Cu", a=A0, region=region, periodic_axes=(2,))
        md = graded_mesh(
            comm=comm,
            outer=Disk(center=(0, 0), radius=outer or 50.0),
            hole=Disk(center=(0, 0), radius=core),
            focus_radius=hs.atom_radius,
            h_min=2.5,
            h_max=12.0,
            growth=0.3,
        )
    else:
        core = 2.0 if core is None else core
        hs = Handshake(
            shape="sphere", center=(0, 0, 0), core_radius=core, width=width, pad_width=rc
        )
        atoms = finite_cluster(
            "fcc", element="Cu", a=A0, region=Sphere(center=(0, 0, 0), radius=hs.atom_radius + 1)
        )
        half = outer or hs.atom_radius + 8.0
        md = graded_mesh(
            comm=comm,
            outer=Box(lo=(-half,) * 3, hi=(half,) * 3),
            hole=Ball(center=(0, 0, 0), radius=core),
            focus_radius=hs.atom_radius,
            h_min=3.0,
            h_max=10.0,
            growth=0.4,
        )
    # in 2.5D the continuum integrates per Å of thickness; the atoms are one slab period
    t = atoms.cell[2, 2] if mode == "2.5d" else 1.0
    problem = HyperelasticProblem(
        mesh_data=md, law=law, mode=mode, weight=lambda x: t * hs.continuum_weight(x)
    )
    return build_coupled_system(
        potential=eam,
        atoms=atoms,
        handshake=hs,
        problem=problem,
        kappa=1.0,
        ghost_force_correction=gfc,
        perfect_atoms=_wider(atoms, region, rc) if sites else None,
    )


def _wider(atoms, region, rc):
    """The same lattice ``rc`` farther out: sites reaching ``2 r_cut`` past the free atoms."""
    wide = Cylinder(center=(0, 0, 0), radius=region.radius + rc, axis=2)
    return finite_cluster("fcc", element="Cu", a=A0, region=wide, periodic_axes=(2,))


def deformation(strain, mode):
    F = np.eye(3) + strain
    if mode == "2.5d":
        F[:, 2] = [0.0, 0.0, 1.0]
    return F


def perturbed(system, z, scale, seed=0):
    lay = system.model.layout
    rng = np.random.default_rng(seed)
    p = lay.create_vec()
    p.setArray(scale * rng.standard_normal(p.getLocalSize()))
    system.model.zero_dirichlet(p)
    out = z.copy()
    out.axpy(1.0, p)
    return out


def test_blending_function_is_c2_and_spans_the_handshake():
    hs = Handshake(shape="sphere", center=(0, 0, 0), core_radius=5.0, width=4.0, pad_width=2.0)
    t = np.linspace(-0.5, 1.5, 2001)
    s = smootherstep(t)
    h = t[1] - t[0]
    d1 = np.gradient(s, h)
    d2 = np.gradient(d1, h)
    assert s[0] == 0 and s[-1] == 1
    assert np.max(np.abs(np.diff(d1))) < 1e-2  # no jump in the first derivative
    assert np.max(np.abs(np.diff(d2))) < 0.1  # nor in the second
    x = np.array([[4.9, 0, 0], [5.0, 0, 0], [7.0, 0, 0], [9.0, 0, 0], [10.5, 0, 0], [11.5, 0, 0]])
    np.testing.assert_allclose(hs.beta(x), [1, 1, 0.5, 0, 0, 0], atol=1e-14)
    assert hs.classify(x).tolist() == [0, 0, 1, 2, 2, 3]


@pytest.mark.parametrize(("mode", "far"), [("2.5d", 0.0), ("3d", 0.0), ("2.5d", 0.05)])
def test_patch_test_with_ghost_force_correction(eam, law, mode, far):
    """Three homogeneous F: from a perturbed start the solver returns to F·X, forces ~0;
    also with the law linearised about the far field's F wherever F is within ``far``."""
    system = make_system(eam, law, mode=mode)
    for k, strain in enumerate(STRAINS):
        F = deformation(strain, mode)
        system.set_boundary(homogeneous(F), predictor=homogeneous(F))
        exact = system.state_from(homogeneous(F))
        g = system.model.layout.create_vec()
        system.model.energy_gradient(exact, g)
        fa, ff = system.model.max_forces(g)
        assert fa < 1e-8 and ff < 1e-8, (k, fa, ff)
        system.z = perturbed(system, exact, 0.03, seed=k)
        result = system.solve(SolverOptions(fmax=1e-9, max_iterations=30, linear_far_field=far))
        assert result.converged, result
        assert result.max_atom_force < 1e-8 and result.max_fe_residual < 1e-8
        diff = system.z.copy()
        diff.axpy(-1.0, exact)
        assert diff.norm(3) < 1e-8  # PETSc NORM_INFINITY: back at the homogeneous state
        np.testing.assert_array_equal(system.far_field_F, F)
        n_cells = system.problem.material.n_cells
        assert system.problem.material.linearised_points == (n_cells if far else 0)


def test_correction_recomputed_at_a_homogeneous_state_still_passes_the_patch_test(eam, law):
    """``update_correction`` (atoms: blended minus β times the fully atomistic forces; FE:
    the predictor's discrete correction plus ``∫ ((P − P_F) ∇w) · v``) gives back the
    predictor's correction at ``F·X``, and the solve still returns to ``F·X``; at another
    state it differs (the ghost forces of that state)."""
    system = make_system(eam, law, mode="2.5d", sites=True)
    for k, strain in enumerate(STRAINS):
        F = deformation(strain, "2.5d")
        system.set_boundary(homogeneous(F), predictor=homogeneous(F))
        exact = system.state_from(homogeneous(F))
        system.z = exact.copy()
        assert system.update_correction() < 1e-9
        g = system.model.layout.create_vec()
        system.model.energy_gradient(exact, g)
        assert max(system.model.max_forces(g)) < 1e-8
        system.z = perturbed(system, exact, 0.03, seed=k)
        assert system.update_correction() > 1e-4
        system.z = exact.copy()
        assert system.update_correction() > 1e-4  # back from the perturbed state's correction
        system.z = perturbed(system, exact, 0.03, seed=k)
        result = system.solve(SolverOptions(fmax=1e-9, max_iterations=30))
        assert result.converged, result
        diff = system.z.copy()
        diff.axpy(-1.0, exact)
        assert diff.norm(3) < 1e-8


def test_ghost_forces_without_correction_fall_as_the_handshake_widens(eam, law):
    F = deformation(STRAINS[0], "2.5d")
    forces = []
    for width in (5.0, 10.0, 20.0):
        system = make_system(eam, law, mode="2.5d", width=width, gfc=False, outer=70.0)
        system.set_boundary(homogeneous(F), predictor=homogeneous(F))
        forces.append(system.ghost_forces()[0])
    assert forces[0] > 1e-3  # the uncorrected scheme is not patch-test consistent
    assert forces[1] < 0.75 * forces[0] and forces[2] < 0.75 * forces[1], forces


@pytest.mark.parametrize("mode", ["2.5d", "3d"])
def test_gradient_and_hessian_match_finite_differences(eam, law, mode):
    """∇E (penalty, pad slaving and correction included) and H·v against central FD."""
    system = make_system(eam, law, mode=mode, core=4.0 if mode == "3d" else None)
    F = deformation(STRAINS[0], mode)
    system.set_boundary(homogeneous(F), predictor=homogeneous(F))
    model, lay = system.model, system.model.layout
    z = perturbed(system, system.state_from(homogeneous(F)), 0.05, seed=3)
    g = lay.create_vec()
    model.energy_gradient(z, g)
    parts = model.energy_parts(z)
    assert parts.penalty > 0 and parts.correction != 0
    rng = np.random.default_rng(7)
    d = lay.create_vec()
    d.setArray(rng.standard_normal(d.getLocalSize()))
    model.zero_dirichlet(d)
    h = 1e-5
    zp, zm = z.copy(), z.copy()
    zp.axpy(h, d)
    zm.axpy(-h, d)
    gp, gm = lay.create_vec(), lay.create_vec()
    ep = model.energy_gradient(zp, gp)
    em = model.energy_gradient(zm, gm)
    directional = (ep - em) / (2 * h)
    assert directional == pytest.approx(g.dot(d), rel=1e-6)  # FD round-off: |E| ~ 1e4 eV
    Hd = lay.create_vec()
    model.hessian_vector(z, d, Hd)
    fd = gp.copy()
    fd.axpy(-1.0, gm)
    fd.scale(1 / (2 * h))
    err = fd.copy()
    err.axpy(-1.0, Hd)
    assert err.norm(3) < 1e-6 * Hd.norm(3)


def _every_atom_weighted(potential, atoms):
    """The fully atomistic energy of ``atoms`` (every site weighted 1) as ``BlendedAtoms``."""
    from coupling.blended_atoms import BlendedAtoms

    return BlendedAtoms(
        potential=potential,
        reference_positions=atoms.positions,
        symbols=atoms.get_chemical_symbols(),
        beta=np.ones(len(atoms)),
        cell=atoms.cell.array,
        pbc=atoms.pbc,
    )


def test_defect_forces_survive_the_correction(eam, law):
    """At the predictor, core atoms near a void feel the fully atomistic forces."""
    system = make_system(eam, law, mode="2.5d", core=14.0)
    rc = eam.cutoff
    hs = system.handshake
    region = Cylinder(center=(0, 0, 0), radius=hs.atom_radius + 1, axis=2)
    perfect = finite_cluster("fcc", element="Cu", a=A0, region=region, periodic_axes=(2,))
    defect = perfect[np.linalg.norm(perfect.positions[:, :2], axis=1) > 3.0]
    coupled = build_coupled_system(
        potential=eam,
        atoms=defect,
        handshake=hs,
        problem=system.problem,
        kappa=1.0,
        perfect_atoms=perfect,
    )
    F = deformation(STRAINS[1], "2.5d")
    coupled.set_boundary(homogeneous(F), predictor=homogeneous(F))
    g = coupled.model.layout.create_vec()
    coupled.model.energy_gradient(coupled.state_from(homogeneous(F)), g)
    forces = -g.getArray()[: 3 * coupled.n_free].reshape(-1, 3)
    # fully atomistic reference: every site weighted 1, far from any surface
    big = finite_cluster(
        "fcc",
        element="Cu",
        a=A0,
        periodic_axes=(2,),
        region=Cylinder(center=(0, 0, 0), radius=30.0, axis=2),
    )
    big = big[np.linalg.norm(big.positions[:, :2], axis=1) > 3.0]
    full = _every_atom_weighted(eam, big)
    _, g_full = full.energy_gradient(homogeneous(F)(big.positions))
    r = np.linalg.norm(coupled.positions[: coupled.n_free, :2], axis=1)
    near = np.flatnonzero(r < hs.core_radius - rc)
    tree_idx = [
        np.argmin(np.linalg.norm(big.positions - x, axis=1)) for x in coupled.positions[near]
    ]
    expected = -g_full[tree_idx]
    assert np.abs(expected).max() > 0.05  # the void does push its neighbours
    np.testing.assert_allclose(forces[near], expected, atol=1e-10)


def test_a_tolerance_below_round_off_stops_at_round_off_not_at_max_iterations(eam, law):
    """A ``fmax`` no state can meet (1e-16 eV/Å; the forces' round-off is ~1e-14): Newton
    reaches round-off in a few steps, then the stall rule ends it long before
    ``max_iterations``, at the exact answer, reported as not converged at round-off."""
    system = make_system(eam, law, mode="2.5d")
    F = deformation(STRAINS[0], "2.5d")
    system.set_boundary(homogeneous(F), predictor=homogeneous(F))
    exact = system.state_from(homogeneous(F))
    system.z = perturbed(system, exact, 0.03)
    result = system.solve(SolverOptions(fmax=1e-16, max_iterations=200))
    assert not result.converged
    assert result.reason == "DIVERGED_ROUNDOFF"
    assert result.newton_iterations < 40, result.newton_iterations
    assert max(result.max_atom_force, result.max_fe_residual) < 1e-11
    diff = system.z.copy()
    diff.axpy(-1.0, exact)
    assert diff.norm(3) < 1e-8


def test_stall_rule_spares_slow_progress():
    """The rule of :func:`coupling.solver.stalled` on scripted histories."""
    from coupling.solver import STALL_STEPS, stalled

    n = STALL_STEPS + 5
    E = -1e5
    # forces at a floor, energy within round-off: stalled
    noise = [(E + 1e-9 * (-1) ** k, 3e-14, 4e-14) for k in range(n)]
    assert stalled(noise)
    assert not stalled(noise[:STALL_STEPS])  # not before a whole window of steps
    # the energy falls at a steady force (a dislocation gliding): not stalled
    assert not stalled([(E - 1e-3 * k, 0.2, 0.1) for k in range(n)])
    # the force halves every other step, energy in round-off (converging): not stalled
    assert not stalled([(E, 1e-3 * 0.7**k, 0.0) for k in range(n)])
    # a window whose best force only just misses half the best before it: stalled
    creep = [(E, 1.0, 0.0)] * (n - STALL_STEPS) + [(E, 0.51, 0.0)] * STALL_STEPS
    assert stalled(creep)
    assert not stalled(creep[:-1] + [(E, 0.49, 0.0)])


def test_a_stall_is_at_round_off_only_within_a_thousand_epsilons_of_the_largest_force():
    """:func:`coupling.solver.at_roundoff` on scripted histories: a stall at 4e-14 eV/Å after
    forces of 1.6 eV/Å is round-off (no load-step cut can help); the same floor after forces
    of 1e-3 eV/Å, or a stall at 1e-6 after 1.6, is not (those solves are cut as before)."""
    from coupling.solver import STALL_STEPS, at_roundoff

    E = -1e5
    floor = [(E, 3e-14, 4e-14)] * (STALL_STEPS + 2)
    assert at_roundoff([(E, 0.3, 1.6)] + floor)
    assert not at_roundoff([(E, 1e-3, 1e-3)] + floor)
    assert not at_roundoff([(E, 0.3, 1.6)] + [(E, 1e-6, 1e-6)] * (STALL_STEPS + 2))
    # the bound: 1000 machine epsilons of the largest force
    eps = float(np.finfo(np.float64).eps)
    assert at_roundoff([(E, 1.0, 0.0)] + [(E, 0.99e3 * eps, 0.0)] * STALL_STEPS)
    assert not at_roundoff([(E, 1.0, 0.0)] + [(E, 1.01e3 * eps, 0.0)] * STALL_STEPS)


@pytest.mark.skipif(
    not (pathlib.Path(sys.executable).parent / "mpiexec").exists(), reason="mpiexec not installed"
)
def test_two_ranks_give_the_serial_answer(tmp_path):
    script = pathlib.Path(__file__).with_name("mpi_coupled_void.py")
    mpiexec = pathlib.Path(sys.executable).parent / "mpiexec"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = {}
    for n in (1, 2):
        path = tmp_path / f"u{n}.npy"
        proc = subprocess.run(
            [str(mpiexec), "-n", str(n), sys.executable, str(script), str(path)],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")][0].split()
        assert line[2] == "True"
        out[n] = (float(line[1]), np.load(path))
    assert out[2][0] == pytest.approx(out[1][0], rel=1e-12, abs=0)
    assert np.abs(out[1][1]).max() > 0.05  # the void relaxed
    np.testing.assert_allclose(out[2][1], out[1][1], atol=1e-9)


def _with_and_without_idle_pairs(potential, radius, beta_of_r, seed):
    """``(E, ∇E, H v)`` of ``Σ β ε`` on a Cu cluster, with the pairs of two ``β = 0`` atoms
    kept (``False``) and left out (``True``); also the fraction of pairs kept."""
    from coupling.blended_atoms import BlendedAtoms

    atoms = finite_cluster(
        "fcc", element="Cu", a=A0, region=Sphere(center=(0, 0, 0), radius=radius)
    )
    beta = beta_of_r(np.linalg.norm(atoms.positions, axis=1))
    rng = np.random.default_rng(seed)
    u = 0.05 * rng.standard_normal((len(atoms), 3))
    v = rng.standard_normal((len(atoms), 3))
    out = {}
    for drop in (False, True):
        blended = BlendedAtoms(
            potential=potential,
            reference_positions=atoms.positions,
            symbols=atoms.get_chemical_symbols(),
            beta=beta,
            cell=np.eye(3) * 100.0,
        )
        assert blended.drop_idle_pairs  # the potential declares site_local
        blended.drop_idle_pairs = drop
        e, g = blended.energy_gradient(u)
        out[drop] = (e, g, blended.hessian_vector(u, v))
    kept = blended._pair_mask[1].numel() / blended.neighbours.i.size
    return out, beta, kept


def test_pairs_between_unweighted_atoms_change_nothing(eam):
    """Leaving out the pairs of two ``β = 0`` atoms (site-local potentials) keeps ``Σ β ε``,
    its gradient and its Hessian products: compared with the full pair list."""
    # an outer shell of β = 0 thicker than r_cut
    out, beta, kept = _with_and_without_idle_pairs(
        eam, 14.0, lambda r: np.clip((11.0 - r) / 4.0, 0.0, 1.0), seed=3
    )
    assert kept < 0.8  # a real share of the pairs was dropped
    assert out[True][0] == pytest.approx(out[False][0], rel=1e-14)
    np.testing.assert_allclose(out[True][1], out[False][1], rtol=0, atol=1e-12)
    np.testing.assert_allclose(out[True][2], out[False][2], rtol=0, atol=1e-11)
    assert np.abs(out[False][2][beta == 0]).max() > 1e-3  # β = 0 atoms still feel the others


def test_pairs_between_unweighted_atoms_change_nothing_for_a_committee():
    """The same with a (random) moment-tensor committee, which also declares ``site_local``:
    its descriptors only sum over the pairs of the centre atom."""
    import torch

    from atomistic import Committee, MomentSpec

    torch.manual_seed(0)
    pot = Committee(elements=("Cu",), descriptor=MomentSpec(cutoff=4.0), n_members=2).double()
    out, _, kept = _with_and_without_idle_pairs(
        pot, 11.0, lambda r: np.clip((8.0 - r) / 3.0, 0.0, 1.0), seed=4
    )
    assert kept < 0.9
    assert out[True][0] == pytest.approx(out[False][0], rel=1e-13)
    np.testing.assert_allclose(out[True][1], out[False][1], rtol=0, atol=1e-10)
    np.testing.assert_allclose(out[True][2], out[False][2], rtol=0, atol=1e-9)


def test_a_state_no_neighbour_list_can_take_has_infinite_energy(eam):
    # a Newton trial that throws an atom 1e12 Å away, or to NaN, is +inf for the line search
    # (which then shortens the step), not a crash in the neighbour list
    slab = finite_cluster(
        "fcc",
        element="Cu",
        a=A0,
        periodic_axes=(2,),
        region=Cylinder(center=(0, 0, 0), radius=12.0, axis=2),
    )
    blended = _every_atom_weighted(eam, slab)
    u = np.zeros((len(slab), 3))
    energy, _ = blended.energy_gradient(u)
    assert np.isfinite(energy)
    for bad in (1e12, np.nan):
        u[3, 0] = bad
        energy, g = blended.energy_gradient(u)
        assert energy == np.inf and g.shape == (len(slab), 3)
