"""Lattices, regions and defects: counts, densities, neighbour shells and EMT equivalence."""

import ase.io
import numpy as np
import pytest
from ase.calculators.emt import EMT
from ase.neighborlist import neighbor_list

from atomistic.defects import interstitial, vacancy, void
from atomistic.lattice import LatticeError, crystal, finite_cluster, unit_cell
from atomistic.regions import (
    REGION_CORE,
    REGION_FAR,
    REGION_HANDSHAKE,
    REGION_PAD,
    Box,
    Cylinder,
    Sphere,
    carve,
    set_region,
)

A = 3.6
FCC_111 = [[1, -1, 0], [1, 1, -2], [1, 1, 1]]
BCC_111 = [[1, 1, 1], [-1, 1, 0], [-1, -1, 2]]
FCC_110 = [[1, 0, 0], [0, 1, 1], [0, -1, 1]]

# (structure, orientation, atoms in the oriented cell, atoms per conventional cell)
CELLS = [
    ("fcc", None, 4, 4),
    ("fcc", FCC_111, 6, 4),
    ("fcc", FCC_110, 2, 4),
    ("bcc", None, 2, 2),
    ("bcc", BCC_111, 6, 2),
    ("diamond", None, 8, 8),
    ("diamond", FCC_111, 12, 8),
]

# (structure, orientation, nearest-neighbour distance / a, coordination)
SHELLS = [
    ("fcc", None, 1 / np.sqrt(2), 12),
    ("fcc", FCC_111, 1 / np.sqrt(2), 12),
    ("bcc", None, np.sqrt(3) / 2, 8),
    ("bcc", BCC_111, np.sqrt(3) / 2, 8),
    ("diamond", None, np.sqrt(3) / 4, 4),
    ("diamond", FCC_111, np.sqrt(3) / 4, 4),
    ("hcp", None, 1.0, 12),
]


@pytest.mark.parametrize(("structure", "orientation", "n_cell", "n_conv"), CELLS)
def test_atom_count_and_density(structure, orientation, n_cell, n_conv):
    atoms = crystal(structure, element="Cu", a=A, orientation=orientation, size=(2, 3, 2))
    assert len(atoms) == 12 * n_cell
    assert np.allclose(atoms.cell.array, np.diag(np.diag(atoms.cell.array)))
    assert len(atoms) / atoms.get_volume() == pytest.approx(n_conv / A**3, rel=1e-12)
    scaled = atoms.get_scaled_positions(wrap=False)
    assert scaled.min() >= 0 and scaled.max() < 1


def test_hcp_density_and_cell():
    c = 1.62 * A
    atoms = crystal("hcp", element="Mg", a=A, c=c, size=(2, 1, 3))
    assert len(atoms) == 4 * 6
    assert atoms.cell.lengths() == pytest.approx([2 * A, np.sqrt(3) * A, 3 * c])
    # two atoms per hexagonal cell of volume (√3/2) a² c
    assert len(atoms) / atoms.get_volume() == pytest.approx(2 / (np.sqrt(3) / 2 * A**2 * c))


@pytest.mark.parametrize(("structure", "orientation", "nn", "coordination"), SHELLS)
def test_nearest_neighbours_and_coordination(structure, orientation, nn, coordination):
    atoms = crystal(structure, element="Cu", a=A, orientation=orientation, size=3)
    i, d = neighbor_list("id", atoms, 1.1 * A)
    assert d.min() == pytest.approx(nn * A, rel=1e-10)  # also rules out duplicate atoms
    first_shell = np.bincount(i[d < (nn + 0.05) * A], minlength=len(atoms))
    assert np.all(first_shell == coordination)


@pytest.mark.parametrize(
    ("structure", "orientation"),
    [("fcc", None), ("fcc", FCC_111), ("bcc", BCC_111), ("diamond", FCC_111), ("hcp", None)],
)
def test_unit_cell_matches_crystal_under_emt(structure, orientation):
    small = unit_cell(structure, element="Cu", a=A, orientation=orientation)
    large = crystal(structure, element="Cu", a=A, orientation=orientation, size=2)
    assert len(small) == {"fcc": 1, "bcc": 1, "diamond": 2, "hcp": 2}[structure]
    assert small.get_volume() / len(small) == pytest.approx(large.get_volume() / len(large))
    energies = []
    for atoms in (small, large):
        atoms.calc = EMT()
        energies.append(atoms.get_potential_energy() / len(atoms))
    assert energies[0] == pytest.approx(energies[1], abs=1e-9)


