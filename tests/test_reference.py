"""The fully atomistic reference and the error measures against it.

The strain-error metric is checked on hand-computed examples and on analytic fields on fcc
(linear fields on a finite block, waves on a slab periodic along z); then ``multiscale reference``
on a tiny 2.5D void writes its summary, and ``multiscale run`` of the same case reports
``reference_error`` against it (and skips it for a different problem).
"""

import json

import numpy as np
import pytest
from conftest import cli

from atomistic.strain import (
    SHELL_FACTOR,
    energy_error,
    match_sites,
    site_gradients,
    strain_error,
)

TINY_VOID = """
[case]
kind = "coupled"
dimension = "2.5d"

[lattice]
structure = "fcc"
element = "Cu"
a = 3.614925

[potential]
file = "Cu_mishin1.eam.alloy"

[geometry]
outer = "disk"
radius = 34.0
core_radius = 14.2

[defect]
kind = "void"
radius = 3.0

[boundary]
strain = [[0.01, 0.0, 0.0], [0.0, -0.005, 0.0], [0.0, 0.0, 0.0]]

[solver]
fmax = 1e-6
"""


def cubic_grid(n=3):
    r = np.arange(n, dtype=float)
    return np.stack(np.meshgrid(r, r, r, indexing="ij"), axis=-1).reshape(-1, 3)


# -- the metric -----------------------------------------------------------------------------


def test_site_gradient_is_exact_for_affine_fields():
    X = cubic_grid()
    H = np.array([[0.1, -0.2, 0.3], [0.05, 0.0, -0.1], [0.2, 0.4, -0.3]])
    G = site_gradients(X, X @ H.T + 0.7, cutoff=1.1)
    np.testing.assert_allclose(G, np.broadcast_to(H, G.shape), atol=1e-13)


def test_site_gradient_of_the_centre_is_the_central_difference():
    """Simple cubic, unit spacing: the six neighbours give G[:, k] = (u(+e_k) − u(−e_k))/2."""
    X = cubic_grid()
    centre = 13  # (1, 1, 1)
    u = np.zeros_like(X)
    plus_x, minus_x = 22, 4  # (2, 1, 1) and (0, 1, 1)
    plus_y = 16  # (1, 2, 1)
    u[plus_x] = [0.2, 0.0, 0.0]
    u[minus_x] = [-0.1, 0.3, 0.0]
    u[plus_y] = [0.0, 0.0, 0.4]
    u[centre] = [5.0, 5.0, 5.0]  # the site's own value drops out of the symmetric fit
    G = site_gradients(X, u, cutoff=1.1)[centre]
    expected = np.array([[0.15, 0.0, 0.0], [-0.15, 0.0, 0.0], [0.0, 0.2, 0.0]])
    np.testing.assert_allclose(G, expected, atol=1e-13)


def test_strain_error_is_zero_for_identical_fields_and_matches_a_hand_value():
    X = cubic_grid()
    rng = np.random.default_rng(1)
    u_ref = 0.05 * rng.standard_normal(X.shape)
    D = np.diag([0.01, 0.0, 0.0])
    mask = np.zeros(len(X), bool)
    mask[13] = True
    assert (
        strain_error(positions=X, reference=u_ref, approximation=u_ref, strain=D, cutoff=1.1) == 0
    )

    # reference: only the +x neighbour of the centre moves, by (0.2, 0, 0): G_ref = 0.1 e_x e_x
    # coupled: nothing moves: G_c = 0. Over the centre alone, with F − I = diag(0.01, 0, 0):
    # |G_c − G_ref| = 0.1 and |G_ref − (F − I)| = 0.09, so the error is 0.1 / 0.09.
    u_ref = np.zeros_like(X)
    u_ref[22] = [0.2, 0.0, 0.0]
    err = strain_error(
        positions=X,
        reference=u_ref,
        approximation=np.zeros_like(X),
        strain=D,
        cutoff=1.1,
        mask=mask,
    )
    assert err == pytest.approx(0.1 / 0.09, rel=1e-12)


def test_site_gradients_see_neighbours_across_the_periodic_axis():
    X = cubic_grid()
    H = np.zeros((3, 3))
    H[0, 2] = 0.1  # u_x = 0.1 z, made periodic with period 3 by a jump of 0.3 across z=3 → 0
    u = X @ H.T
    cell = np.diag([10.0, 10.0, 3.0])
    G = site_gradients(X, u, cutoff=1.1, cell=cell, pbc=(False, False, True))
    middle = np.flatnonzero(X[:, 2] == 1.0)
    np.testing.assert_allclose(G[middle, 0, 2], 0.1, atol=1e-13)
    bottom = np.flatnonzero(X[:, 2] == 0.0)  # its −z neighbour is the z = 2 layer
    assert np.all(G[bottom, 0, 2] < 0.1 - 1e-3)


