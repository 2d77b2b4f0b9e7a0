"""Training network potentials and committees on energies, forces and stresses.

Loss of member ``m`` over a set of frames ``c`` (bootstrap weights ``w_mc``) and atoms ``a``
(``μ_a`` the force mask, ``N_c`` atoms per frame):

    L_m = Σ_c w_mc λ_c (ΔE_mc / N_c)² / σ_E² / Σ_c w_mc
        + Σ_a w_m,c(a) μ_a |ΔF_ma|² / σ_F² / Σ_a w_m,c(a) μ_a
        + Σ_c w_mc h_c |Δσ_mc|² / σ_S² / Σ_c w_mc h_c          (frames with stress, h_c = 1)

``λ_c`` is the frame's ``info["energy_weight"]`` (default 1; a fine-tuning gives replayed
frames ``(σ_E/σ_E,replay)²``). ``σ_E`` (eV/atom), ``σ_F`` (eV/Å per component) and ``σ_S``
(eV/Å³) are the stated label noise levels, so each term is a squared error in units of
its noise. All members train together on ``Σ_m L_m``: they differ by initial weights (seed
per member) and by bootstrap weights (a resample of the training frames per member).
Minibatches of frames are built once; each epoch visits them in a seeded random order, so a
seed fixes the weights on the CPU bit for bit. Early stopping keeps the weights of the best
validation loss. Finally the committee calibration is fitted on the validation frames (see
:mod:`atomistic.mlip.committee`).

With ``TrainingConfig.state`` set, the whole training state (weights, Adam moments, the
learning-rate schedule, the best weights so far, the history) is written there atomically
after every epoch, and ``train(..., resume=True)`` continues from it. Since the batch order
of an epoch depends only on the seed and the epoch number, a run stopped after epoch ``k``
and resumed gives the weights of the uninterrupted run bit for bit (on the CPU); ``epochs``
and ``patience`` may be raised on resuming, every other setting and the frames must be the
ones the state was written with (:class:`TrainingStateError` otherwise).
"""

from __future__ import annotations

import copy
import hashlib
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ase import Atoms

from atomistic.mlip.batches import Batch, fit_statistics, make_batch, split_indices
from atomistic.mlip.committee import Committee, fit_calibration, force_spread, member_forces
from atomistic.mlip.jacobian import (
    DescriptorJacobian,
    descriptor_jacobian,
    energies_and_forces,
    supports_jacobian,
)
from atomistic.mlip.network import NetworkPotential
from atomistic.mlip.serialization import save_potential

__all__ = [
    "TrainingConfig",
    "TrainingResult",
    "TrainingStateError",
    "batch_loss",
    "evaluate_set",
    "fine_tune",
    "train",
]


@dataclass(frozen=True, kw_only=True)
class TrainingConfig:
    """Settings of :func:`train` (units: eV, Å).

    Attributes:
        epochs: maximum number of passes over the training frames.
        batch_size: frames per minibatch.
        learning_rate: initial Adam learning rate.
        lr_factor: factor applied to the learning rate when the validation loss stalls.
        lr_patience: epochs without improvement before the learning rate drops.
        min_learning_rate: floor of the learning rate.
        patience: epochs without validation improvement before stopping.
        energy_noise: ``σ_E``, eV/atom.
        force_noise: ``σ_F``, eV/Å per component.
        stress_noise: ``σ_S``, eV/Å³; None leaves stresses out of the loss.
        split: train, validation, test fractions (sum 1).
        seed: seeds the split, the bootstrap and the batch order.
        bootstrap: resample the training frames per committee member.
        batched_forces: member forces in one vmapped backward pass instead of ``M``.
        cache_descriptors: for descriptors with a per-atom Jacobian (moment tensors),
            compute descriptors and Jacobians once per batch and train through them
            (:mod:`atomistic.mlip.jacobian`); same losses, far cheaper epochs, more
            memory (``n × D × 3Z`` numbers).
        device: ``"cpu"`` or ``"cuda"``.
        dtype: ``"float64"`` or ``"float32"``.
        checkpoint: where to save the best weights while training (atomic), or None.
        state: where to save the whole training state after every epoch (atomic), so that
            ``train(..., resume=True)`` can continue a stopped run; None: not saved.
    """

    epochs: int = 200
    batch_size: int = 8
    learning_rate: float = 3e-3
    lr_factor: float = 0.5
    lr_patience: int = 10
    min_learning_rate: float = 1e-5
    patience: int = 30
    energy_noise: float = 0.002
    force_noise: float = 0.05
    stress_noise: float | None = None
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 0
    bootstrap: bool = True
    batched_forces: bool = False
    cache_descriptors: bool = True
    device: str = "cpu"
    dtype: str = "float64"
    checkpoint: str | None = None
    state: str | None = None


