"""The retrain action: uncertainty per atom, centres, clusters, labels, fine-tuning."""

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.calculator import all_changes
from ase.calculators.emt import EMT

from atomistic import Calculator, Committee, MomentSpec, TrainingConfig, crystal, train
from atomistic.mlip.active import (
    CLUSTER_CONFIG_TYPE,
    RetrainSettings,
    _arranged,
    atom_uncertainty,
    carve_clusters,
    label_frames,
    retrain,
    select_centres,
    uncertainty_action,
)
from atomistic.mlip.batches import split_indices
from atomistic.mlip.dataset import read_dataset

A = 3.59  # Å, near EMT's Cu lattice constant
NN = A / np.sqrt(2)  # first-neighbour distance
#: fcc neighbour shells: (radius / a, atoms in the shell)
SHELLS = ((1 / np.sqrt(2), 12), (1.0, 6), (np.sqrt(1.5), 24), (np.sqrt(2.0), 12))


def within(radius):
    """Sites of a perfect fcc crystal within ``radius`` of a site, the site included."""
    return 1 + sum(n for r, n in SHELLS if r * A <= radius)


def emt_labelled(atoms):
    atoms.calc = EMT()
    atoms.info["energy"] = atoms.get_potential_energy()
    atoms.arrays["forces"] = atoms.get_forces()
    atoms.arrays["force_mask"] = np.ones(len(atoms), dtype=bool)
    atoms.info["config_type"], atoms.info["oracle"] = "bulk", "emt"
    atoms.calc = None
    return atoms


def bulk_frames(n, seed):
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(n):
        atoms = crystal("fcc", element="Cu", a=A * (1 + rng.uniform(-0.01, 0.01)), size=2)
        atoms.positions += rng.normal(scale=0.05, size=atoms.positions.shape)
        frames.append(emt_labelled(atoms))
    return frames


@pytest.fixture(scope="module")
def bulk():
    """EMT-labelled rattled bulk and a small committee trained on it alone (a few s)."""
    frames = bulk_frames(24, seed=0)
    model = Committee(
        elements=("Cu",),
        descriptor=MomentSpec(cutoff=4.0, angular_cutoff=3.5),
        hidden=(16,),
        n_members=3,
    )
    config = TrainingConfig(epochs=100, batch_size=4, learning_rate=5e-3, split=(0.8, 0.2, 0.0))
    return frames, train(model, frames, config=config).potential


def vacancy_cell(seed, size=4, site=42):
    """A rattled periodic crystal less the atom ``site``, and that site's position."""
    host = crystal("fcc", element="Cu", a=A, size=size)
    atoms = host[np.arange(len(host)) != site]
    atoms.positions += np.random.default_rng(seed).normal(scale=0.03, size=atoms.positions.shape)
    return atoms, host.positions[site]


def uncertainty_of(committee, atoms):
    return atom_uncertainty(
        committee,
        positions=atoms.positions,
        symbols=atoms.get_chemical_symbols(),
        cell=atoms.cell.array,
        pbc=atoms.pbc,
    )


# --------------------------------------------------------------------------- uncertainty


@pytest.mark.parametrize("pbc", [(False, False, True), (False, False, False)])
def test_atom_uncertainty_is_the_calibrated_spread_of_the_members(bulk, pbc):
    _, committee = bulk
    # a 2.5D slab (periodic along z only) or an open cluster, rattled
    atoms = crystal("fcc", element="Cu", a=A, size=(3, 3, 1))
    atoms.pbc = pbc
    atoms.positions += np.random.default_rng(3).normal(scale=0.05, size=atoms.positions.shape)
    forces = []
    for k in range(committee.n_members):  # each member alone, through the ASE calculator
        x = atoms.copy()
        x.calc = Calculator(committee.member(k), "cpu")
        forces.append(x.get_forces())
    forces = np.array(forces)
    spread = np.sqrt(((forces - forces.mean(0)) ** 2).sum(-1).mean(0))
    cell = None if not any(pbc) else atoms.cell.array
    u = atom_uncertainty(
        committee,
        positions=atoms.positions,
        symbols=atoms.get_chemical_symbols(),
        cell=cell,
        pbc=pbc,
    )
    assert u.shape == (len(atoms),) and u.dtype == np.float64
    np.testing.assert_allclose(u, committee.calibration * spread, rtol=1e-10, atol=1e-14)
    if pbc[2]:  # periodic along z: every atom has the same number of neighbours along z
        open_u = atom_uncertainty(
            committee,
            positions=atoms.positions,
            symbols=atoms.get_chemical_symbols(),
            cell=None,
            pbc=False,
        )
        assert not np.allclose(u, open_u)