def test_match_sites_modulo_the_slab_period():
    sites = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 1.5], [2.0, 1.0, 2.9999999]])
    points = np.array([[1.0, 0.0, 1.5], [2.0, 1.0, -1e-7], [5.0, 5.0, 5.0]])
    assert match_sites(points, sites, period=3.0).tolist() == [1, 2, -1]
    assert match_sites(points, sites).tolist() == [1, -1, -1]


A_CU = 3.615
D_FAR = np.array([[0.01, 0.004, 0.0], [0.0, -0.005, 0.002], [0.003, 0.0, 0.0]])  # F − I


def fcc_sites(n):
    """fcc sites of an ``n[0] × n[1] × n[2]`` block of cubic cells, Å (lattice points
    ``(i, j, k) a/2`` with ``i + j + k`` even)."""
    idx = np.stack(np.meshgrid(*[np.arange(2 * m) for m in n], indexing="ij"), -1).reshape(-1, 3)
    return 0.5 * A_CU * idx[idx.sum(1) % 2 == 0]


def fcc_shell():
    return SHELL_FACTOR * A_CU / np.sqrt(2)


def test_linear_fields_on_an_fcc_block_give_exact_gradients_and_error():
    # Every site of a finite fcc block, corners and edges included, has first-shell
    # neighbours spanning 3D, so a linear field is fitted exactly there; the error of one
    # linear field against another is then |H_c − H_ref| / |H_ref| (F − I cancels).
    X = fcc_sites((3, 3, 3))
    rng = np.random.default_rng(4)
    H_ref, H_c = 0.01 * rng.standard_normal((2, 3, 3))
    u_ref = X @ (D_FAR + H_ref).T + 0.3
    u_c = X @ (D_FAR + H_c).T - 0.1
    G = site_gradients(X, np.stack([u_ref, u_c]), cutoff=fcc_shell())
    np.testing.assert_allclose(G[0], np.broadcast_to(D_FAR + H_ref, G[0].shape), atol=1e-14)
    np.testing.assert_allclose(G[1], np.broadcast_to(D_FAR + H_c, G[1].shape), atol=1e-14)
    mask = rng.random(len(X)) < 0.3
    err = strain_error(
        positions=X, reference=u_ref, approximation=u_c, strain=D_FAR, cutoff=fcc_shell(), mask=mask
    )
    assert err == pytest.approx(np.linalg.norm(H_c - H_ref) / np.linalg.norm(H_ref), rel=1e-12)


def test_strain_error_of_waves_on_a_periodic_fcc_slab_is_the_hand_value():
    """A slab periodic along z (as a 2.5D reference), open along x and y, and two waves:

        u_ref = (F − I) X + ε sin(k x) e_y + η sin(k z) e_x,     k = 2π / (2a)
        u_c   = (F − I) X + ε sin(k x + φ) e_y + η sin(k z) e_x

    On a site with its full shell of 12 neighbours r_j (the open surfaces excluded) the
    least-squares gradient of sin(k·X) e is e ⊗ [Σ_j sin(k·r_j) r_j] [Σ_j r_j ⊗ r_j]⁻¹ cos(k·X)
    (the Σ_j (cos(k·r_j) − 1) r_j part cancels between r_j and −r_j); for fcc,
    Σ_j r_j ⊗ r_j = 2a² I and Σ_j sin(k r_jx) r_j = 4a sin(ka/2) e_x, so the gradient is
    (2/a) sin(ka/2) cos(k x) e ⊗ e_x = (2/a) cos(k x) e ⊗ e_x here. Over sites spread evenly
    over whole periods in x and z (mean cos² = 1/2, and mean (cos(θ + φ) − cos θ)² = 1 − cos φ),
    the error is ε · 2|sin(φ/2)| / sqrt(ε² + η²) = 0.6 for ε = 0.03, η = 0.04, φ = π/3.
    """
    X = fcc_sites((6, 6, 2))
    D_SLAB = D_FAR * [1.0, 1.0, 0.0]  # 2.5D: u is periodic along z, F e_z = e_z
    period = 2 * A_CU
    cell, pbc = np.diag([1.0, 1.0, period]), (False, False, True)
    k, eps, eta, phi = 2 * np.pi / period, 0.03, 0.04, np.pi / 3
    x, z = X[:, 0], X[:, 2]
    e_x, e_y = np.eye(3)[0], np.eye(3)[1]
    u_ref = X @ D_SLAB.T + eps * np.outer(np.sin(k * x), e_y) + eta * np.outer(np.sin(k * z), e_x)
    u_c = u_ref + eps * np.outer(np.sin(k * x + phi) - np.sin(k * x), e_y)
    # a 2a × 2a block of cells in x and y, all of z, well inside the open faces
    inner = (X[:, 0] >= 2 * A_CU) & (X[:, 0] < 4 * A_CU) & (X[:, 1] >= 2 * A_CU)
    inner &= X[:, 1] < 4 * A_CU
    assert inner.sum() == 2 * 2 * 2 * 4

    G = site_gradients(X, u_ref, cutoff=fcc_shell(), cell=cell, pbc=pbc)
    expected = np.broadcast_to(D_SLAB, (len(X), 3, 3)).copy()
    expected[:, 1, 0] += eps * (2 / A_CU) * np.cos(k * x)
    expected[:, 0, 2] += eta * (2 / A_CU) * np.cos(k * z)
    np.testing.assert_allclose(G[inner], expected[inner], atol=1e-14)

    kw = dict(positions=X, strain=D_SLAB, cutoff=fcc_shell(), cell=cell, pbc=pbc, mask=inner)
    assert strain_error(reference=u_ref, approximation=u_c, **kw) == pytest.approx(0.6, rel=1e-12)
    # and 1 for the homogeneous predictor, 0 for the reference itself
    assert strain_error(reference=u_ref, approximation=X @ D_SLAB.T, **kw) == pytest.approx(1.0)
    assert strain_error(reference=u_ref, approximation=u_ref, **kw) == 0.0


