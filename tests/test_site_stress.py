"""Per-atom first Piola stress: Cauchy–Born in the bulk, energy derivative, force identity."""

import numpy as np
import pytest
from ase import Atoms
from conftest import CU_A0

from atomistic import Calculator, Cylinder, Sphere, crystal, finite_cluster, site_stresses

OMEGA0 = CU_A0**3 / 4  # fcc: four atoms per cube
#: Mishin Cu's cutoff; an atom's P_i sees the embedding density of atoms up to 2 r_cut away.
RCUT = 5.50679


def _F(rng, scale=0.02):
    return np.eye(3) + scale * rng.normal(size=(3, 3))  # not symmetric


def _stresses(eam, atoms, u, **kw):
    return site_stresses(
        eam,
        reference_positions=atoms.positions,
        displacements=u,
        symbols=atoms.get_chemical_symbols(),
        cell=atoms.cell.array,
        pbc=atoms.pbc,
        volume_per_atom=OMEGA0,
        device="cpu",
        **kw,
    )


def _energy(eam, atoms, positions, cell):
    a = Atoms(atoms.get_chemical_symbols(), positions=positions, cell=cell, pbc=atoms.pbc)
    a.calc = Calculator(eam, device="cpu")
    return a.get_potential_energy(), a.get_forces()


def _fd_work(eam, atoms, u, C, dF, h=1e-5):
    """(E(+h δF) − E(−h δF)) / 2h with δF X added to every atom and C0 δFᵀ to the cell."""
    X, C0 = atoms.positions, atoms.cell.array
    e = [_energy(eam, atoms, X + u + s * h * X @ dF.T, C + s * h * C0 @ dF.T)[0] for s in (1, -1)]
    return (e[0] - e[1]) / (2 * h)


def test_periodic_bulk_equals_cauchy_born(eam, law, rng):
    F = _F(rng)
    block = crystal("fcc", element="Cu", a=CU_A0, size=3)
    X, C0 = block.positions, block.cell.array
    P = _stresses(eam, block, X @ (F - np.eye(3)).T, current_cell=C0 @ F.T)
    _, Pcb = law.stress(F[None])
    assert np.abs(P - Pcb[0]).max() < 1e-10 * np.abs(Pcb).max()
    tau = _stresses(eam, block, X @ (F - np.eye(3)).T, current_cell=C0 @ F.T, measure="kirchhoff")
    assert np.abs(tau - Pcb[0] @ F.T).max() < 1e-10 * np.abs(Pcb).max()


def test_piola_is_the_energy_derivative_under_homogeneous_increments(eam, rng):
    # Holds for any configuration: δE = Σ_i Ω0 P_i : δF when δF X is added to every atom.
    block = crystal("fcc", element="Cu", a=CU_A0, size=3)
    X, C0 = block.positions, block.cell.array
    F = _F(rng)
    u = X @ (F - np.eye(3)).T + 0.05 * rng.normal(size=X.shape)
    P = _stresses(eam, block, u, current_cell=C0 @ F.T)
    dF = rng.normal(size=(3, 3))
    work = OMEGA0 * np.einsum("iab,ab->", P, dF)
    assert work == pytest.approx(_fd_work(eam, block, u, C0 @ F.T, dF), rel=1e-7)


@pytest.fixture(scope="module")
def cluster():
    return finite_cluster(
        "fcc", element="Cu", a=CU_A0, region=Sphere(center=(0, 0, 0), radius=14.0)
    )


def test_cluster_interior_is_cauchy_born_and_surface_is_not(eam, law, rng, cluster):
    F = _F(rng)
    X = cluster.positions
    P = _stresses(eam, cluster, X @ (F - np.eye(3)).T)
    _, Pcb = law.stress(F[None])
    r = np.linalg.norm(X, axis=1)
    interior = r <= 14.0 - 2 * RCUT
    assert interior.sum() == 13  # the centre and its nearest neighbours
    err = np.abs(P - Pcb[0]).max(axis=(1, 2)) / np.abs(Pcb).max()
    assert err[interior].max() < 1e-10
    assert err[r > 14.0 - CU_A0].min() > 0.1  # the free surface


def test_cluster_sum_is_minus_forces_times_reference_sites(eam, rng, cluster):
    # Open cluster, no periodic shifts: Σ_e g_e ⊗ R_e = Σ_a ∂E/∂x_a ⊗ X_a = −Σ_a f_a ⊗ X_a.
    X = cluster.positions
    u = X @ (_F(rng) - np.eye(3)).T + 0.05 * rng.normal(size=X.shape)
    P = _stresses(eam, cluster, u)
    _, f = _energy(eam, cluster, X + u, cluster.cell.array)
    expected = -np.einsum("ia,iB->aB", f, X)
    assert np.abs(OMEGA0 * P.sum(0) - expected).max() < 1e-9 * np.abs(expected).max()


def test_slab_periodic_along_z(eam, law, rng):
    slab = finite_cluster(
        "fcc",
        element="Cu",
        a=CU_A0,
        region=Cylinder(center=(0, 0, 0), radius=14.0, axis=2),
        periodic_axes=(2,),
    )
    X, C0 = slab.positions, slab.cell.array
    F = _F(rng)
    P = _stresses(eam, slab, X @ (F - np.eye(3)).T, current_cell=C0 @ F.T)
    _, Pcb = law.stress(F[None])
    interior = np.linalg.norm(X[:, :2], axis=1) <= 14.0 - 2 * RCUT
    assert interior.sum() == 9  # the axis column and the eight nearest columns around it
    assert np.abs(P[interior] - Pcb[0]).max() < 1e-10 * np.abs(Pcb).max()
    u = X @ (F - np.eye(3)).T + 0.05 * rng.normal(size=X.shape)
    P = _stresses(eam, slab, u, current_cell=C0 @ F.T)
    dF = rng.normal(size=(3, 3))
    work = OMEGA0 * np.einsum("iab,ab->", P, dF)
    assert work == pytest.approx(_fd_work(eam, slab, u, C0 @ F.T, dF), rel=1e-7)