def test_uncertainty_action_thresholds():
    assert uncertainty_action([0.01, 0.05], lo=0.05, hi=0.2) == "accept"
    assert uncertainty_action([0.01, 0.051], lo=0.05, hi=0.2) == "label"
    assert uncertainty_action([0.01, 0.2], lo=0.05, hi=0.2) == "label"
    assert uncertainty_action([0.01, 0.21], lo=0.05, hi=0.2) == "rollback"
    assert uncertainty_action([], lo=0.05, hi=0.2) == "accept"


# --------------------------------------------------------------------------- centres


def test_select_centres_is_greedy_above_lo_and_apart():
    # atoms on a line 1 Å apart
    x = np.zeros((10, 3))
    x[:, 0] = np.arange(10.0)
    u = np.array([0.9, 1.0, 0.2, 0.01, 0.5, 0.6, 0.03, 0.7, 0.1, 0.8])
    # 1 first (0 and 2 too close to it), 9, then 7 (2 Å from 9: allowed), then 5
    picks = select_centres(u, x, lo=0.05, min_separation=2.0, max_clusters=10)
    assert picks.tolist() == [1, 9, 7, 5]
    assert picks.dtype == np.int64
    # every pick above lo, and picks pairwise at least min_separation apart
    assert (u[picks] > 0.05).all()
    d = np.abs(x[picks, 0][:, None] - x[picks, 0][None, :])
    assert (d[np.triu_indices(len(picks), 1)] >= 2.0).all()
    assert select_centres(u, x, lo=0.05, min_separation=2.0, max_clusters=2).tolist() == [1, 9]
    assert select_centres(u, x, lo=1.0, min_separation=2.0, max_clusters=3).size == 0
    # periodic along x with a 10 Å cell: 9 is 2 Å from 1 across the boundary, 0 is 1 Å
    cell = np.diag([10.0, 0.0, 0.0])
    open_picks = select_centres(u, x, lo=0.05, min_separation=2.5, max_clusters=10)
    periodic = select_centres(
        u, x, lo=0.05, min_separation=2.5, max_clusters=10, cell=cell, pbc=(True, False, False)
    )
    assert 9 in open_picks.tolist() and 9 not in periodic.tolist()
    assert periodic.tolist() == [1, 7, 4]


# --------------------------------------------------------------------------- clusters


@pytest.mark.parametrize("pbc", [True, (False, False, True)])
def test_carved_clusters_have_the_shell_counts_masks_and_sites(pbc):
    r_core, r_buffer = 2.9, 1.6  # core: the site and its 12 neighbours; whole: 3 shells
    if pbc is True:  # 3×3×3 periodic cells (10.8 Å) are narrower than the 9 Å sphere
        atoms = crystal("fcc", element="Cu", a=A, size=3)
        cell = atoms.cell.array
    else:  # a 2.5D slab: one cell thick along z (periodic), wide and open along x and y
        atoms = crystal("fcc", element="Cu", a=A, size=(5, 5, 1))
        cell = np.diag([0.0, 0.0, A])  # open axes need no cell vector
    centre = int(np.argmin(np.linalg.norm(atoms.positions - atoms.cell.array.sum(0) / 2, axis=1)))
    neighbour = int(
        np.argsort(np.linalg.norm(atoms.positions - atoms.positions[centre], axis=1))[1]
    )
    symbols = atoms.get_chemical_symbols()
    (cluster,) = carve_clusters(
        atoms.positions, symbols, cell, pbc, [centre], r_core=r_core, r_buffer=r_buffer
    )
    assert len(cluster) == within(r_core + r_buffer) == 43
    assert cluster.arrays["force_mask"].sum() == within(r_core) == 13
    assert not cluster.pbc.any()
    assert cluster.info["config_type"] == CLUSTER_CONFIG_TYPE
    assert cluster.info["site"] == centre
    np.testing.assert_allclose(cluster.info["centre"], atoms.positions[centre])
    # the masked atoms are the site and its 12 nearest neighbours, in place around it
    masked = cluster.positions[cluster.arrays["force_mask"]] - atoms.positions[centre]
    r = np.sort(np.linalg.norm(masked, axis=1))
    np.testing.assert_allclose(r, [0.0] + [NN] * 12, atol=1e-9)
    assert centre in cluster.arrays["parent_index"][cluster.arrays["force_mask"]]
    # no atom twice
    d = np.linalg.norm(cluster.positions[:, None] - cluster.positions[None], axis=-1)
    assert d[np.triu_indices(len(cluster), 1)].min() > 0.9 * NN
    # with a vacancy next to the centre, one force label fewer
    keep = np.arange(len(atoms)) != neighbour
    site = centre - int(neighbour < centre)  # the centre's index once the neighbour is gone
    (holed,) = carve_clusters(
        atoms.positions[keep],
        [s for s, k in zip(symbols, keep, strict=True) if k],
        cell,
        pbc,
        [site],
        r_core=r_core,
        r_buffer=r_buffer,
    )
    # the gone atom and its periodic images (along z, 3.59 Å apart, for the slab)
    v = atoms.positions[neighbour] - atoms.positions[centre]
    period = atoms.cell.array[2] if pbc is not True else np.zeros(3)
    images = np.linalg.norm(v + np.arange(-3, 4)[:, None] * period, axis=1)
    if pbc is True:
        images = images[:1]
    assert holed.arrays["force_mask"].sum() == 13 - (images <= r_core).sum()
    assert len(holed) == 43 - (images <= r_core + r_buffer).sum()


