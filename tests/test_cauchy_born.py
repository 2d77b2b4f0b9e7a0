"""Cauchy–Born: stress and tangent against finite differences and LAMMPS; elastic constants."""

import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.calculators.calculator import all_changes

from atomistic import LammpsCalculator, StillingerWeber, unit_cell
from atomistic.calculator import Calculator
from atomistic.cauchy_born import EV_PER_A3_TO_GPA, CauchyBorn, voigt_from_tangent
from atomistic.potentials.eam import EAM


@pytest.fixture(scope="module")
def cu_cb(potentials_dir):
    pot = EAM.from_file(potentials_dir / "Cu_mishin1.eam.alloy")
    return CauchyBorn(pot, bulk("Cu", "fcc", a=3.615), device="cpu")


def _fd_check(cb, F, h=1e-6):
    W, P, A = cb(F)
    Pfd, Afd = np.zeros_like(P), np.zeros_like(A)
    for a in range(3):
        for b in range(3):
            Fp, Fm = F.copy(), F.copy()
            Fp[:, a, b] += h
            Fm[:, a, b] -= h
            Wp, Pp, _ = cb(Fp)
            Wm, Pm, _ = cb(Fm)
            Pfd[:, a, b] = (Wp - Wm) / (2 * h)
            Afd[..., a, b] = (Pp - Pm) / (2 * h)
    return np.abs(P - Pfd).max() / np.abs(P).max(), np.abs(A - Afd).max() / np.abs(A).max()


def test_stress_and_tangent_match_finite_differences(cu_cb, rng):
    F = np.eye(3) + 0.03 * rng.normal(size=(4, 3, 3))
    errP, errA = _fd_check(cu_cb, F)
    assert errP < 1e-7
    assert errA < 1e-6


def test_energy_density_equals_supercell_energy(cu_cb, rng, potentials_dir):
    # W(F) must equal the energy per volume of a big periodic block deformed by F.
    F = np.eye(3) + 0.02 * rng.normal(size=(3, 3))
    W, P, _ = cu_cb(F[None])
    block = bulk("Cu", "fcc", a=3.615).repeat((4, 4, 4))
    block.set_cell(block.cell.array @ F.T, scale_atoms=True)
    block.calc = Calculator(EAM.from_file(potentials_dir / "Cu_mishin1.eam.alloy"), device="cpu")
    v0 = block.get_volume() / np.linalg.det(F)
    assert W[0] == pytest.approx(block.get_potential_energy() / v0, rel=1e-12)
    # Cauchy stress from the supercell equals P F^T / det F.
    sigma = P[0] @ F.T / np.linalg.det(F)
    s = block.get_stress(voigt=False)
    assert np.abs(sigma - s).max() < 1e-10


def test_cubic_symmetry(cu_cb):
    C = cu_cb.elastic_constants()
    assert C[0, 0] == pytest.approx(C[1, 1], rel=1e-10)
    assert C[3, 3] == pytest.approx(C[5, 5], rel=1e-10)
    assert np.abs(C[:3, 3:]).max() < 1e-8
    assert EV_PER_A3_TO_GPA == pytest.approx(160.21766, rel=1e-7)


def test_cu_mishin_lattice_constant(cu_cb):
    # Mishin et al. (2001) fitted Cu to a = 3.615 Å; the spline tables give 3.6149.
    a = 3.615 * cu_cb.stress_free_scale()
    assert a == pytest.approx(3.6149, abs=5e-5)


def test_relaxed_lattice_constant_does_not_depend_on_the_thread_count(potentials_dir):
    # Every lattice site and mesh vertex of an ``a = "relax"`` case scales with a_0: a
    # last-bit difference between 1 and 2 threads moved one vertex of the patch-test mesh.
    from atomistic.equilibrium import equilibrium_lattice_constant

    pot = EAM.from_file(potentials_dir / "Cu_mishin1.eam.alloy")
    before = torch.get_num_threads()
    values = []
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            values.append(
                equilibrium_lattice_constant(
                    structure="fcc", element="Cu", potential=pot, device="cpu"
                )
            )
            assert torch.get_num_threads() == threads  # restored
    finally:
        torch.set_num_threads(before)
    assert values[0] == values[1] == values[2]
    assert values[0] == pytest.approx(3.6149, abs=5e-5)


