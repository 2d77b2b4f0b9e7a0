"""Training, fine-tuning and calibration of network potentials, and ``multiscale train``."""

import json

import numpy as np
import pytest
import torch
from ase.calculators.emt import EMT

from atomistic import (
    ACSFSpec,
    Calculator,
    Committee,
    TrainingConfig,
    crystal,
    fine_tune,
    fit_calibration,
    load_potential,
    train,
)
from atomistic.mlip.batches import make_batch, split_indices
from atomistic.mlip.training import batch_loss, evaluate_set

SPEC = ACSFSpec(cutoff=4.0, angular_cutoff=3.0, radial_shift=(2.0, 2.5, 3.0, 3.5))
FAST = TrainingConfig(epochs=3, batch_size=4, learning_rate=1e-2, split=(0.6, 0.2, 0.2))


def emt_frames(n, *, seed=0, rattle=0.08, strain=0.02):
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(n):
        atoms = crystal(
            "fcc", element="Cu", a=3.6 * (1 + rng.uniform(-strain, strain)), size=(2, 2, 1)
        )
        atoms.positions += rng.normal(scale=rattle, size=atoms.positions.shape)
        atoms.calc = EMT()
        atoms.info["energy"] = atoms.get_potential_energy()
        atoms.info["stress"] = atoms.get_stress()
        atoms.arrays["forces"] = atoms.get_forces()
        atoms.arrays["force_mask"] = np.ones(len(atoms), dtype=bool)
        atoms.info["config_type"], atoms.info["oracle"] = "bulk", "emt"
        atoms.calc = None
        frames.append(atoms)
    return frames


@pytest.fixture(scope="module")
def frames():
    return emt_frames(15)


#: A training file's data, model and committee sections for ``frames`` written to
#: ``data.extxyz``; the ``[training]`` keys follow.
SMALL_COMMITTEE = """
[data]
files = ["data.extxyz"]
split = [0.6, 0.2, 0.2]
[model]
cutoff = 4.0
angular_cutoff = 3.0
radial_shift = [2.0, 2.5, 3.0, 3.5]
hidden = [8]
[committee]
members = 2
[training]
"""


def committee(members=2, hidden=(8,)):
    return Committee(elements=("Cu",), descriptor=SPEC, hidden=hidden, n_members=members)


def force_rmse(potential, frames):
    """Per-component RMS of the potential's forces (the Calculator) minus the EMT labels."""
    err = []
    for f in frames:
        atoms = f.copy()
        atoms.calc = Calculator(potential, "cpu")
        err.append(atoms.get_forces() - f.arrays["forces"])
    return float(np.sqrt(np.mean(np.concatenate(err) ** 2)))


def test_training_reduces_an_independently_measured_force_error(frames):
    # measured on frames the training never saw, against EMT, through the plain Calculator
    held_out = emt_frames(6, seed=11)
    start = train(committee(), frames, config=TrainingConfig(epochs=0, split=FAST.split))
    done = train(
        committee(),
        frames,
        config=TrainingConfig(epochs=40, batch_size=3, learning_rate=1e-2, split=FAST.split),
    )
    before, after = force_rmse(start.potential, held_out), force_rmse(done.potential, held_out)
    labels = float(np.sqrt(np.mean(np.concatenate([f.arrays["forces"] for f in held_out]) ** 2)))
    assert after < 0.5 * before
    assert after < 0.5 * labels  # and far better than predicting no force at all
    # the reported validation error is the same measure on the validation frames
    _, val, _ = split_indices(len(frames), FAST.split, seed=FAST.seed)
    measured = force_rmse(done.potential, [frames[k] for k in val])
    assert done.metrics["validation"]["force_rmse_eV_per_A"] == pytest.approx(measured, rel=1e-10)


def test_same_seed_same_weights(frames):
    a = train(committee(), frames, config=FAST).potential.state_dict()
    b = train(committee(), frames, config=FAST).potential.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    c = train(committee(), frames, config=TrainingConfig(**{**FAST.__dict__, "seed": 1}))
    assert not torch.equal(a["networks.weights.0"], c.potential.state_dict()["networks.weights.0"])