class TrainingStateError(ValueError):
    """A training state that cannot be resumed.

    It is missing or unreadable, or was written by a run with other settings or frames.
    """


#: Settings that may differ between the run that wrote a state and the run resuming it.
_RESUMABLE_CHANGES = ("epochs", "patience", "checkpoint", "state", "min_learning_rate")
_STATE_FORMAT = "multiscale-training-state"
_STATE_VERSION = 1
#: The three sets of :func:`~atomistic.mlip.batches.split_indices`, in its order.
_SET_NAMES = ("train", "validation", "test")


@dataclass(kw_only=True)
class TrainingResult:
    """What :func:`train` returns.

    Attributes:
        potential: the trained potential (best validation weights, calibrated), float64 CPU.
        metrics: RMSEs per set, calibration, timings (plain values, JSON-ready).
        history: per epoch ``{"epoch", "train_loss", "validation_loss", "learning_rate"}``.
    """

    potential: NetworkPotential
    metrics: dict[str, Any]
    history: list[dict[str, float]] = field(default_factory=list)


def _dtype(name: str) -> torch.dtype:
    if name not in ("float64", "float32"):
        raise ValueError(f"dtype {name!r} unknown; allowed: float64, float32")
    return getattr(torch, name)


def _batches(
    frames: Sequence[Atoms],
    ids: Sequence[int],
    potential: NetworkPotential,
    config: TrainingConfig,
    shuffle_seed: int | None,
) -> list[Batch]:
    """Batches of ``config.batch_size`` frames ``ids`` (shuffled first with a seed given)."""
    ids = list(ids)
    if shuffle_seed is not None:
        ids = [ids[k] for k in np.random.default_rng(shuffle_seed).permutation(len(ids))]
    size = max(1, config.batch_size)
    return [
        make_batch(
            frames,
            ids[k : k + size],
            elements=potential.elements,
            cutoff=potential.cutoff,
            dtype=_dtype(config.dtype),
            device=config.device,
        )
        for k in range(0, len(ids), size)
    ]


def _member_terms(
    potential: NetworkPotential, batch: Batch, *, create_graph: bool, batched: bool
) -> dict[str, torch.Tensor]:
    """Per-member squared errors of one batch: energies ``(M, C)``, forces ``(M, n)``, etc."""
    if batch.cache is not None:
        return _cached_terms(potential, batch, batch.cache, create_graph=create_graph)
    vectors = batch.graph.vectors.detach().requires_grad_(True)
    graph = batch.graph.with_vectors(vectors)
    energies, forces, g = member_forces(
        potential, graph, create_graph=create_graph, batched=batched
    )
    out = _squared_errors(energies, forces, batch)
    if bool(batch.has_stress.any()):
        # V σ = Σ_e sym(r_e ⊗ g_e), summed per frame; Voigt xx yy zz yz xz xy
        w = _sym_outer(vectors.detach(), g)  # (M, E, 6)
        out["stress"] = _stress_error(w, batch.edge_frame, batch)
    return out