@pytest.mark.parametrize(
    "structure, element, a, c, file",
    [("diamond", "Si", 5.431, None, "Si.sw"), ("hcp", "Zr", 3.23, 5.17, "Zr_mm.eam.fs")],
)
def test_relaxed_multilattice_tangent_is_derivative_of_relaxed_stress(
    structure, element, a, c, file, potentials_dir, rng
):
    # With shifts relaxed for every F, P(F) = ∂W/∂F and the Schur-complement tangent must be
    # its derivative; the clamped tangent must not be (the shifts move under strain).
    # LAMMPS EAM tables are only C¹ (knot spacing ~1e-3 Å in r): a small step keeps the
    # central difference inside one cubic piece.
    from atomistic import StillingerWeber, unit_cell

    path = potentials_dir / file
    pot = StillingerWeber.from_file(path) if file.endswith(".sw") else EAM.from_file(path)
    cb = CauchyBorn(pot, unit_cell(structure, element=element, a=a, c=c), device="cpu")
    F = np.eye(3)[None] + 0.01 * rng.normal(size=(1, 3, 3))
    _, _, A = cb.evaluate(F, relaxed=True)
    _, _, A_clamped = cb.evaluate(F, relaxed=False)
    h = 1e-7
    Afd = np.zeros((1, 3, 3, 3, 3))
    for k in range(3):
        for m in range(3):
            Fp, Fm = F.copy(), F.copy()
            Fp[:, k, m] += h
            Fm[:, k, m] -= h
            Afd[..., k, m] = (
                cb.evaluate(Fp, tangent=False)[1] - cb.evaluate(Fm, tangent=False)[1]
            ) / (2 * h)
    scale = np.abs(Afd).max()
    assert np.abs(A.numpy() - Afd).max() < 1e-6 * scale
    assert np.abs(A_clamped.numpy() - Afd).max() > 1e-2 * scale


def _lammps_piola(cell, F, calc, *, relaxed):
    """First Piola stress ``J σ F⁻ᵀ`` (eV/Å³) of ``cell`` deformed affinely by ``F`` in LAMMPS;
    with ``relaxed`` the atoms are then relaxed at fixed cell (LAMMPS ``minimize``)."""
    atoms = cell.copy()
    atoms.set_cell(cell.cell.array @ F.T, scale_atoms=False)
    atoms.positions = cell.positions @ F.T
    if relaxed:
        atoms = calc.minimize(atoms, etol=0.0, ftol=1e-14)
        assert atoms.info["lammps_minimize"]["fmax"] < 1e-10
        s = atoms.calc.results["stress"]
    else:
        calc.calculate(atoms, ["stress"], all_changes)
        s = calc.results["stress"]
    sigma = np.array([[s[0], s[5], s[4]], [s[5], s[1], s[3]], [s[4], s[3], s[2]]])
    return np.linalg.det(F) * sigma @ np.linalg.inv(F).T