def test_element_per_sublattice():
    zincblende = crystal("diamond", element=["Ga", "As"], a=5.65, size=2)
    assert zincblende.get_chemical_formula() == "As32Ga32"
    i, j = neighbor_list("ij", zincblende, 0.45 * 5.65)
    symbols = np.array(zincblende.get_chemical_symbols())
    assert np.all(symbols[i] != symbols[j])  # every bond joins Ga to As
    assert len(unit_cell("diamond", element=["Ga", "As"], a=5.65)) == 2


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(structure="fcx"), "unknown lattice 'fcx'; allowed: bcc, diamond, fcc, hcp"),
        (dict(orientation=[[1, 1, 0], [1, 0, 0], [0, 0, 1]]), "not mutually orthogonal"),
        (dict(orientation=[[1, 0, 0], [0, 1, 0], [0, 0, -1]]), "left-handed"),
        (dict(orientation=[[1, 0, 0], [0, 1, 0]]), "three integer Miller axes"),
        (dict(structure="hcp", orientation=FCC_111), "hcp supports only orientation=None"),
        (dict(c=5.0), "c is only used for hcp"),
        (dict(a=-1.0), "a=-1.0"),
        (dict(size=(1, 0, 1)), "size"),
        (dict(element=["Cu", "Ni"]), "one per sublattice"),
    ],
)
def test_crystal_rejects_bad_input(kwargs, match):
    options = dict(structure="fcc", element="Cu", a=A) | kwargs
    structure = options.pop("structure")
    with pytest.raises(LatticeError, match=match.replace("(", r"\(").replace(")", r"\)")):
        crystal(structure, **options)


def test_builders_label_core_and_region_survives_extxyz(tmp_path):
    atoms = crystal("fcc", element="Cu", a=A, orientation=FCC_111, size=2)
    assert np.all(atoms.arrays["region"] == REGION_CORE)
    codes = np.arange(len(atoms)) % 4
    set_region(atoms, codes)
    path = tmp_path / "labelled.extxyz"
    ase.io.write(path, atoms, format="extxyz")
    back = ase.io.read(path, format="extxyz")
    assert np.array_equal(back.arrays["region"], codes)
    assert np.allclose(back.positions, atoms.positions)


def test_set_region_names_and_errors():
    atoms = crystal("bcc", element="Fe", a=2.87)
    set_region(atoms, ["pad", "continuum"])
    assert atoms.arrays["region"].tolist() == [REGION_PAD, REGION_FAR]
    set_region(atoms, REGION_HANDSHAKE)
    assert atoms.arrays["region"].tolist() == [REGION_HANDSHAKE] * 2
    with pytest.raises(ValueError, match="'bulk'"):
        set_region(atoms, ["core", "bulk"])
    with pytest.raises(ValueError, match=r"\[7\]"):
        set_region(atoms, [0, 7])
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        set_region(atoms, [0, 1, 2])


def test_region_contains_matches_direct_formulas():
    rng = np.random.default_rng(0)
    x = rng.uniform(-10, 10, size=(2000, 3))
    centre = np.array([1.0, -2.0, 0.5])
    box = Box((-3, -4, -np.inf), (5, 2, 1))
    expected = (x[:, 0] >= -3) & (x[:, 0] <= 5) & (x[:, 1] >= -4) & (x[:, 1] <= 2) & (x[:, 2] <= 1)
    assert np.array_equal(box.contains(x), expected)
    assert np.array_equal(Sphere(centre, 6.0).contains(x), np.linalg.norm(x - centre, axis=1) <= 6)
    radial = np.hypot(x[:, 0] - centre[0], x[:, 2] - centre[2])
    assert np.array_equal(Cylinder(centre, 4.0, axis=1).contains(x), radial <= 4)
    finite = Cylinder(centre, 4.0, axis=(0, 3.0, 0), length=6.0)
    assert np.array_equal(finite.contains(x), (radial <= 4) & (np.abs(x[:, 1] - centre[1]) <= 3))
    tilted = Cylinder((0, 0, 0), 2.0, axis=(1, 1, 0))
    assert tilted.contains(
        np.array([[5.0, 5.0, 1.9], [5.0, 5.0, 2.1], [1.0, -1.0, 0.0]])
    ).tolist() == [
        True,
        False,
        True,
    ]
    assert np.all(np.isinf(tilted.bounds()[1][:2])) and tilted.bounds()[1][2] == pytest.approx(2)
    with pytest.raises(ValueError, match="radius"):
        Sphere(centre, -1.0)


def test_carve_cylinder_keeps_period_along_z():
    bulk = crystal("fcc", element="Cu", a=A, orientation=FCC_111, size=(6, 4, 1))
    axis_point = 0.5 * bulk.cell.lengths()
    carved = carve(bulk, Cylinder(axis_point, 5.0, axis=2), pbc=(False, False, True))
    inside = np.hypot(*(bulk.positions[:, :2] - axis_point[:2]).T) <= 5.0
    assert len(carved) == inside.sum() and 0 < len(carved) < len(bulk)
    assert carved.pbc.tolist() == [False, False, True]
    assert np.allclose(carved.cell.array, bulk.cell.array)
    assert bulk.pbc.all()  # input untouched