# --------------------------------------------------------------------------- labelling


class FailingEMT(EMT):
    """EMT that raises on its ``fail_on``-th evaluation."""

    def __init__(self, fail_on):
        super().__init__()
        self.fail_on, self.calls = fail_on, 0

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        self.calls += 1
        if self.calls == self.fail_on:
            raise RuntimeError("LAMMPS command 'run 0' failed: lost atoms\n(simulated)")
        super().calculate(atoms, properties, system_changes)


def some_clusters(n):
    atoms, _ = vacancy_cell(seed=5, size=3, site=0)
    centres = np.arange(n) * 7
    return atoms, carve_clusters(
        atoms.positions,
        atoms.get_chemical_symbols(),
        atoms.cell.array,
        True,
        centres,
        r_core=2.6,
        r_buffer=2.0,
    )


def test_an_oracle_failing_on_its_third_call_leaves_two_labelled_frames(tmp_path):
    _, clusters = some_clusters(5)
    dataset = tmp_path / "run" / "labels.extxyz"
    oracle = FailingEMT(fail_on=3)
    outcome = label_frames(clusters, oracle, oracle_name="emt-flaky", dataset=dataset)
    assert oracle.calls == 3 and outcome.oracle_calls == 3
    assert not outcome.ok and len(outcome.frames) == 2
    assert "\n" not in outcome.error
    assert "'emt-flaky'" in outcome.error and "frame 2 of 5" in outcome.error
    assert "lost atoms" in outcome.error and "2 labelled frame(s) kept" in outcome.error
    saved = read_dataset(dataset)
    assert len(saved) == 2
    for frame, cluster in zip(saved, clusters, strict=False):
        # the labels are EMT's forces on the cluster, with its mask
        x = Atoms(cluster.numbers, positions=frame.positions)
        x.calc = EMT()
        np.testing.assert_allclose(frame.arrays["forces"], x.get_forces(), atol=1e-7)
        assert (frame.arrays["force_mask"] == cluster.arrays["force_mask"]).all()
        assert frame.info["config_type"] == CLUSTER_CONFIG_TYPE
        assert frame.info["oracle"] == "emt-flaky"
    # a second round appends to the same file
    again = label_frames(clusters[2:4], EMT(), oracle_name="emt", dataset=dataset)
    assert again.ok and again.oracle_calls == 2
    assert len(read_dataset(dataset)) == 4


def test_failure_on_the_first_call_writes_no_file(tmp_path):
    _, clusters = some_clusters(2)
    dataset = tmp_path / "labels.extxyz"
    outcome = label_frames(clusters, FailingEMT(fail_on=1), oracle_name="x", dataset=dataset)
    assert outcome.frames == () and outcome.oracle_calls == 1 and "frame 0 of 2" in outcome.error
    assert not dataset.exists()


# --------------------------------------------------------------------------- retraining


def masked_rmse_against_emt(committee, frames):
    """Per-component RMS of the committee's forces minus EMT's, on the masked atoms."""
    errors = []
    for f in frames:
        x = Atoms(f.numbers, positions=f.positions)
        x.calc = EMT()
        reference = x.get_forces()
        x.calc = Calculator(committee, "cpu")
        errors.append((x.get_forces() - reference)[f.arrays["force_mask"]])
    return float(np.sqrt(np.mean(np.concatenate(errors) ** 2)))