def test_masked_atoms_do_not_enter_the_loss(frames):
    model = committee()
    masked = [f.copy() for f in frames[:3]]
    for f in masked:
        f.arrays["force_mask"] = np.arange(len(f)) < 4
    batch = make_batch(masked, [0, 1, 2], elements=model.elements, cutoff=model.cutoff)
    loss = batch_loss(model, batch, config=FAST, create_graph=False).detach()
    changed = [f.copy() for f in masked]
    for f in changed:
        f.arrays["forces"][4:] += 10.0
    batch2 = make_batch(changed, [0, 1, 2], elements=model.elements, cutoff=model.cutoff)
    assert float(batch_loss(model, batch2, config=FAST, create_graph=False).detach()) == float(loss)
    for f in changed:
        f.arrays["forces"][0] += 1.0  # a used atom: the loss must notice
    batch3 = make_batch(changed, [0, 1, 2], elements=model.elements, cutoff=model.cutoff)
    assert float(batch_loss(model, batch3, config=FAST, create_graph=False).detach()) > float(loss)


def test_energy_weight_scales_only_that_frames_energy_term(frames):
    """``info["energy_weight"]`` multiplies the frame's energy term: shifting the energy
    label of a frame of weight w by d adds w times what it adds at weight 1."""
    model = committee()
    base = [f.copy() for f in frames[:3]]

    def loss(fs):
        b = make_batch(fs, [0, 1, 2], elements=model.elements, cutoff=model.cutoff)
        return float(batch_loss(model, b, config=FAST, create_graph=False).detach())

    def shifted(weight, d=1.0):
        fs = [f.copy() for f in base]
        fs[1].info["energy"] += d
        fs[1].info["energy_weight"] = weight
        return fs

    zero = loss(shifted(0.0, 0.0))
    assert loss(shifted(0.0)) == pytest.approx(zero, rel=1e-12)  # weight 0: label unused
    unit = loss(shifted(1.0)) - loss(shifted(1.0, 0.0))
    assert loss(shifted(25.0)) - loss(shifted(25.0, 0.0)) == pytest.approx(25.0 * unit, rel=1e-9)
    bad = shifted(-1.0)
    with pytest.raises(ValueError, match="energy_weight"):
        make_batch(bad, [0, 1, 2], elements=model.elements, cutoff=model.cutoff)


def test_loss_vanishes_on_own_predictions_with_stress(frames):
    # labels made by each member through the Calculator: energy, forces and stress terms
    # of its loss vanish, and a known stress offset gives a known loss
    model = committee()
    config = TrainingConfig(stress_noise=1e-4)
    own = [f.copy() for f in frames[:3]]
    for k in range(model.n_members):
        member = model.member(k)
        for g in own:
            g.calc = Calculator(member, "cpu")
            g.info["energy"], g.info["stress"] = g.get_potential_energy(), g.get_stress()
            g.arrays["forces"] = g.get_forces()
            g.calc = None
        batch = make_batch(own, [0, 1, 2], elements=model.elements, cutoff=model.cutoff)
        assert float(batch_loss(member, batch, config=config, create_graph=False).detach()) < 1e-18
        for g in own:
            g.info["stress"] = g.info["stress"] + 1e-4
        batch = make_batch(own, [0, 1, 2], elements=model.elements, cutoff=model.cutoff)
        loss = float(batch_loss(member, batch, config=config, create_graph=False).detach())
        assert loss == pytest.approx(6.0)  # six components, each off by one σ_S


def test_calibration_matches_error_rms_on_its_set(frames):
    result = train(committee(members=3), frames, config=FAST)
    pot = result.potential
    assert result.metrics["calibration_set"] == "validation"
    _, val, _ = split_indices(len(frames), FAST.split, seed=FAST.seed)
    batch = make_batch(frames, val, elements=pot.elements, cutoff=pot.cutoff)
    m = evaluate_set(pot, [batch], config=FAST)
    rms = lambda x: float(torch.sqrt((x**2).mean()))  # noqa: E731
    assert pot.calibration * rms(m["spread"]) == pytest.approx(rms(m["error"]), rel=1e-10)
    assert fit_calibration(m["spread"], m["error"]) == pytest.approx(pot.calibration, rel=1e-10)


