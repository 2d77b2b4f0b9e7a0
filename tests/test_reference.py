"""The fully atomistic reference and the error measures against it.

The strain-error metric is checked on hand-computed examples; then ``multiscale reference``
on a tiny 2.5D void writes its summary, and ``multiscale run`` of the same case reports
``reference_error`` against it (and skips it for a different problem).
"""

import json
import subprocess
import sys

import numpy as np
import pytest

from atomistic.strain import match_sites, site_gradients, strain_error

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


def cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "multiscale", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
    )


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