# -- reference and run ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_void(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-void")
    (folder / "case.toml").write_text(TINY_VOID)
    out = folder / "out"
    reference = cli("reference", folder, "--output", out)
    run = cli("run", folder, "--output", out)
    return folder, out, reference, run


def test_reference_writes_its_summary(tiny_void):
    import ase.io

    _, out, proc, _ = tiny_void
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "reference" / "summary.json").read_text())
    keys = {
        "status",
        "energy_eV",
        "n_atoms",
        "max_force_eV_per_A",
        "wall_time_s",
        "relaxation_energy_eV",
        "n_free_atoms",
    }
    assert keys <= summary.keys()
    assert summary["status"] == "converged"
    assert summary["max_force_eV_per_A"] <= 1e-4
    assert summary["relaxation_energy_eV"] < -1e-3  # the void relaxes and lowers the energy
    atoms = ase.io.read(out / "reference" / "atoms.extxyz")
    assert len(atoms) == summary["n_atoms"]
    X = atoms.arrays["reference_position"]
    u = atoms.arrays["displacement"]
    np.testing.assert_allclose(atoms.positions, X + u, atol=1e-6)
    held = atoms.arrays["fixed"] == 1
    assert (~held).sum() == summary["n_free_atoms"]
    # held atoms sit exactly at the boundary displacement (F − I) X
    D = np.array([[0.01, 0, 0], [0, -0.005, 0], [0, 0, 0]])
    np.testing.assert_allclose(u[held], X[held] @ D.T, atol=1e-6)
    # the shell holds every site within r_cut outside the disk; none of the free ones is out
    r = np.linalg.norm(X[:, :2], axis=1)
    assert r[~held].max() < 34.0 and r[held].max() > 34.0 + 5.0
    assert np.abs(u[~held] - X[~held] @ D.T).max() > 1e-3


def test_run_reports_reference_error(tiny_void):
    _, out, _, proc = tiny_void
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    error = summary["reference_error"]
    ref = json.loads((out / "reference" / "summary.json").read_text())
    assert error["relaxation_energy_reference_eV"] == ref["relaxation_energy_eV"]
    assert error["relaxation_energy_coupled_eV"] == pytest.approx(summary["relaxation_energy_eV"])
    assert error["energy_error_eV"] == pytest.approx(
        abs(summary["relaxation_energy_eV"] - ref["relaxation_energy_eV"]), abs=1e-12
    )
    # a consistent, converged method on this small problem: percent-level errors (measured:
    # 0.7 % in energy, 3.7 % in strain; the uncorrected continuum thickness gave 20 %)
    assert error["energy_error_rel"] == pytest.approx(
        error["energy_error_eV"] / abs(ref["relaxation_energy_eV"]), rel=1e-12
    )
    assert error["energy_error_eV"] < 0.05 * abs(ref["relaxation_energy_eV"])
    assert 0 < error["strain_error_rel"] < 0.1


def test_reference_of_another_problem_is_skipped():
    from types import SimpleNamespace

    from multiscale.kinds.coupled.compare import reference_error

    key = {"void_radius": 3.0, "strain": [[0.01, 0, 0], [0, 0, 0], [0, 0, 0]]}
    run = SimpleNamespace(setup=SimpleNamespace(problem_key=lambda: key))
    summary = {"problem": dict(key, void_radius=2.5), "status": "converged"}
    error = reference_error(run, summary, None, path="ref")
    assert "void_radius" in error["skipped"] and "strain" not in error["skipped"]
    summary = {"problem": key, "status": "not_converged"}
    assert "did not converge" in reference_error(run, summary, None, path="ref")["skipped"]


def test_energy_error_is_relative_to_the_reference():
    """|ΔE − ΔE_ref| and that over |ΔE_ref|, by hand: not over the approximation's ΔE."""
    assert energy_error(-1.5, -2.0) == {"energy_error_eV": 0.5, "energy_error_rel": 0.25}
    assert energy_error(-2.5, -2.0)["energy_error_rel"] == 0.25
    assert np.isnan(energy_error(0.1, 0.0)["energy_error_rel"])
