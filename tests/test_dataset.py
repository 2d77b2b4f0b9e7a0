"""Training data: generators, oracle labels, the extxyz dataset, ``multiscale dataset``.

Labels come from LAMMPS (Cu_mishin1); they are checked against the project's torch EAM (an
independent implementation) and, for clusters, against the periodic parent they were cut from.
"""

import math

import ase.io
import numpy as np
import pytest
from ase import Atoms
from ase.calculators.emt import EMT

from atomistic import EAM, Calculator
from atomistic.mlip.configurations import (
    LatticeSpec,
    cluster_around,
    defect_cluster,
    interstitial_cell,
    relaxer,
    sheared_cell,
    strained_bulk,
    surface_orientation,
    surface_slab,
    vacancy_cell,
    void_cell,
)
from atomistic.mlip.dataset import (
    DatasetError,
    append_dataset,
    label,
    label_all,
    read_dataset,
    write_dataset,
)
from atomistic.mlip.oracles import make_oracle, oracle_cutoff
from multiscale.cli import main as cli_main

A = 3.615
CU = LatticeSpec(structure="fcc", element="Cu", a=A)
LAMMPS_CU = {"kind": "lammps", "pair_style": "eam/alloy", "file": "Cu_mishin1.eam.alloy"}
INFO_KEYS = {"energy", "config_type", "oracle"}


@pytest.fixture(scope="module")
def oracle():
    return make_oracle(LAMMPS_CU)


@pytest.fixture(scope="module")
def r_cut(oracle):
    return oracle_cutoff(oracle)


def _cell_gradient(before: Atoms, after: Atoms) -> np.ndarray:
    """F with ``after.cell = before.cell Fᵀ``."""
    return np.linalg.solve(before.cell.array, after.cell.array).T


# --------------------------------------------------------------------------- generators


def test_strained_bulk_strain_is_bounded_and_spans_compression_and_expansion(rng):
    host = CU.build(2)
    volumes = []
    for _ in range(40):
        atoms = strained_bulk(CU, size=2, max_strain=0.1, rattle=0.0, rng=rng)
        f = _cell_gradient(host, atoms)
        eps = f - np.eye(3)
        assert atoms.info["config_type"] == "bulk"
        assert np.allclose(eps, eps.T, atol=1e-12)
        assert np.allclose(eps, atoms.info["strain"], atol=1e-12)
        assert np.abs(np.linalg.eigvalsh(eps)).max() <= 0.1 + 1e-12
        assert np.allclose(atoms.positions, host.positions @ f.T, atol=1e-10)
        volumes.append(np.linalg.det(f))
    assert min(volumes) < 0.9**3 * 1.1 and max(volumes) > 1.1**3 * 0.9  # |v| near 0.1 both ways
    rattled = strained_bulk(CU, size=3, max_strain=0.0, rattle=0.1, rng=rng)
    assert np.std(rattled.positions - CU.build(3).positions) == pytest.approx(0.1, rel=0.1)


def test_vacancy_and_interstitial_counts(rng):
    n = len(CU.build(3))
    atoms = vacancy_cell(CU, size=3, vacancies=3, rattle=0.0, rng=rng)
    assert len(atoms) == n - 3 and atoms.info["config_type"] == "vacancy"
    assert np.all(atoms.pbc) and atoms.arrays["force_mask"].all()
    atoms = interstitial_cell(CU, size=3, interstitials=2, rattle=0.0, rng=rng)
    assert len(atoms) == n + 2 and atoms.info["config_type"] == "interstitial"
    d = atoms.get_distances(-1, range(n), mic=True)
    assert d.min() == pytest.approx(A / 2)  # octahedral site: a/2 from its six neighbours


@pytest.mark.parametrize("kind", ["lammps", "emt"])
def test_relaxed_vacancy_has_small_forces(kind, rng):
    calc = make_oracle(LAMMPS_CU if kind == "lammps" else {"kind": "emt"})
    unrelaxed = vacancy_cell(CU, size=2, rattle=0.0, rng=rng)
    relaxed = vacancy_cell(CU, size=2, rattle=0.0, rng=rng, relax=relaxer(calc, fmax=0.01))
    fmax = []
    for atoms in (unrelaxed, relaxed):
        atoms.calc = calc
        fmax.append(np.linalg.norm(atoms.get_forces(), axis=1).max())
    assert fmax[0] > 0.05 and fmax[1] < 0.01  # LAMMPS: global 2-norm; FIRE: per atom