def test_finite_cluster_sphere_matches_carving_a_big_crystal():
    region = Sphere((0.3, -0.2, 0.1), 9.0)
    cluster = finite_cluster("fcc", element="Cu", a=A, region=region)
    big = crystal("fcc", element="Cu", a=A, size=8)
    big.positions -= 4 * A
    assert len(cluster) == region.contains(big.positions).sum()
    assert not cluster.pbc.any()
    assert np.all(cluster.arrays["region"] == REGION_CORE)
    assert np.min(np.linalg.norm(cluster.positions, axis=1)) == pytest.approx(0, abs=1e-9)


def test_finite_cluster_periodic_cylinder():
    a = 2.87
    region = Cylinder((0, 0, 0), 12.0, axis=2)
    column = finite_cluster(
        "bcc",
        element="Fe",
        a=a,
        region=region,
        orientation=[[1, 1, -2], [-1, 1, 0], [1, 1, 1]],
        periodic_axes=(2,),
    )
    assert column.pbc.tolist() == [False, False, True]
    assert column.cell.lengths()[2] == pytest.approx(a * np.sqrt(3) / 2)  # b of ½⟨111⟩
    # one atom per bcc site in a prism of area πr² and height b: n ≈ 2 πr² b / a³
    expected = 2 * np.pi * 12.0**2 * (a * np.sqrt(3) / 2) / a**3
    assert len(column) == pytest.approx(expected, rel=0.1)
    assert np.all(np.hypot(column.positions[:, 0], column.positions[:, 1]) <= 12.0)
    with pytest.raises(LatticeError, match="bounded along periodic axis 2"):
        finite_cluster("fcc", element="Cu", a=A, region=Sphere((0, 0, 0), 5.0), periodic_axes=(2,))
    with pytest.raises(LatticeError, match="unbounded along axis 2"):
        finite_cluster("fcc", element="Cu", a=A, region=region)


def test_vacancy_removes_the_atom_nearest_the_point():
    bulk = crystal("bcc", element="Fe", a=2.87, orientation=BCC_111, size=(2, 3, 1))
    point = np.array([3.1, 2.2, 4.4])
    nearest = np.argmin(np.linalg.norm(bulk.positions - point, axis=1))
    defective = vacancy(bulk, near=point)
    assert len(defective) == len(bulk) - 1
    assert np.allclose(defective.positions, np.delete(bulk.positions, nearest, axis=0))
    assert len(vacancy(bulk, index=5)) == len(bulk) - 1
    centre = 0.5 * bulk.cell.lengths()
    default = vacancy(bulk)
    removed = np.argmin(np.linalg.norm(bulk.positions - centre, axis=1))
    assert np.allclose(default.positions, np.delete(bulk.positions, removed, axis=0))
    with pytest.raises(IndexError, match="index 999"):
        vacancy(bulk, index=999)


def test_void_removes_exactly_the_atoms_within_radius():
    bulk = crystal("fcc", element="Cu", a=A, size=6)
    centre, radius = np.array([10.1, 10.9, 9.7]), 6.3
    inside = np.linalg.norm(bulk.positions - centre, axis=1) <= radius
    holed = void(bulk, center=centre, radius=radius)
    assert inside.sum() > 20
    assert len(holed) == len(bulk) - inside.sum()
    assert np.min(np.linalg.norm(holed.positions - centre, axis=1)) > radius


@pytest.mark.parametrize(
    ("structure", "a", "site", "distance", "count", "orientation"),
    [
        ("fcc", 3.61, "octahedral", 0.5, 6, FCC_111),
        ("fcc", 3.61, "tetrahedral", np.sqrt(3) / 4, 4, None),
        ("bcc", 2.87, "octahedral", 0.5, 2, BCC_111),
        ("bcc", 2.87, "tetrahedral", np.sqrt(5) / 4, 4, None),
    ],
)
def test_interstitial_sites_have_the_right_neighbour_shell(
    structure, a, site, distance, count, orientation
):
    bulk = crystal(structure, element="Fe", a=a, orientation=orientation, size=3)
    defective = interstitial(bulk, site=site, element="H")
    assert len(defective) == len(bulk) + 1 and defective[-1].symbol == "H"
    assert defective.arrays["region"][-1] == REGION_CORE
    i, d = neighbor_list("id", defective, 1.01 * distance * a)
    d_new = np.sort(d[i == len(bulk)])
    assert len(d_new) == count
    assert np.allclose(d_new, distance * a)
    assert len(bulk) == 27 * len(crystal(structure, element="Fe", a=a, orientation=orientation))


def test_interstitial_explicit_position_and_mismatch():
    bulk = crystal("fcc", element="Cu", a=A, size=2)
    added = interstitial(bulk, site=(0.1, 0.2, 0.3))
    assert added[-1].symbol == "Cu" and np.allclose(added[-1].position, [0.1, 0.2, 0.3])
    with pytest.raises(LatticeError, match="match the atoms"):
        interstitial(bulk, site="octahedral", orientation=FCC_111)
    with pytest.raises(ValueError, match="'hexadecahedral'"):
        interstitial(bulk, site="hexadecahedral")