@pytest.mark.parametrize("strained", [False, True])
@pytest.mark.parametrize(
    "case, tol",
    [("diamond-primitive", 1e-8), ("diamond-cubic", 1e-8), ("hcp", 1e-5)],
)
def test_relaxed_and_clamped_multilattice_tangents_match_lammps(
    case, tol, strained, potentials_dir, rng
):
    # Stress and tangent, with and without relaxation of the basis, at F = I (the elastic
    # constants) and at a general F, against LAMMPS: central differences of its stress, the
    # atoms relaxed by its own minimiser for the relaxed-ion tangent. Multilattices: Si
    # diamond (SW) with 2 and 8 basis atoms (1 and 7 free shifts), hcp Zr (EAM). The EAM
    # tables are only C¹: steps of 1e-7 keep the pairs within one cubic piece (measured
    # 2e-9 here); the looser tolerance allows for one that is not.
    if case == "hcp":
        path, style, element = potentials_dir / "Zr_mm.eam.fs", "eam/fs", "Zr"
        # not a = 3.23: that puts the nearest neighbours on a knot (3.23 Å = 4250 Δr)
        pot, cell = EAM.from_file(path), unit_cell("hcp", element="Zr", a=3.2316, c=5.1696)
    else:
        path, style, element = potentials_dir / "Si.sw", "sw", "Si"
        pot = StillingerWeber.from_file(path)
        cell = (
            unit_cell("diamond", element="Si", a=5.431)
            if case == "diamond-primitive"
            else bulk("Si", "diamond", a=5.431, cubic=True)
        )
    cb = CauchyBorn(pot, cell, device="cpu")
    lmp = LammpsCalculator(style, path, [element])
    F = np.eye(3) + (0.02 * rng.standard_normal((3, 3)) if strained else 0.0)
    h = 1e-7 if case == "hcp" else 1e-6
    tangents = {}
    for relaxed in (False, True):
        _, P, A = (x[0].numpy() for x in cb.evaluate(F[None], relaxed=relaxed))
        P_ref = _lammps_piola(cell, F, lmp, relaxed=relaxed)
        assert np.abs(P - P_ref).max() < 1e-10 * np.abs(P_ref).max()
        A_ref = np.zeros((3, 3, 3, 3))
        for k in range(3):
            for m in range(3):
                dF = np.zeros((3, 3))
                dF[k, m] = h
                A_ref[..., k, m] = (
                    _lammps_piola(cell, F + dF, lmp, relaxed=relaxed)
                    - _lammps_piola(cell, F - dF, lmp, relaxed=relaxed)
                ) / (2 * h)
        scale = np.abs(A_ref).max()
        assert np.abs(A - A_ref).max() < tol * scale, (relaxed, np.abs(A - A_ref).max() / scale)
        if not strained:
            C_ref = voigt_from_tangent(A_ref) * EV_PER_A3_TO_GPA
            C = cb.elastic_constants(relaxed=relaxed)
            assert np.abs(C - C_ref).max() < tol * np.abs(C_ref).max()
        tangents[relaxed] = A_ref
    # relaxation matters here: the two answers differ by far more than the tolerance
    softening = np.abs(tangents[True] - tangents[False]).max() / np.abs(tangents[True]).max()
    assert softening > 100 * tol