def test_fine_tune_keeps_normalisation_and_learns_new_data(frames):
    base = train(
        committee(), frames, config=TrainingConfig(**{**FAST.__dict__, "epochs": 10})
    ).potential
    new = emt_frames(8, seed=7, rattle=0.15)  # larger displacements than trained on
    config = TrainingConfig(
        **{**FAST.__dict__, "epochs": 20, "learning_rate": 2e-3, "energy_noise": 0.01}
    )
    result = fine_tune(base, new, frames, replay=0.5, config=config)
    tuned = result.potential
    for name in ("descriptor_mean", "descriptor_std", "energy_shift", "energy_scale"):
        assert torch.equal(getattr(tuned, name), getattr(base, name))
    assert (
        result.metrics["n_frames"]["train"]
        + result.metrics["n_frames"]["validation"]
        + result.metrics["n_frames"]["test"]
        == 12
    )
    batch = make_batch(new, range(len(new)), elements=base.elements, cutoff=base.cutoff)
    assert (
        evaluate_set(tuned, [batch], config=config)["force_rmse_eV_per_A"]
        < evaluate_set(base, [batch], config=config)["force_rmse_eV_per_A"]
    )


def test_multiscale_train_writes_potential_and_metrics(tmp_path, frames, capsys):
    from atomistic.mlip.dataset import write_dataset
    from multiscale.cli import main

    write_dataset(tmp_path / "data.extxyz", frames)
    (tmp_path / "train.toml").write_text(
        SMALL_COMMITTEE
        + """epochs = 2
batch_size = 4
device = "cpu"
[output]
potential = "out/cu.pt"
metrics = "out/metrics.json"
"""
    )
    assert main(["train", str(tmp_path / "train.toml"), "--quiet"]) == 0
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    for key in (
        "train",
        "validation",
        "test",
        "calibration",
        "wall_time_s",
        "time_per_epoch_s",
        "history",
    ):
        assert key in metrics
    for key in ("force_rmse_eV_per_A", "energy_rmse_eV_per_atom"):
        assert metrics["test"][key] > 0
    pot = load_potential(tmp_path / "out" / "cu.pt")
    assert isinstance(pot, Committee) and pot.calibration == metrics["calibration"]
    assert "force RMSE" in capsys.readouterr().out
    # fine-tune from it with replay, as in docs/train.md
    (tmp_path / "tune.toml").write_text(
        """
[data]
files = ["data.extxyz"]
split = [0.6, 0.2, 0.2]
[training]
epochs = 2
device = "cpu"
fine_tune_from = "out/cu.pt"
replay_files = ["data.extxyz"]
replay = 0.5
[output]
potential = "out/cu2.pt"
metrics = "out/metrics2.json"
"""
    )
    assert main(["train", str(tmp_path / "tune.toml"), "--quiet"]) == 0
    tuned = json.loads((tmp_path / "out" / "metrics2.json").read_text())
    assert tuned["fine_tuned_from"] == "out/cu.pt"
    assert sum(tuned["n_frames"].values()) == len(frames) + round(0.5 * len(frames))
    assert torch.equal(load_potential(tmp_path / "out" / "cu2.pt").energy_shift, pot.energy_shift)


