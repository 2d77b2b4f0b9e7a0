"""Pair potentials and Stillinger–Weber: forces = −∇E, stress = ∂E/∂ε / V, LAMMPS agreement."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk

from atomistic.calculator import Calculator
from atomistic.neighbours import NeighbourList, build_graph
from atomistic.potentials.pair import LennardJones, Morse
from atomistic.potentials.protocol import evaluate
from atomistic.potentials.sw import StillingerWeber

# Stillinger & Weber, Phys. Rev. B 31, 5262 (1985), in metal units (as LAMMPS's Si.sw)
SI_SW = """\
# Si, Stillinger-Weber 1985
Si Si Si 2.1683  2.0951  1.80  21.0  1.20  -0.333333333333
         7.049556277  0.6022245584  4.0  0.0 0.0
"""
A_SI = 5.431


@pytest.fixture(scope="module")
def si_sw_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("sw") / "Si.sw"
    path.write_text(SI_SW)
    return path


def make_potential(name, sw_file):
    if name == "lj":
        return LennardJones(epsilon=0.4, sigma=2.1, cutoff=4.6, element="Si")
    if name == "lj-shift":
        return LennardJones(epsilon=0.4, sigma=2.1, cutoff=4.6, shift=True, element="Si")
    if name == "morse":
        return Morse(D=0.8, alpha=1.4, r0=2.4, cutoff=5.0, element=("Si", "Ge"))
    if name == "sw":
        return StillingerWeber.from_file(sw_file)
    raise KeyError(name)


POTENTIALS = ["lj", "lj-shift", "morse", "sw"]


def si_bulk(seed=0, rattle=0.05):
    atoms = bulk("Si", "diamond", a=A_SI, cubic=True) * (2, 2, 2)
    atoms.rattle(rattle, seed=seed)
    return atoms


def si_cluster(seed=0, radius=5.6):
    atoms = bulk("Si", "diamond", a=A_SI, cubic=True) * (3, 3, 3)
    centre = atoms.positions[atoms.positions.shape[0] // 2] + 0.3
    keep = np.linalg.norm(atoms.positions - centre, axis=1) < radius
    cluster = Atoms("Si" * int(keep.sum()), positions=atoms.positions[keep] - centre, pbc=False)
    cluster.rattle(0.05, seed=seed)
    return cluster


def energy_at(atoms, calc, positions=None, cell=None):
    a = atoms.copy()
    if cell is not None:
        a.set_cell(cell, scale_atoms=True)
    if positions is not None:
        a.positions = positions
    a.calc = calc
    return a.get_potential_energy()


# -- (a) forces = −∇E by central differences ------------------------------------------------


@pytest.mark.parametrize("name", POTENTIALS)
@pytest.mark.parametrize("structure", ["bulk", "cluster"])
def test_forces_are_minus_energy_gradient(name, structure, si_sw_file):
    atoms = si_bulk(seed=1) if structure == "bulk" else si_cluster(seed=2)
    calc = Calculator(make_potential(name, si_sw_file), device="cpu")
    atoms.calc = calc
    forces = atoms.get_forces()
    fmax = np.abs(forces).max()
    assert fmax > 0.1  # a real test, not a perfect lattice
    h = 1e-5
    rng = np.random.default_rng(3)
    x0 = atoms.positions.copy()

    # every component of a random subset of atoms
    for a in rng.choice(len(atoms), size=6, replace=False):
        for c in range(3):
            xp, xm = x0.copy(), x0.copy()
            xp[a, c] += h
            xm[a, c] -= h
            fd = -(energy_at(atoms, calc, xp) - energy_at(atoms, calc, xm)) / (2 * h)
            assert abs(fd - forces[a, c]) < 1e-6 * fmax, (a, c, fd, forces[a, c])

    # a random direction moving every atom at once
    d = rng.standard_normal(x0.shape)
    d /= np.linalg.norm(d)
    fd = -(energy_at(atoms, calc, x0 + h * d) - energy_at(atoms, calc, x0 - h * d)) / (2 * h)
    assert abs(fd - np.sum(forces * d)) < 1e-6 * fmax


# -- (b) stress = (1/V) ∂E/∂ε ------------------------------------------------------------------


@pytest.mark.parametrize("name", POTENTIALS)
def test_stress_is_strain_derivative(name, si_sw_file):
    atoms = si_bulk(seed=4)
    rng = np.random.default_rng(5)
    atoms.set_cell(
        atoms.cell.array @ (np.eye(3) + 0.02 * rng.standard_normal((3, 3))), scale_atoms=True
    )  # triclinic
    calc = Calculator(make_potential(name, si_sw_file), device="cpu")
    atoms.calc = calc
    stress = atoms.get_stress()
    stresses = atoms.get_stresses()
    np.testing.assert_allclose(stresses.sum(axis=0), stress, rtol=0, atol=1e-12)
    vol = atoms.get_volume()
    cell0 = atoms.cell.array.copy()
    h = 1e-6
    smax = np.abs(stress).max()
    for k, (a, b) in enumerate([(0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)]):
        eps = np.zeros((3, 3))
        eps[a, b] = eps[b, a] = h if a == b else h / 2
        ep = energy_at(atoms, calc, cell=cell0 @ (np.eye(3) + eps))
        em = energy_at(atoms, calc, cell=cell0 @ (np.eye(3) - eps))
        fd = (ep - em) / (2 * h) / vol
        assert abs(fd - stress[k]) < 1e-6 * smax + 1e-10, (k, fd, stress[k])


# -- (d) analytic dimers -----------------------------------------------------------------------


def dimer(r, symbol="Si"):
    return Atoms(symbol * 2, positions=[[0.0, 0.0, 0.0], [r, 0.0, 0.0]], pbc=False)


@pytest.mark.parametrize("shift", [False, True])
def test_lennard_jones_dimer_is_analytic(shift):
    eps, sig, rc = 0.0104, 3.4, 8.5
    pot = LennardJones(epsilon=eps, sigma=sig, cutoff=rc, shift=shift, element="Ar")

    def phi(r):
        return 4 * eps * ((sig / r) ** 12 - (sig / r) ** 6)

    def dphi(r):
        return 4 * eps * (-12 * sig**12 / r**13 + 6 * sig**6 / r**7)

    for r in (3.0, 2 ** (1 / 6) * sig, 5.0, 8.4):
        atoms = dimer(r, "Ar")
        atoms.calc = Calculator(pot, device="cpu")
        expected = phi(r) - (phi(rc) if shift else 0.0)
        assert atoms.get_potential_energy() == pytest.approx(expected, rel=1e-13, abs=1e-16)
        np.testing.assert_allclose(atoms.get_potential_energies(), [expected / 2] * 2, rtol=1e-13)
        f = atoms.get_forces()
        assert f[1, 0] == pytest.approx(-dphi(r), rel=1e-12, abs=1e-15)
        assert f[0, 0] == pytest.approx(dphi(r), rel=1e-12, abs=1e-15)
    # beyond the cutoff (but inside the list's skin): nothing at all
    atoms = dimer(rc + 0.2, "Ar")
    atoms.calc = Calculator(pot, device="cpu", skin=1.0)
    assert atoms.get_potential_energy() == 0.0
    assert np.all(atoms.get_forces() == 0.0)


def test_morse_dimer_is_analytic():
    D, alpha, r0, rc = 0.35, 1.3, 2.8, 7.0
    pot = Morse(D=D, alpha=alpha, r0=r0, cutoff=rc, element="Cu")
    for r in (2.2, r0, 4.1):
        atoms = dimer(r, "Cu")
        atoms.calc = Calculator(pot, device="cpu")
        x = np.exp(-alpha * (r - r0))
        assert atoms.get_potential_energy() == pytest.approx(D * (x * x - 2 * x), rel=1e-13)
        dphi = D * (-2 * alpha * x * x + 2 * alpha * x)
        assert atoms.get_forces()[1, 0] == pytest.approx(-dphi, rel=1e-12, abs=1e-15)


def test_pair_parameters_are_validated():
    with pytest.raises(ValueError, match="sigma"):
        LennardJones(epsilon=1.0, sigma=-1.0, cutoff=3.0)
    with pytest.raises(ValueError, match="cutoff"):
        Morse(D=1.0, alpha=1.0, r0=1.0, cutoff=0.0)


# -- (e) float32 -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", POTENTIALS)
def test_float32_matches_float64(name, si_sw_file):
    atoms = si_bulk(seed=6)
    results = {}
    for dtype in (torch.float64, torch.float32):
        a = atoms.copy()
        a.calc = Calculator(make_potential(name, si_sw_file), device="cpu", dtype=dtype)
        results[dtype] = (a.get_potential_energy(), a.get_forces())
    e64, f64 = results[torch.float64]
    e32, f32 = results[torch.float32]
    assert abs(e32 - e64) < 1e-5 * abs(e64)
    assert np.abs(f32 - f64).max() < 1e-3 * max(1.0, np.abs(f64).max())


# -- Stillinger–Weber specifics ----------------------------------------------------------------


def test_sw_perfect_diamond_cohesive_energy(si_sw_file):
    atoms = bulk("Si", "diamond", a=A_SI, cubic=True) * (2, 2, 2)
    atoms.calc = Calculator(StillingerWeber.from_file(si_sw_file), device="cpu")
    # SW silicon: −2ε per atom at the equilibrium lattice constant 5.431 Å
    np.testing.assert_allclose(atoms.get_potential_energies(), -2 * 2.1683, rtol=0, atol=1e-4)
    assert np.abs(atoms.get_forces()).max() < 1e-12


def test_sw_skin_pairs_contribute_nothing(si_sw_file):
    pot = StillingerWeber.from_file(si_sw_file)
    atoms = si_bulk(seed=7, rattle=0.15)
    out = {}
    for skin in (0.0, 1.7):
        graph = build_graph(
            positions=torch.tensor(atoms.positions),
            cell=torch.tensor(atoms.cell.array),
            species=torch.zeros(len(atoms), dtype=torch.int64),
            neighbours=NeighbourList(cutoff=pot.cutoff, skin=skin),
        )
        out[skin] = evaluate(pot, graph, virial=True)
    for key in ("energies", "forces", "virial"):
        torch.testing.assert_close(out[0.0][key], out[1.7][key], rtol=0, atol=1e-12)


def test_sw_is_twice_differentiable(si_sw_file):
    """Hessian-vector products by double backward equal differences of the gradient."""
    pot = StillingerWeber.from_file(si_sw_file)
    atoms = si_bulk(seed=8)
    cell = torch.tensor(atoms.cell.array)
    species = torch.zeros(len(atoms), dtype=torch.int64)
    nl = NeighbourList(cutoff=pot.cutoff, skin=0.5)

    def grad(x, create_graph=False):
        x = x.detach().requires_grad_(True)
        graph = build_graph(positions=x, cell=cell, species=species, neighbours=nl)
        (g,) = torch.autograd.grad(pot(graph).sum(), x, create_graph=create_graph)
        return x, g

    x0 = torch.tensor(atoms.positions)
    v = torch.randn(x0.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    x, g = grad(x0, create_graph=True)
    (hv,) = torch.autograd.grad((g * v).sum(), x)
    h = 1e-5
    fd = (grad(x0 + h * v)[1] - grad(x0 - h * v)[1]) / (2 * h)
    assert torch.isfinite(hv).all()
    torch.testing.assert_close(hv, fd, rtol=0, atol=1e-6 * fd.abs().max().item())


def test_sw_is_smooth_and_nan_free_at_the_cutoff(si_sw_file):
    pot = StillingerWeber.from_file(si_sw_file)
    cut = 1.8 * 2.0951
    for r in (cut * (1 - 1e-3), cut * (1 - 1e-7), cut * (1 - 1e-15), cut, cut + 1e-9):
        x = torch.tensor(
            [[0.0, 0.0, 0.0], [r, 0.0, 0.0], [0.0, r, 0.0]], dtype=torch.float64
        ).requires_grad_(True)
        graph = build_graph(
            positions=x,
            cell=torch.eye(3, dtype=torch.float64),
            species=torch.zeros(3, dtype=torch.int64),
            neighbours=NeighbourList(cutoff=pot.cutoff, skin=0.5),
            pbc=False,
        )
        e = pot(graph).sum()
        (g,) = torch.autograd.grad(e, x, create_graph=True)
        (h,) = torch.autograd.grad(g.square().sum(), x)
        assert torch.isfinite(e) and torch.isfinite(g).all() and torch.isfinite(h).all()
        assert abs(e.item()) < 1e-20


def test_sw_file_errors(tmp_path, si_sw_file):
    missing = tmp_path / "nope.sw"
    with pytest.raises(FileNotFoundError, match="nope.sw"):
        StillingerWeber.from_file(missing)
    with pytest.raises(ValueError, match=r"'Ge'.*Si\.sw|Si\.sw.*'Ge'"):
        StillingerWeber.from_file(si_sw_file, elements=["Si", "Ge"])
    bad = tmp_path / "bad.sw"
    bad.write_text("Si Si Si 1 2 3\n")
    with pytest.raises(ValueError, match="bad.sw"):
        StillingerWeber.from_file(bad)
    neg = tmp_path / "neg.sw"
    neg.write_text(SI_SW.replace("21.0", "-21.0"))
    with pytest.raises(ValueError, match="lambda"):
        StillingerWeber.from_file(neg)