@pytest.mark.parametrize(
    ("miller", "spacing"),
    [((1, 0, 0), A / 2), ((1, 1, 0), A / (2 * math.sqrt(2))), ((1, 1, 1), A / math.sqrt(3))],
)
def test_surface_slab_has_vacuum_along_the_normal_and_the_plane_spacing(miller, spacing, rng):
    atoms = surface_slab(
        CU, miller=miller, thickness=10.0, width=7.0, vacuum=12.0, rattle=0.0, rng=rng
    )
    assert atoms.info["config_type"] == "surface"
    assert atoms.pbc.tolist() == [True, True, False]
    rows = surface_orientation(miller)
    assert np.array_equal(rows[2] // np.gcd.reduce(rows[2]), np.array(miller))
    cell = atoms.cell.array
    assert np.allclose(cell[:2, 2], 0) and np.allclose(cell[2, :2], 0)
    z = np.sort(np.unique(np.round(atoms.positions[:, 2], 6)))
    assert np.allclose(np.diff(z), spacing)
    assert z.max() - z.min() >= 10.0 - spacing - 1e-9
    assert cell[2, 2] - (z.max() - z.min()) == pytest.approx(12.0 + spacing)
    assert min(cell[0, 0], cell[1, 1]) >= 7.0
    counts = np.unique(np.round(atoms.positions[:, 2], 6), return_counts=True)[1]
    assert np.all(counts == counts[0])  # whole planes


def test_strained_periodic_slab_is_the_slab_strained_in_plane_and_gets_a_stress(oracle):
    kw = {"miller": (1, 1, 0), "thickness": 10.0, "width": 7.0, "vacuum": 12.0, "rattle": 0.0}
    plain = surface_slab(CU, rng=np.random.default_rng(3), **kw)
    # without max_strain nothing is drawn: the next draw is the same as before the option
    a, b = np.random.default_rng(5), np.random.default_rng(5)
    surface_slab(CU, rng=a, **{**kw, "rattle": 0.05})
    surface_slab(CU, rng=b, **{**kw, "rattle": 0.05}, max_strain=0.0, periodic=True)
    assert a.uniform() == b.uniform()
    strained = surface_slab(CU, rng=np.random.default_rng(3), max_strain=0.03, periodic=True, **kw)
    eps = strained.info["strain"]
    assert np.allclose(eps, eps.T) and np.linalg.norm(eps, 2) <= 0.03 + 1e-12
    assert np.all(eps[2] == 0) and np.all(eps[:, 2] == 0) and np.abs(eps).max() > 0
    assert strained.pbc.tolist() == [True, True, True]
    f = np.eye(3) + eps
    np.testing.assert_allclose(strained.cell[:2], plain.cell[:2] @ f.T, atol=1e-12)
    assert strained.cell[2, 2] == pytest.approx(plain.cell[2, 2])
    shift = np.array([0.0, 0.0, 6.0])  # half the vacuum, added after the strain
    np.testing.assert_allclose(
        strained.positions, (plain.positions - shift) @ f.T + shift, atol=1e-12
    )
    # the periodic slab gets a stress label, the open one none
    labelled = label_all([plain, strained], oracle, oracle="lammps")
    assert "stress" not in labelled[0].info and labelled[1].info["stress"].shape == (6,)


def test_sheared_cell_is_simple_shear_on_the_recorded_system(rng):
    host = CU.build(2)
    planes = set()
    for _ in range(12):
        atoms = sheared_cell(CU, size=2, max_shear=0.2, rattle=0.0, rng=rng)
        n = atoms.info["shear_plane"] / np.linalg.norm(atoms.info["shear_plane"])
        d = atoms.info["shear_direction"] / np.linalg.norm(atoms.info["shear_direction"])
        gamma = atoms.info["shear"]
        assert abs(gamma) <= 0.2 and abs(n @ d) < 1e-12
        f = _cell_gradient(host, atoms)
        assert np.allclose(f, np.eye(3) + gamma * np.outer(d, n), atol=1e-12)
        planes.add(tuple(atoms.info["shear_plane"]))
    assert len(planes) > 1


def test_void_cell_is_a_strained_sphere_cut_relaxed_at_that_strain(oracle, rng):
    host = CU.build(4)
    radii = []
    for relax in (None, relaxer(oracle, fmax=1e-3)):
        atoms = void_cell(
            CU, size=4, radius=(3.0, 5.0), max_strain=0.04, rattle=0.0, rng=rng, relax=relax
        )
        r, eps = atoms.info["void_radius"], atoms.info["strain"]
        radii.append(r)
        assert atoms.info["config_type"] == "void" and 3.0 <= r <= 5.0
        assert np.allclose(eps, eps.T) and np.abs(np.linalg.eigvalsh(eps)).max() <= 0.04 + 1e-12
        f = _cell_gradient(host, atoms)
        assert np.allclose(f, np.eye(3) + eps, atol=1e-12)  # relaxation keeps the strained cell
        # Back in the host frame the void is a sphere of radius r: every removed site lies
        # within r of one centre and every kept one outside.
        kept = atoms.positions @ np.linalg.inv(f).T
        frac = (kept[:, None] - host.positions[None]) @ np.linalg.inv(host.cell.array)
        d = np.linalg.norm((frac - np.round(frac)) @ host.cell.array, axis=2)  # the relaxer wraps
        site = d.argmin(axis=1)  # each atom's lattice site (relaxation moves it < a/4)
        assert len(set(site.tolist())) == len(atoms)
        assert d.min(axis=1).max() < (A / 4 if relax else 1e-9)
        removed = np.delete(host.positions, site, axis=0)
        centre = removed.mean(axis=0)  # the centre is near the middle: the void is not cut
        assert np.linalg.norm(removed - centre, axis=1).max() <= r + 0.5
        atoms.calc = oracle
        if relax is None:
            assert np.abs(atoms.get_forces()).max() > 0.05
            assert np.linalg.norm(kept - centre, axis=1).min() > r - 0.5
        else:
            assert np.linalg.norm(atoms.get_forces()) < 1e-3  # LAMMPS: global 2-norm
    assert radii[0] != radii[1]


# --------------------------------------------------------------------------- clusters


def test_cluster_masked_forces_equal_the_periodic_parent(oracle, r_cut, rng):
    parent = vacancy_cell(CU, size=4, rattle=0.1, rng=rng)  # narrower than the sphere
    parent_forces = label(parent, oracle, oracle="lammps").arrays["forces"]
    centre = parent.positions[7]
    errors = {}
    for r_buffer in (2 * r_cut, r_cut):
        cluster = defect_cluster(parent, centre, r_core=3.0, r_buffer=r_buffer)
        mask = cluster.arrays["force_mask"]
        d = np.linalg.norm(cluster.positions - centre, axis=1)
        assert np.array_equal(mask, d <= 3.0) and d.max() <= 3.0 + r_buffer
        assert not cluster.pbc.any() and mask.sum() == 13  # the atom and its 12 neighbours
        pairs = cluster.get_all_distances()[np.triu_indices(len(cluster), 1)]
        assert pairs.min() > 2.0  # no atom twice
        frame = label(cluster, oracle, oracle="lammps")
        assert "stress" not in frame.info
        index = cluster.arrays["parent_index"][mask]
        errors[r_buffer] = np.abs(frame.arrays["forces"][mask] - parent_forces[index]).max()
    assert errors[2 * r_cut] < 1e-6
    assert errors[r_cut] > 1e-3  # a buffer of one cutoff is not enough for EAM


@pytest.mark.parametrize("around", ["vacancy", "interstitial", "surface"])
def test_cluster_around_a_defect(around, r_cut, rng):
    cluster = cluster_around(CU, around, r_core=2.8, r_buffer=2 * r_cut, rattle=0.0, rng=rng)
    assert cluster.info["config_type"] == f"cluster-{around}"
    mask = cluster.arrays["force_mask"]
    d = np.linalg.norm(cluster.positions - cluster.info["centre"], axis=1)
    sphere = 4 / 3 * np.pi * (2.8 + 2 * r_cut) ** 3 * 4 / A**3
    if around == "vacancy":
        assert mask.sum() == 12 and d.min() == pytest.approx(A / math.sqrt(2))
        assert len(cluster) == pytest.approx(sphere, rel=0.05)
    elif around == "interstitial":
        assert mask.sum() == 7 and d.min() == 0.0  # the interstitial and its six neighbours
    else:
        assert mask.sum() == 10  # a (111) surface atom: itself, 6 in-plane, 3 below
        assert len(cluster) == pytest.approx(sphere / 2, rel=0.15)


# --------------------------------------------------------------------------- labels


def test_lammps_labels_agree_with_the_torch_eam(oracle, rng):
    eam = Calculator(EAM.from_file("Cu_mishin1.eam.alloy"), device="cpu")
    configurations = [
        strained_bulk(CU, size=2, max_strain=0.1, rattle=0.1, rng=rng),
        surface_slab(CU, miller=(1, 1, 0), thickness=8, width=7, vacuum=8, rattle=0.1, rng=rng),
        sheared_cell(CU, size=2, max_shear=0.2, rattle=0.1, rng=rng),
    ]
    parent = interstitial_cell(CU, size=3, rattle=0.1, rng=rng)
    configurations.append(defect_cluster(parent, parent.positions[-1], r_core=2.8, r_buffer=6.0))
    for atoms, frame in zip(configurations, label_all(configurations, oracle, oracle="x")):
        ours = Atoms(numbers=frame.numbers, positions=frame.positions, cell=frame.cell)
        ours.pbc = frame.pbc
        ours.calc = eam
        assert frame.info["energy"] == pytest.approx(ours.get_potential_energy(), abs=1e-9)
        assert np.abs(frame.arrays["forces"] - ours.get_forces()).max() < 1e-10
        if all(atoms.pbc):
            assert np.abs(frame.info["stress"] - ours.get_stress()).max() < 1e-10
        else:
            assert "stress" not in frame.info


def test_emt_oracle_labels_equal_ase_emt(rng):
    emt = make_oracle({"kind": "emt"})
    bulk = strained_bulk(CU, size=2, max_strain=0.05, rattle=0.05, rng=rng)
    cluster = defect_cluster(CU.build(3), (5.0, 5.0, 5.0), r_core=3.0, r_buffer=4.0)
    for atoms in (bulk, cluster):
        frame = label(atoms, emt, oracle="emt")
        direct = frame.copy()
        direct.calc = EMT()
        assert frame.info["energy"] == direct.get_potential_energy()
        assert np.array_equal(frame.arrays["forces"], direct.get_forces())
    assert np.array_equal(frame.arrays["force_mask"], cluster.arrays["force_mask"])


# --------------------------------------------------------------------------- file format


def test_round_trip_returns_exactly_the_labels(oracle, rng, tmp_path):
    parent = vacancy_cell(CU, size=3, rattle=0.05, rng=rng)
    configurations = [
        strained_bulk(CU, size=2, max_strain=0.1, rattle=0.05, rng=rng),
        surface_slab(CU, miller=(1, 1, 1), thickness=8, width=7, vacuum=8, rattle=0.05, rng=rng),
        defect_cluster(parent, parent.positions[0], r_core=2.8, r_buffer=4.0),
    ]
    frames = label_all(configurations, oracle, oracle="lammps eam/alloy Cu_mishin1.eam.alloy")
    path = tmp_path / "data" / "set.extxyz"
    write_dataset(path, frames)
    back = read_dataset(path)
    assert len(back) == 3
    for ours, theirs in zip(frames, back):
        assert theirs.calc is None
        periodic = all(ours.pbc)
        assert set(theirs.info) == INFO_KEYS | ({"stress"} if periodic else set())
        assert set(theirs.arrays) == {"numbers", "positions", "forces", "force_mask"}
        assert theirs.arrays["force_mask"].dtype == bool
        assert np.array_equal(theirs.arrays["force_mask"], ours.arrays["force_mask"])
        assert np.array_equal(theirs.positions, ours.positions)
        assert np.array_equal(theirs.pbc, ours.pbc)
        assert theirs.info["energy"] == ours.info["energy"]
        assert np.abs(theirs.arrays["forces"] - ours.arrays["forces"]).max() <= 5e-9
        assert theirs.info["config_type"] == ours.info["config_type"]
        assert theirs.info["oracle"] == ours.info["oracle"]
        if periodic:
            assert np.allclose(theirs.info["stress"], ours.info["stress"], rtol=1e-14, atol=0)
    assert not back[2].arrays["force_mask"].all() and back[2].arrays["force_mask"].any()

    append_dataset(path, frames[:2])
    again = read_dataset(path)
    assert len(again) == 5
    assert np.array_equal(again[3].positions, back[0].positions)
    assert sorted(p.name for p in path.parent.iterdir()) == ["set.extxyz"]  # no temporaries

    before = path.read_bytes()
    unlabelled = configurations[0]
    with pytest.raises(DatasetError, match="frame 1: missing label"):
        append_dataset(path, [frames[0], unlabelled])
    assert path.read_bytes() == before

    foreign = tmp_path / "foreign.extxyz"
    bulk = configurations[0]
    plain = Atoms(numbers=bulk.numbers, positions=bulk.positions, cell=bulk.cell, pbc=True)
    plain.info["strain"] = bulk.info["strain"]  # an extra key, dropped on reading
    plain.calc = oracle
    plain.get_forces()
    ase.io.write(foreign, plain, format="extxyz")  # ASE's own way: a SinglePointCalculator
    (read,) = read_dataset(foreign)
    assert read.arrays["force_mask"].all() and read.info["config_type"] == "unknown"
    assert set(read.info) == INFO_KEYS | {"stress"} and read.calc is None
    assert np.abs(read.arrays["forces"] - plain.get_forces()).max() <= 5e-9

    other = tmp_path / "notes.extxyz"
    other.write_text("not a dataset\n")
    with pytest.raises(DatasetError, match="notes.extxyz"):
        append_dataset(other, frames[:1])
    assert other.read_text() == "not a dataset\n"


# --------------------------------------------------------------------------- command


TINY = """
seed = {seed}
[oracle]
kind = "lammps"
pair_style = "eam/alloy"
file = "Cu_mishin1.eam.alloy"
[lattice]
structure = "fcc"
element = "Cu"
a = 3.615
[generators.bulk]
count = 3
[generators.vacancy]
count = 1
size = 2
relax = true
[generators.surface]
count = 2
miller = [[1, 0, 0], [1, 1, 1]]
thickness = 6.0
[generators.shear]
count = 1
size = 2
[generators.cluster]
count = 1
around = ["vacancy"]
r_buffer = 5.0
[output]
path = "out/{name}.extxyz"
"""


def _config(tmp_path, name, *, seed=7):
    path = tmp_path / f"{name}.toml"
    path.write_text(TINY.format(seed=seed, name=name))
    return path


def test_dataset_command_writes_labels_equal_to_direct_oracle_calls(oracle, tmp_path, capsys):
    assert cli_main(["dataset", str(_config(tmp_path, "a"))]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("wrote 8 frames (bulk 3, vacancy 1, surface 2")
    frames = read_dataset(tmp_path / "out" / "a.extxyz")
    assert [len(f) for f in frames[3:4]] == [31]
    assert {f.info["oracle"] for f in frames} == {"lammps eam/alloy Cu_mishin1.eam.alloy"}
    for frame in frames:
        direct = frame.copy()
        direct.calc = oracle
        assert frame.info["energy"] == pytest.approx(direct.get_potential_energy(), abs=1e-9)
        assert np.abs(frame.arrays["forces"] - direct.get_forces()).max() <= 5e-9
    assert frames[-1].info["config_type"] == "cluster-vacancy"

    assert cli_main(["dataset", str(_config(tmp_path, "b"))]) == 0
    a, b = (tmp_path / "out" / f"{n}.extxyz" for n in "ab")
    assert a.read_bytes() == b.read_bytes()  # same seed, same file
    assert cli_main(["dataset", str(_config(tmp_path, "c", seed=8))]) == 0
    c = read_dataset(tmp_path / "out" / "c.extxyz")
    assert not np.array_equal(c[0].positions, frames[0].positions)

    capsys.readouterr()
    assert cli_main(["dataset", str(_config(tmp_path, "c", seed=7)), "--append"]) == 0
    assert capsys.readouterr().out.startswith("appended 8 frames")
    both = read_dataset(tmp_path / "out" / "c.extxyz")
    assert len(both) == 16 and np.array_equal(both[8].positions, frames[0].positions)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("[output]", "[generators.bulk2]\ncount = 1\n[output]"), "unknown key 'generators.bulk2'"),
        (("count = 3", "count = 3\nrattle = -1"), "generators.bulk.rattle must be finite and >= 0"),
        (
            ('kind = "lammps"', 'kind = "gulp"'),
            'oracle.kind = "gulp" is not allowed; allowed: "lammps"',
        ),
        (
            ("[generators.cluster]", "systems = [[[1, 1, 1], [1, 0, 0]]]\n[generators.cluster]"),
            "generators.shear.systems direction [1, 0, 0] is not in the plane [1, 1, 1]",
        ),
        (("Cu_mishin1.eam.alloy", "Cu_nothing.eam.alloy"), "oracle.file = 'Cu_nothing.eam.alloy'"),
        (("seed = 7", "seed = -7"), "seed must be an integer >= 0"),
        (
            ("[output]", "[generators.void]\ncount = 1\nradius = [4.0, 2.0]\n[output]"),
            "generators.void.radius must be [r_min, r_max], 0 < r_min <= r_max",
        ),
    ],
)
def test_bad_config_is_one_line_exit_2_and_writes_nothing(edit, message, tmp_path, capsys):
    path = _config(tmp_path, "bad")
    text = path.read_text()
    assert edit[0] in text
    path.write_text(text.replace(edit[0], edit[1], 1))
    assert cli_main(["dataset", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"multiscale: error: {path}: ")
    assert message in err[0]
    assert not (tmp_path / "out").exists()