def test_multiscale_train_bad_key_is_one_line_exit_2(tmp_path, capsys):
    from multiscale.cli import main

    (tmp_path / "data.extxyz").write_text("")
    (tmp_path / "train.toml").write_text('[data]\nfiles = ["data.extxyz"]\n[training]\nepoch = 3\n')
    assert main(["train", str(tmp_path / "train.toml")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "train.toml" in err and "training.epoch" in err and "epochs" in err
    (tmp_path / "train.toml").write_text(
        '[data]\nfiles = ["data.extxyz"]\n[model]\nactivation = "relu"\n'
    )
    assert main(["train", str(tmp_path / "train.toml")]) == 2
    assert "silu" in capsys.readouterr().err


def test_multiscale_train_cuda_without_cuda_is_one_line_exit_2(
    tmp_path, frames, capsys, monkeypatch
):
    from atomistic.mlip.dataset import write_dataset
    from multiscale.cli import main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    write_dataset(tmp_path / "data.extxyz", frames)
    (tmp_path / "train.toml").write_text(SMALL_COMMITTEE + 'device = "cuda"\n')
    assert main(["train", str(tmp_path / "train.toml"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "train.toml" in err and "training.device" in err and "CUDA" in err
    assert not (tmp_path / "potential.pt").exists()


def test_resumed_training_equals_the_uninterrupted_run(frames, tmp_path):
    from atomistic import TrainingStateError

    # lr_patience 1: the learning rate drops within the run, so the schedule's state counts
    base = {**FAST.__dict__, "lr_patience": 1, "epochs": 6}
    full = train(
        committee(), frames, config=TrainingConfig(**{**base, "state": str(tmp_path / "a")})
    )
    part = train(
        committee(),
        frames,
        config=TrainingConfig(**{**base, "epochs": 3, "state": str(tmp_path / "b")}),
    )
    resumed = train(
        committee(),
        frames,
        config=TrainingConfig(**{**base, "state": str(tmp_path / "b")}),
        resume=True,
    )
    a, p, r = (x.potential.state_dict() for x in (full, part, resumed))
    assert not all(torch.equal(a[k], p[k]) for k in a)  # three more epochs changed the weights
    assert all(torch.equal(a[k], r[k]) for k in a)
    assert resumed.history == full.history and len(resumed.history) == 6
    assert len({row["learning_rate"] for row in full.history}) > 1
    assert resumed.metrics["resumed_from_epoch"] == 3 and full.metrics["resumed_from_epoch"] is None
    assert resumed.potential.calibration == full.potential.calibration
    # what may not change, or is missing, is refused with the reason
    other = TrainingConfig(**{**base, "seed": 1, "state": str(tmp_path / "b")})
    with pytest.raises(TrainingStateError, match="seed"):
        train(committee(), frames, config=other, resume=True)
    with pytest.raises(TrainingStateError, match="other frames"):
        train(
            committee(),
            frames[:-1],
            config=TrainingConfig(**{**base, "state": str(tmp_path / "b")}),
            resume=True,
        )
    with pytest.raises(TrainingStateError, match="another model"):
        train(
            committee(hidden=(6,)),
            frames,
            config=TrainingConfig(**{**base, "state": str(tmp_path / "b")}),
            resume=True,
        )
    with pytest.raises(TrainingStateError, match="no training state"):
        train(
            committee(),
            frames,
            config=TrainingConfig(**{**base, "state": str(tmp_path / "c")}),
            resume=True,
        )


def test_multiscale_train_resume(tmp_path, frames, capsys):
    from atomistic.mlip.dataset import write_dataset
    from multiscale.cli import main

    write_dataset(tmp_path / "data.extxyz", frames)
    text = (
        SMALL_COMMITTEE
        + """epochs = EPOCHS
batch_size = 4
lr_patience = 1
device = "cpu"
[output]
potential = "NAME/cu.pt"
metrics = "NAME/metrics.json"
CHECKPOINT
"""
    )

    def write(epochs, name, checkpoint=True):
        line = f'checkpoint = "{name}/best.pt"' if checkpoint else ""
        t = text.replace("EPOCHS", str(epochs)).replace("NAME", name).replace("CHECKPOINT", line)
        (tmp_path / f"{name}.toml").write_text(t)
        return str(tmp_path / f"{name}.toml")

    assert main(["train", write(4, "full"), "--quiet"]) == 0
    assert main(["train", write(2, "part"), "--quiet"]) == 0
    assert (tmp_path / "part" / "best.state").is_file()
    assert main(["train", write(4, "part"), "--quiet", "--resume"]) == 0
    full = load_potential(tmp_path / "full" / "cu.pt").state_dict()
    resumed = load_potential(tmp_path / "part" / "cu.pt").state_dict()
    assert all(torch.equal(full[k], resumed[k]) for k in full)
    metrics = json.loads((tmp_path / "part" / "metrics.json").read_text())
    assert metrics["resumed_from_epoch"] == 2 and len(metrics["history"]) == 4
    capsys.readouterr()
    # no state to resume from: one line, exit 2, nothing written
    assert main(["train", write(4, "none", checkpoint=False), "--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "none.toml" in err and "[output] checkpoint" in err
    assert main(["train", write(4, "lost"), "--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no training state" in err
    assert not (tmp_path / "lost").exists()