def test_retraining_on_clusters_around_a_vacancy_lowers_error_and_uncertainty(bulk, tmp_path):
    old, committee = bulk
    atoms, hole = vacancy_cell(seed=1)
    near = np.linalg.norm(atoms.positions - hole, axis=1) < 0.5 * (NN + A)  # first shell
    settings = RetrainSettings(lo=0.05, hi=10.0, r_core=2.6, max_clusters=4, min_separation=4.5)
    u = uncertainty_of(committee, atoms)
    assert u[near].mean() > 2.0 * u[~near].mean()  # trained on bulk only: unsure at the hole
    centres = select_centres(
        u,
        atoms.positions,
        lo=settings.lo,
        min_separation=settings.min_separation,
        max_clusters=settings.max_clusters,
        cell=atoms.cell.array,
        pbc=True,
    )
    hole_distance = np.linalg.norm(atoms.positions[centres] - hole, axis=1)
    assert len(centres) == 4 and (hole_distance < 4.0).sum() >= 2  # mostly at the hole
    # r_buffer = 2 × the model's cutoff: the masked atoms see the model as in the cell
    r_buffer = settings.buffer_width(model_cutoff=committee.cutoff, oracle_cutoff=None)
    assert r_buffer == 8.0
    clusters = carve_clusters(
        atoms.positions,
        atoms.get_chemical_symbols(),
        atoms.cell.array,
        True,
        centres,
        r_core=settings.r_core,
        r_buffer=r_buffer,
    )
    outcome = label_frames(clusters, EMT(), oracle_name="emt", dataset=tmp_path / "d.extxyz")
    assert outcome.ok and len(read_dataset(tmp_path / "d.extxyz")) == 4
    weights = {k: v.clone() for k, v in committee.state_dict().items()}
    result = retrain(
        committee,
        list(outcome.frames),
        old_frames=old,
        config=settings.training_config(),
        replay=settings.replay,
    )
    tuned = result.committee
    assert result.n_new == 4 and result.n_new_in_training == 4 and result.n_replayed == 16
    # against EMT called here, on the clusters' masked atoms
    before = masked_rmse_against_emt(committee, outcome.frames)
    after = masked_rmse_against_emt(tuned, outcome.frames)
    assert result.before.force_rmse == pytest.approx(before, rel=1e-6)
    assert result.after.force_rmse == pytest.approx(after, rel=1e-6)
    assert after < 0.5 * before, (before, after)
    assert result.after.uncertainty < result.before.uncertainty
    # and in the cell itself, on the atoms that were labelled (the ASE calculator's spread)
    cores = np.unique(
        np.concatenate([c.arrays["parent_index"][c.arrays["force_mask"]] for c in clusters])
    )
    spreads = []
    for potential in (committee, tuned):
        x = atoms.copy()
        x.calc = Calculator(potential, "cpu")
        x.get_forces()
        spreads.append(x.calc.results["forces_uncertainty"][cores].mean())
    assert spreads[1] < 0.7 * spreads[0], spreads
    assert tuned.calibration == result.calibration
    for name, value in committee.state_dict().items():  # the old committee is left as it was
        assert (value == weights[name]).all(), name


def test_new_frames_take_the_training_slots_of_the_split():
    new = [Atoms("Cu") for _ in range(3)]
    old = [Atoms("Cu") for _ in range(7)]
    config = TrainingConfig(split=(0.6, 0.4, 0.0), seed=4)
    frames, n_in_training = _arranged(new, old, config)
    train_ids, val_ids, _ = split_indices(10, config.split, seed=4)
    assert n_in_training == 3
    on_train = [frames[k] for k in train_ids]
    assert all(any(f is n for f in on_train) for n in new)
    assert all(any(frames[k] is o for o in old) for k in val_ids)
    # more new frames than training slots: the rest go to validation
    _, n_in_training = _arranged([Atoms("Cu") for _ in range(8)], old[:2], config)
    assert n_in_training == 6


def test_settings_are_checked_and_become_a_training_config():
    with pytest.raises(ValueError, match="hi"):
        RetrainSettings(lo=0.2, hi=0.1)
    with pytest.raises(ValueError, match="max_clusters"):
        RetrainSettings(max_clusters=0)
    s = RetrainSettings(epochs=7, learning_rate=1e-4, seed=3, r_buffer=None)
    c = s.training_config(dtype="float32", base=TrainingConfig(force_noise=0.03))
    assert (c.epochs, c.learning_rate, c.seed, c.dtype) == (7, 1e-4, 3, "float32")
    assert c.force_noise == s.force_noise and c.split == s.split
    assert s.buffer_width(model_cutoff=4.0, oracle_cutoff=5.5) == 11.0
    assert RetrainSettings(r_buffer=3.0).buffer_width(model_cutoff=4.0, oracle_cutoff=5.5) == 3.0