def _cached_terms(
    potential: NetworkPotential, batch: Batch, cache: DescriptorJacobian, *, create_graph: bool
) -> dict[str, torch.Tensor]:
    """As :func:`_member_terms`, through the batch's cached descriptor Jacobians."""
    energies, forces, g = energies_and_forces(
        potential, cache, batch.graph.species, create_graph=create_graph
    )
    out = _squared_errors(energies, forces, batch)
    if bool(batch.has_stress.any()):
        w = _sym_outer(cache.vectors, g).sum(2)  # (M, n, 6): Σ_z sym(r_iz ⊗ g_iz)
        out["stress"] = _stress_error(w, batch.atom_frame, batch)
    return out


def _sym_outer(r: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Voigt ``sym(r ⊗ g)`` (xx yy zz yz xz xy) of ``r`` ``(..., 3)`` and ``g`` ``(M, ..., 3)``."""
    a, b = [0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]
    return 0.5 * (r[..., a] * g[..., b] + r[..., b] * g[..., a])


def _stress_error(w: torch.Tensor, frame: torch.Tensor, batch: Batch) -> torch.Tensor:
    """``|σ_m,c − σ_c|²`` ``(M, C)`` from virial terms ``w`` ``(M, k, 6)`` of frames ``frame``."""
    virial = w.new_zeros((w.shape[0], batch.n_frames, 6)).index_add(1, frame, w)
    return ((virial / batch.volume[:, None] - batch.stress) ** 2).sum(-1)


def _squared_errors(
    energies: torch.Tensor, forces: torch.Tensor, batch: Batch
) -> dict[str, torch.Tensor]:
    """Per-member squared errors of frame energies per atom and of forces, and the means."""
    n_members, n_frames = energies.shape[0], batch.n_frames
    e_frame = energies.new_zeros((n_members, n_frames)).index_add(1, batch.atom_frame, energies)
    d_e = (e_frame - batch.energy) / batch.n_atoms
    d_f = ((forces - batch.forces) ** 2).sum(-1)
    out = {"energy": d_e**2, "forces": d_f, "mean_forces": forces.mean(0).detach()}
    out["energies"] = e_frame.detach()
    out["forces_all"] = forces.detach()
    return out


def _member_losses(
    t: dict[str, torch.Tensor], batch: Batch, config: TrainingConfig, weights: torch.Tensor | None
) -> torch.Tensor:
    """``L_m`` ``(M,)`` from the squared errors of :func:`_member_terms`."""
    if weights is None:
        weights = t["energy"].new_ones(t["energy"].shape)
    e2 = t["energy"] if batch.energy_weight is None else t["energy"] * batch.energy_weight
    loss = (weights * e2).sum(1) / weights.sum(1).clamp(min=1e-12)
    loss = loss / config.energy_noise**2
    w_atom = weights[:, batch.atom_frame] * batch.force_mask
    forces = (w_atom * t["forces"]).sum(1) / w_atom.sum(1).clamp(min=1e-12)
    loss = loss + forces / config.force_noise**2
    if config.stress_noise is not None and "stress" in t:
        w_s = weights * batch.has_stress
        stress = (w_s * t["stress"]).sum(1) / w_s.sum(1).clamp(min=1e-12)
        loss = loss + stress / config.stress_noise**2
    return loss


def batch_loss(
    potential: NetworkPotential,
    batch: Batch,
    *,
    config: TrainingConfig,
    weights: torch.Tensor | None = None,
    create_graph: bool = True,
) -> torch.Tensor:
    """``Σ_m L_m`` of one batch (see the module docstring); differentiable in the weights.

    Args:
        potential: an :class:`MLIP` or :class:`Committee` with ``M`` members.
        batch: the frames.
        config: noise levels (and ``batched_forces``).
        weights: ``(M, C)`` bootstrap weights of the batch's frames (default 1).
        create_graph: keep the graph through the forces (needed to train on them).
    """
    t = _member_terms(potential, batch, create_graph=create_graph, batched=config.batched_forces)
    return _member_losses(t, batch, config, weights).sum()


def evaluate_set(
    potential: NetworkPotential, batches: Sequence[Batch], *, config: TrainingConfig
) -> dict[str, Any]:
    """Errors of the member mean on labelled batches.

    Returns:
        ``loss`` (mean over batches of :func:`batch_loss` with unit weights),
        ``energy_rmse_eV_per_atom``, ``force_rmse_eV_per_A`` (per component, used atoms),
        ``n_frames``, ``n_force_atoms``, and the per-atom ``spread`` and ``error`` norms
        (tensors, used atoms only) for calibration.
    """
    if not batches:
        return {"n_frames": 0}
    e2, f2, nf, n_frames, loss = 0.0, 0.0, 0.0, 0, 0.0
    spreads, errors = [], []
    for b in batches:
        t = _member_terms(potential, b, create_graph=False, batched=config.batched_forces)
        loss += float(_member_losses(t, b, config, None).sum().detach())
        e_mean = t["energies"].mean(0)
        e2 += float((((e_mean - b.energy) / b.n_atoms) ** 2).sum())
        m = b.force_mask > 0
        err = (t["mean_forces"] - b.forces)[m]
        f2 += float((err**2).sum())
        nf += 3.0 * float(m.sum())
        n_frames += b.n_frames
        spreads.append(force_spread(t["forces_all"])[m].cpu().double())
        errors.append(torch.linalg.vector_norm(err, dim=1).cpu().double())
    return {
        "loss": loss / len(batches),
        "energy_rmse_eV_per_atom": math.sqrt(e2 / n_frames),
        "force_rmse_eV_per_A": math.sqrt(f2 / nf) if nf else float("nan"),
        "n_frames": n_frames,
        "n_force_atoms": int(nf // 3),
        "spread": torch.cat(spreads),
        "error": torch.cat(errors),
    }


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with tuples as lists (JSON and ``torch.load`` round trips keep them equal)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}


def _public(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metrics.items() if k not in ("spread", "error")}


def _bootstrap(n_members: int, n_frames: int, *, seed: int, enabled: bool) -> torch.Tensor:
    """``(M, n_frames)`` resample counts (ones for a single model or no bootstrap)."""
    if n_members == 1 or not enabled:
        return torch.ones((n_members, n_frames), dtype=torch.float64)
    rng = np.random.default_rng([seed, 1])
    counts = rng.multinomial(n_frames, np.full(n_frames, 1.0 / n_frames), size=n_members)
    return torch.as_tensor(counts, dtype=torch.float64)


@dataclass(kw_only=True)
class _Sets:
    """The frames of one run as batches, and the bootstrap weights of the training batches."""

    ids: tuple[list[int], list[int], list[int]]
    train: list[Batch]
    validation: list[Batch]
    test: list[Batch]
    weights: list[torch.Tensor]


def _training_sets(
    model: NetworkPotential,
    frames: Sequence[Atoms],
    config: TrainingConfig,
    *,
    fit_normalisation: bool,
) -> _Sets:
    """Split and batch the frames, cache descriptor Jacobians, fit the normalisation."""
    ids = split_indices(len(frames), config.split, seed=config.seed)
    train_b = _batches(frames, ids[0], model, config, shuffle_seed=config.seed)
    val_b = _batches(frames, ids[1], model, config, shuffle_seed=None)
    test_b = _batches(frames, ids[2], model, config, shuffle_seed=None)
    if config.cache_descriptors and supports_jacobian(model.descriptor):
        for b in (*train_b, *val_b, *test_b):  # once per batch: positions are fixed
            b.cache = descriptor_jacobian(model.descriptor, b.graph)
    if fit_normalisation:
        fit_statistics(model, train_b)
    position = {k: n for n, k in enumerate(ids[0])}
    boot = _bootstrap(model.n_members, len(ids[0]), seed=config.seed, enabled=config.bootstrap)
    boot = boot.to(device=config.device, dtype=_dtype(config.dtype))
    weights = [boot[:, [position[int(k)] for k in b.frame_ids]] for b in train_b]
    return _Sets(ids=ids, train=train_b, validation=val_b, test=test_b, weights=weights)


class _Run:
    """One training run: the model, its batches, the optimiser and how far it has come.

    ``epoch`` counts the epochs done; ``best_*`` are the lowest validation loss so far, the
    epoch that reached it and the weights it had then.
    """

    def __init__(
        self,
        model: NetworkPotential,
        sets: _Sets,
        config: TrainingConfig,
        fingerprint: dict[str, Any],
    ) -> None:
        self.model, self.sets, self.config, self.fingerprint = model, sets, config, fingerprint
        self.optimiser = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
        self.schedule = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimiser,
            factor=config.lr_factor,
            patience=config.lr_patience,
            min_lr=config.min_learning_rate,
        )
        self.epoch = 0
        self.history: list[dict[str, float]] = []
        self.epoch_times: list[float] = []
        self.best_loss, self.best_epoch = math.inf, -1
        self.best_model = copy.deepcopy(model.state_dict())

    @property
    def stalled(self) -> bool:
        """True once ``patience`` epochs have passed without a new best validation loss."""
        return self.epoch - self.best_epoch >= self.config.patience

    def resume(self) -> None:
        """Continue from the training state in ``config.state`` (checked against this run)."""
        saved = _read_state(self.config, self.fingerprint)
        self.model.load_state_dict(saved["model"])
        self.optimiser.load_state_dict(saved["optimiser"])
        self.schedule.load_state_dict(saved["scheduler"])
        self.best_loss, self.best_epoch = saved["best_loss"], saved["best_epoch"]
        self.best_model = saved["best_model"]
        self.history, self.epoch_times = list(saved["history"]), list(saved["epoch_times"])
        self.epoch = saved["epoch"]

    def step(self, epoch: int) -> dict[str, float]:
        """Train epoch ``epoch`` (0-based), validate, keep the best, save; the history row."""
        t0 = time.perf_counter()
        train_loss = self._train_epoch(epoch)
        val_b = self.sets.validation
        val_loss = (
            evaluate_set(self.model, val_b, config=self.config)["loss"] if val_b else train_loss
        )
        self.schedule.step(val_loss)
        self.epoch_times.append(time.perf_counter() - t0)
        self.epoch = epoch + 1
        row = {
            "epoch": self.epoch,
            "train_loss": train_loss,
            "validation_loss": val_loss,
            "learning_rate": self.optimiser.param_groups[0]["lr"],
        }
        self.history.append(row)
        if val_loss < self.best_loss:
            self._keep_best(val_loss)
        if self.config.state is not None:
            _write_state(self.config.state, self._state())
        return row

    def _train_epoch(self, epoch: int) -> float:
        """One pass over the training batches in the seeded order of ``epoch``; mean loss."""
        config, batches = self.config, self.sets.train
        order = torch.randperm(
            len(batches), generator=torch.Generator().manual_seed(config.seed * 100003 + epoch)
        )
        total = 0.0
        for k in order.tolist():
            self.optimiser.zero_grad(set_to_none=True)
            loss = batch_loss(self.model, batches[k], config=config, weights=self.sets.weights[k])
            loss.backward()
            self.optimiser.step()
            total += float(loss.detach())
        return total / len(batches)

    def _keep_best(self, loss: float) -> None:
        """Record the current weights as the best (and write the checkpoint, if any)."""
        self.best_loss, self.best_epoch = loss, self.epoch
        self.best_model = copy.deepcopy(self.model.state_dict())
        if self.config.checkpoint is not None:
            save_potential(
                _cpu64(self.model), self.config.checkpoint, metadata={"epoch": self.epoch}
            )

    def _state(self) -> dict[str, Any]:
        """Everything :meth:`resume` needs, for :func:`_write_state`."""
        return {
            "epoch": self.epoch,
            "model": self.model.state_dict(),
            "optimiser": self.optimiser.state_dict(),
            "scheduler": self.schedule.state_dict(),
            "best_loss": self.best_loss,
            "best_epoch": self.best_epoch,
            "best_model": self.best_model,
            "history": self.history,
            "epoch_times": self.epoch_times,
            "fingerprint": self.fingerprint,
        }


def train(
    potential: NetworkPotential,
    frames: Sequence[Atoms],
    *,
    config: TrainingConfig | None = None,
    fit_normalisation: bool = True,
    progress: Callable[[dict[str, float]], None] | None = None,
    resume: bool = False,
) -> TrainingResult:
    """Train ``potential`` (an :class:`MLIP` or a :class:`Committee`) on labelled frames.

    The frames are split with ``config.split`` and ``config.seed``; the normalisation is
    fitted to the training frames (unless ``fit_normalisation`` is False, as when
    fine-tuning); all members train together with Adam; the best validation weights are
    kept (and saved to ``config.checkpoint``); a committee is then calibrated on the
    validation frames (the training frames when there are none).

    Args:
        potential: the model to train; it is copied, not changed.
        frames: labelled ``ase.Atoms`` (see :mod:`atomistic.mlip.batches`).
        config: settings (defaults: :class:`TrainingConfig`).
        fit_normalisation: fit descriptor statistics and reference energies first.
        progress: called after every epoch with the row appended to the history.
        resume: continue from the state in ``config.state`` (written by an earlier call with
            the same frames and settings, see the module docstring) instead of epoch 0.

    Returns:
        The trained potential (float64, CPU), metrics and history.

    Raises:
        TrainingStateError: ``resume`` without a usable state.
    """
    config = config or TrainingConfig()
    start = time.perf_counter()
    model = copy.deepcopy(potential).to(device=config.device, dtype=_dtype(config.dtype))
    sets = _training_sets(model, frames, config, fit_normalisation=fit_normalisation)
    run = _Run(model, sets, config, _fingerprint(config, frames, model))
    if resume:
        run.resume()
    first = run.epoch
    if not (resume and run.stalled):
        for epoch in range(first, config.epochs):
            row = run.step(epoch)
            if progress is not None:
                progress(row)
            if run.stalled:
                break
    model.load_state_dict(run.best_model)
    metrics = _final_metrics(model, sets.train, sets.validation, sets.test, config)
    metrics.update(
        {
            "n_frames": {name: len(ids) for name, ids in zip(_SET_NAMES, sets.ids, strict=True)},
            "members": model.n_members,
            "epochs": len(run.history),
            "best_epoch": run.best_epoch,
            "resumed_from_epoch": first if resume else None,
            "wall_time_s": time.perf_counter() - start,
            "time_per_epoch_s": float(np.mean(run.epoch_times)) if run.epoch_times else 0.0,
            "config": _plain(asdict(config)),
        }
    )
    return TrainingResult(potential=_cpu64(model), metrics=metrics, history=run.history)


def _fingerprint(
    config: TrainingConfig, frames: Sequence[Atoms], model: NetworkPotential
) -> dict[str, Any]:
    """What a resumed run must share with the run that wrote the state.

    That is the settings (less :data:`_RESUMABLE_CHANGES`), the model's shapes and a digest
    of the frames' labels.
    """
    digest = hashlib.sha256()
    for atoms in frames:
        digest.update(np.asarray(atoms.numbers, dtype=np.int64).tobytes())
        digest.update(np.asarray(atoms.positions, dtype=np.float64).tobytes())
        digest.update(np.asarray(atoms.cell[:], dtype=np.float64).tobytes())
        digest.update(np.float64(atoms.info.get("energy", np.nan)).tobytes())
        forces = atoms.arrays.get("forces")
        if forces is not None:
            digest.update(np.asarray(forces, dtype=np.float64).tobytes())
    settings = _plain({k: v for k, v in asdict(config).items() if k not in _RESUMABLE_CHANGES})
    shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
    return {"settings": settings, "model": shapes, "frames": [len(frames), digest.hexdigest()]}


def _write_state(path: str | Path, state: dict[str, Any]) -> None:
    """``torch.save`` to a temporary file in the same folder, then ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save({"format": _STATE_FORMAT, "version": _STATE_VERSION, **state}, tmp)
    os.replace(tmp, path)


def _read_state(config: TrainingConfig, fingerprint: dict[str, Any]) -> dict[str, Any]:
    """The state in ``config.state``, checked against this run's ``fingerprint``."""
    if config.state is None:
        raise TrainingStateError("resume needs TrainingConfig.state (where the state was saved)")
    path = Path(config.state)
    if not path.is_file():
        raise TrainingStateError(f"{path}: no training state to resume from")
    try:
        saved = torch.load(path, map_location=config.device, weights_only=False)
    except Exception as err:  # torn or foreign file
        raise TrainingStateError(f"{path}: not a training state ({type(err).__name__})") from None
    if not isinstance(saved, dict) or saved.get("format") != _STATE_FORMAT:
        raise TrainingStateError(f"{path}: not a training state written by atomistic.train")
    theirs = saved["fingerprint"]
    if theirs["model"] != fingerprint["model"]:
        raise TrainingStateError(f"{path}: written for another model (layer shapes differ)")
    if theirs["frames"] != fingerprint["frames"]:
        raise TrainingStateError(
            f"{path}: written for other frames ({theirs['frames'][0]} frames then, "
            f"{fingerprint['frames'][0]} now, or other labels)"
        )
    changed = sorted(
        k
        for k in set(theirs["settings"]) | set(fingerprint["settings"])
        if theirs["settings"].get(k) != fingerprint["settings"].get(k)
    )
    if changed:
        raise TrainingStateError(
            f"{path}: written with other settings: {', '.join(changed)} differ "
            f"(only {', '.join(_RESUMABLE_CHANGES)} may change on resuming)"
        )
    return saved


def _cpu64(model: NetworkPotential) -> NetworkPotential:
    return copy.deepcopy(model).to(device="cpu", dtype=torch.float64)


def _final_metrics(
    model: NetworkPotential,
    train_b: Sequence[Batch],
    val_b: Sequence[Batch],
    test_b: Sequence[Batch],
    config: TrainingConfig,
) -> dict[str, Any]:
    """Errors on the three sets; a committee is calibrated on validation (else train)."""
    sets = {
        "train": evaluate_set(model, train_b, config=config),
        "validation": evaluate_set(model, val_b, config=config),
        "test": evaluate_set(model, test_b, config=config),
    }
    out: dict[str, Any] = {name: _public(m) for name, m in sets.items()}
    if isinstance(model, Committee):
        name = "validation" if sets["validation"].get("n_force_atoms") else "train"
        m = sets[name]
        model.calibration = fit_calibration(m["spread"], m["error"])
        out["calibration"] = model.calibration
        out["calibration_set"] = name
        if sets["test"].get("n_force_atoms"):
            t = sets["test"]
            out["test_spread_rms_eV_per_A"] = model.calibration * _rms(t["spread"])
            out["test_error_rms_eV_per_A"] = _rms(t["error"])
    return out


def _rms(x: torch.Tensor) -> float:
    return float(torch.sqrt((x.double() ** 2).mean()))


def fine_tune(
    committee: NetworkPotential,
    new_frames: Sequence[Atoms],
    old_frames: Sequence[Atoms] = (),
    *,
    replay: float | None = 1.0,
    config: TrainingConfig | None = None,
    progress: Callable[[dict[str, float]], None] | None = None,
    resume: bool = False,
) -> TrainingResult:
    """Warm-start training on new labels mixed with a replay of old ones, then recalibrate.

    The normalisation (descriptor statistics, reference energies) is kept, so the model
    starts from the function it already represents.

    Args:
        committee: the potential to start from (not changed).
        new_frames: newly labelled frames (all are used).
        old_frames: earlier training frames.
        replay: old frames drawn (without replacement, seeded) per new frame; None: all.
        config: settings; a lower ``learning_rate`` than for training from scratch suits.
        progress: as in :func:`train`.
        resume: as in :func:`train`.
    """
    config = config or TrainingConfig()
    old = list(old_frames)
    if replay is not None and old:
        n_old = min(len(old), round(replay * len(new_frames)))
        pick = np.random.default_rng([config.seed, 2]).choice(len(old), n_old, replace=False)
        old = [old[k] for k in sorted(pick.tolist())]
    return train(
        committee,
        [*new_frames, *old],
        config=config,
        fit_normalisation=False,
        progress=progress,
        resume=resume,
    )