def test_a_squashed_or_non_finite_F_has_infinite_energy_and_spares_the_others(cu_cb):
    """A line-search trial can squash an element: below MIN_STRETCH that F gets W = +inf (the
    search steps back), above it a pair list of its own, not one ~1/s_min³ times larger for
    the whole batch."""
    from atomistic.cauchy_born import MIN_STRETCH

    good = np.eye(3) + 0.01 * np.array([[1.0, 0.2, 0.0], [0.0, -0.5, 0.1], [0.3, 0.0, 0.2]])
    squashed = np.diag([0.4 * MIN_STRETCH, 1.0, 1.0])
    compressed = np.diag([0.7, 1.0, 1.0])  # evaluated, with a pair list of its own
    F = np.stack([good, squashed, np.full((3, 3), np.nan), np.eye(3), compressed])
    W, P, A = cu_cb.evaluate(F)
    W0, P0, A0 = cu_cb.evaluate(F[[0, 3]])
    Wc, Pc, Ac = cu_cb.evaluate(F[[4]])
    assert Wc[0] > W0[1] + 0.05  # compression costs energy (eV/Å³)
    np.testing.assert_allclose(W[4].item(), Wc[0].item(), rtol=1e-14)
    np.testing.assert_allclose(A[4].numpy(), Ac[0].numpy(), rtol=1e-12, atol=1e-15)
    assert np.isinf(W[1].item()) and W[1] > 0 and np.isinf(W[2].item())
    assert torch.isnan(P[1]).all() and torch.isnan(A[2]).all()
    np.testing.assert_allclose(W[[0, 3]].numpy(), W0.numpy(), rtol=1e-14)
    np.testing.assert_allclose(P[[0, 3]].numpy(), P0.numpy(), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(A[[0, 3]].numpy(), A0.numpy(), rtol=1e-12, atol=1e-15)


def test_a_lattice_invariant_shear_is_evaluated_and_costs_nothing(cu_cb):
    """A cell next to a dislocation core can be sheared by whole Burgers vectors across a
    plane or two; its smallest singular value then falls to ~0.36 but no two sites come
    closer, and the lattice maps onto itself: W is W(I), not the wall. Squashing sites
    together (below MIN_SEPARATION of the nearest distance) is the wall."""
    from atomistic.cauchy_born import MIN_SEPARATION, MIN_STRETCH

    n = np.array([1.0, 1.0, 1.0]) / np.sqrt(3.0)  # {111} glide plane
    s = np.array([1.0, -1.0, 0.0]) / np.sqrt(2.0)  # along b = a/2 <110>
    gamma = 2 * (3.615 / np.sqrt(2.0)) / (3.615 / np.sqrt(3.0))  # two b over one spacing
    sheared = np.eye(3) + gamma * np.outer(s, n)
    smin = np.linalg.svd(sheared, compute_uv=False).min()
    assert MIN_STRETCH < smin < 0.4
    nn = 3.615 / np.sqrt(2.0)
    # squash a nearest-neighbour bond [110]/2 to 0.45 of its length, nothing else
    e = np.array([1.0, 1.0, 0.0]) / np.sqrt(2.0)
    squashed = np.eye(3) - (1.0 - 0.9 * MIN_SEPARATION) * np.outer(e, e)
    assert np.linalg.svd(squashed, compute_uv=False).min() > MIN_STRETCH
    W, P, _ = cu_cb.evaluate(np.stack([np.eye(3), sheared, squashed]))
    np.testing.assert_allclose(W[1].item(), W[0].item(), rtol=1e-12)
    # W(F S) = W(F) for the lattice-invariant S, so P(S) = P(I) S^-T
    np.testing.assert_allclose(
        P[1].numpy(), P[0].numpy() @ np.linalg.inv(sheared).T, rtol=1e-9, atol=1e-14
    )
    assert np.isinf(W[2].item()) and W[2] > 0
    assert np.linalg.norm(squashed @ (e * nn)) < MIN_SEPARATION * nn


def test_smallest_singular_value_is_a_tight_lower_bound():
    """The closed form against LAPACK's SVD: never above it, at most 2e-7 below, also where
    singular values coincide (identity, rotations, repeated stretches) and at zero."""
    from scipy.spatial.transform import Rotation

    from atomistic.cauchy_born import smallest_singular_value

    rng = np.random.default_rng(11)
    R = Rotation.random(200, random_state=5).as_matrix()
    cases = [
        np.eye(3) + 0.03 * rng.standard_normal((2000, 3, 3)),
        rng.standard_normal((2000, 3, 3)),
        R,
        0.7 * R,
        R @ np.diag([0.5, 0.5 + 1e-12, 2.0]),
        R @ np.diag([0.3, 2.0, 2.0 + 1e-12]),
        R @ np.diag([1.0, 1.0, 1.0 + 1e-9]),
        np.zeros((1, 3, 3)),
    ]
    for F in cases:
        exact = np.linalg.svd(F, compute_uv=False).min(axis=1)
        bound = smallest_singular_value(torch.as_tensor(F)).numpy()
        assert np.all(bound <= exact)
        assert np.all(exact - bound < 2e-7)


def test_compiled_stress_of_a_simple_lattice_matches_autograd(cu_cb, rng, monkeypatch):
    # W and P without the tangent take one compiled pass per F (EAM, one basis atom); the
    # autograd path over the site energies (MULTISCALE_TORCH_ONLY) must give the same numbers,
    # also for a batch that spans several stretch bins and holds a squashed F
    F = np.eye(3) + 0.05 * rng.normal(size=(300, 3, 3))
    F[0] = np.eye(3)
    F[1] = np.diag([1.0, 1.0, 0.7])
    F[2] = np.diag([1.0, 1.0, 0.1])  # below MIN_STRETCH: W = inf, P = NaN either way
    W, P = cu_cb.stress(F)
    assert cu_cb._compiled_stress(torch.as_tensor(F[:1]), cu_cb._reference_pairs(0.9)) is not None
    monkeypatch.setenv("MULTISCALE_TORCH_ONLY", "1")
    W_ref, P_ref = cu_cb.stress(F)
    ok = np.isfinite(W_ref)
    assert not ok[2] and not np.isfinite(W[2]) and np.isnan(P[2]).all()
    np.testing.assert_allclose(W[ok], W_ref[ok], rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(P[ok], P_ref[ok], rtol=1e-11, atol=1e-14)
    _, P_full, _ = cu_cb(F[ok])  # the law with its tangent: the stress it returns agrees
    np.testing.assert_allclose(P[ok], P_full, rtol=1e-11, atol=1e-14)


def test_wall_margin_is_zero_exactly_where_the_energy_becomes_infinite(cu_cb, rng):
    """wall_margin against evaluate: on each side of the stretch and the separation walls,
    W is finite where the margin is positive and +inf where it is negative, and the margin
    is the distance to the wall (σ_min / MIN_STRETCH − 1, d_min / (MIN_SEPARATION d_nn) − 1)."""
    from scipy.spatial.transform import Rotation

    from atomistic.cauchy_born import MIN_SEPARATION, MIN_STRETCH

    e = np.array([1.0, 1.0, 0.0]) / np.sqrt(2.0)  # a nearest-neighbour bond
    R = Rotation.random(4, random_state=3).as_matrix()
    Fs, expected = [], []
    # a squashed and sheared cell behind the tip of cases/crack-cu (committee, load step 5):
    # σ_min at the stretch wall while no two sites come closer than 0.63 d_nn
    tip = np.array([[1.52297027, -1.01760947, 0.0], [1.15712382, -0.41343831, 0.0], [0, 0, 1]])
    U, S, Vt = np.linalg.svd(tip)
    for eps in (-1e-3, -1e-6, 1e-6, 1e-3, 0.2):
        Fs.append(R[0] @ U @ np.diag([*S[:2], MIN_STRETCH * (1.0 + eps)]) @ Vt)
        expected.append(eps)
        # along the bond: d_min = t nn, σ_min = t > MIN_STRETCH
        t = MIN_SEPARATION * (1.0 + eps)
        Fs.append(R[1] @ (np.eye(3) - (1.0 - t) * np.outer(e, e)))
        expected.append(eps)
    F = np.stack(Fs + [np.eye(3), R[2] @ np.diag([1.2, 1.1, 1.3]), np.full((3, 3), np.nan)])
    margin = cu_cb.wall_margin(F)
    np.testing.assert_allclose(margin[:-3], expected, rtol=1e-9, atol=1e-12)
    assert margin[-3] == 1.0 and margin[-2] == 1.0 and margin[-1] == -1.0  # capped; NaN F
    W, _, _ = cu_cb.evaluate(F[:-1], tangent=False)
    W = W.numpy()
    assert np.array_equal(np.isinf(W), margin[:-1] < 0)
    # random F across the walls: the margin's sign is the energy's finiteness
    G = np.eye(3) + 0.9 * rng.standard_normal((400, 3, 3))
    margin = cu_cb.wall_margin(G)
    W, _, _ = cu_cb.evaluate(G, tangent=False)
    W = W.numpy()
    sure = np.abs(margin) > 1e-6  # the closed-form σ_min carries a 1e-7 margin
    assert (margin < 0).sum() > 20 and (margin > 0).sum() > 20
    assert np.array_equal(np.isinf(W)[sure], (margin < 0)[sure])


def test_member_spread_is_the_spread_of_each_members_own_law(cu_cb):
    """member_spread of the shipped committee against each member's own Cauchy–Born energy
    (Committee.member(k), W_k Ω0 = its site energy): the same standard deviation, near zero
    at F = I and large where the lattice is squashed far from the training data; None for a
    potential without members."""
    from pathlib import Path

    from atomistic.mlip.serialization import load_network

    root = Path(__file__).resolve().parents[1]
    committee = load_network(root / "cases" / "potentials" / "cu-committee.pt")
    cell = bulk("Cu", "fcc", a=3.615)
    cb = CauchyBorn(committee, cell, device="cpu")
    tip = np.array([[1.52297027, -1.01760947, 0.0], [1.15712382, -0.41343831, 0.0], [0, 0, 1]])
    F = np.stack(
        [np.eye(3), np.eye(3) + 0.5 * (tip - np.eye(3)), np.eye(3) + 0.99 * (tip - np.eye(3))]
    )
    spread = cb.member_spread(F)
    each = (
        np.stack(
            [
                CauchyBorn(committee.member(k), cell, device="cpu")
                .evaluate(F, tangent=False)[0]
                .numpy()
                for k in range(committee.n_members)
            ]
        )
        * cb.volume
    )
    np.testing.assert_allclose(spread, each.std(axis=0), rtol=1e-9, atol=1e-12)
    assert spread[0] < 1e-3 < 0.3 < spread[2]
    assert cu_cb.member_spread(F) is None  # EAM
