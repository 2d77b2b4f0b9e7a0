"""``multiscale train CONFIG``: fit a network potential or committee to labelled frames.

Reads the training file (schema in ``docs/train.md``), trains (or fine-tunes) with a
progress line on stderr, and writes the potential (``.pt``, loadable with
``atomistic.load_potential`` and as ``[potential] kind = "mlip"``) and a metrics JSON, each
atomically. With ``[output] checkpoint`` (or ``state``) set, the whole training state is
saved after every epoch, and ``--resume`` continues a stopped run from it: the result equals
the uninterrupted run's bit for bit on the CPU.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

    from ase import Atoms

    from atomistic.mlip.network import NetworkPotential
    from atomistic.mlip.training import TrainingConfig, TrainingResult
    from multiscale.config.train import TrainConfig

HELP = "train an MLIP or a committee on labelled frames (see docs/train.md)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``train``."""
    parser.add_argument("config", metavar="CONFIG", help="training file (TOML)")
    parser.add_argument(
        "--quiet", action="store_true", help="no progress line, only the final summary"
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue a stopped run from its training state ([output] state, or the "
        "checkpoint's name with the suffix .state); epochs and patience may be raised",
    )


class _EpochLine:
    """One redrawn line per epoch on a terminal, a plain line every ``interval`` s otherwise."""

    def __init__(self, epochs: int, *, enabled: bool, interval: float = 10.0) -> None:
        self.epochs, self.enabled, self.interval = epochs, enabled, interval
        self.tty = sys.stderr.isatty()
        self._last = -float("inf")

    def __call__(self, row: dict) -> None:
        if not self.enabled:
            return
        line = (
            f"train: epoch {row['epoch']:5d}/{self.epochs}  loss {row['train_loss']:.4g}  "
            f"validation {row['validation_loss']:.4g}  lr {row['learning_rate']:.2g}"
        )
        now = time.perf_counter()
        if self.tty:
            sys.stderr.write("\r\033[K" + line)
            sys.stderr.flush()
        elif now - self._last >= self.interval:
            print(line, file=sys.stderr, flush=True)
            self._last = now

    def close(self) -> None:
        if self.enabled and self.tty:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()


def _read_frames(config: TrainConfig, key: str, names: Sequence[str]) -> list[Atoms]:
    """The frames of the datasets ``names``; a bad file is a :class:`CaseError` naming ``key``."""
    from atomistic.mlip.dataset import DatasetError, read_dataset
    from multiscale.errors import CaseError

    frames = []
    for name in names:
        try:
            frames.extend(read_dataset(config.path(name)))
        except (DatasetError, OSError) as err:
            raise CaseError(f"{config.file}: {key}: {err}") from None
    return frames


def _device(config: TrainConfig) -> str:
    """``training.device`` resolved (``auto``: CUDA when present); CaseError if absent."""
    from atomistic.device import DeviceError, resolve_device
    from multiscale.errors import CaseError

    try:
        return str(resolve_device(config.training.device))
    except DeviceError as err:
        raise CaseError(f"{config.file}: training.device: {err}") from None


def _settings(config: TrainConfig, *, resume: bool) -> TrainingConfig:
    """The library's :class:`TrainingConfig` for the training file.

    Raises:
        CaseError: no CUDA device for ``training.device = "cuda"``, or ``--resume`` with
            nowhere the state was saved.
    """
    from atomistic.mlip.training import TrainingConfig
    from multiscale.errors import CaseError

    device = _device(config)
    checkpoint, state = config.output.checkpoint, config.output.state_name()
    if resume and state is None:
        raise CaseError(
            f"{config.file}: --resume needs [output] state or [output] checkpoint "
            "(where the stopped run saved its training state)"
        )
    t = config.training
    return TrainingConfig(
        epochs=t.epochs,
        batch_size=t.batch_size,
        learning_rate=t.learning_rate,
        lr_factor=t.lr_factor,
        lr_patience=t.lr_patience,
        patience=t.patience,
        energy_noise=t.energy_noise,
        force_noise=t.force_noise,
        stress_noise=t.stress_noise,
        split=config.data.split,
        seed=config.data.seed,
        bootstrap=config.committee.bootstrap,
        device=device,
        dtype=t.dtype,
        checkpoint=None if checkpoint is None else str(config.path(checkpoint)),
        state=None if state is None else str(config.path(state)),
    )


def _new_model(config: TrainConfig, frames: Sequence[Atoms]) -> NetworkPotential:
    """A fresh network (or committee) as ``[model]`` and ``[committee]`` describe it.

    The elements default to those in the frames; member ``k`` is seeded with
    ``1000 · data.seed + k``.
    """
    from atomistic import MLIP, Committee

    m = config.model
    elements = m.elements or tuple(sorted({s for f in frames for s in f.get_chemical_symbols()}))
    common = {
        "elements": elements,
        "descriptor": m.spec(),
        "hidden": m.hidden,
        "activation": m.activation,
    }
    members = config.committee.members
    seeds = tuple(config.data.seed * 1000 + k for k in range(members))
    if members > 1:
        return Committee(n_members=members, seeds=seeds, **common)
    return MLIP(seed=seeds[0], **common)


def _base_model(config: TrainConfig) -> NetworkPotential | None:
    """The model of ``training.fine_tune_from``, read before any training (None: not set).

    Raises:
        CaseError: the file cannot be read as a network potential saved by ``train``.
    """
    from atomistic.mlip.network import NetworkPotential
    from atomistic.mlip.serialization import load_network
    from multiscale.errors import CaseError

    name = config.training.fine_tune_from
    if name is None:
        return None
    try:
        base = load_network(config.path(name))
    except Exception as err:  # torch.load and unpickling raise many types for a bad file
        raise CaseError(
            f"{config.file}: training.fine_tune_from = {name!r} cannot be read as a network "
            f"potential saved by multiscale train ({type(err).__name__}: {err})"
        ) from None
    if not isinstance(base, NetworkPotential):
        raise CaseError(
            f"{config.file}: training.fine_tune_from = {name!r} is not a network potential "
            "(.pt saved by multiscale train)"
        )
    return base


def _fit(
    config: TrainConfig,
    frames: list[Atoms],
    settings: TrainingConfig,
    *,
    base: NetworkPotential | None,
    old: list[Atoms],
    progress: _EpochLine,
    resume: bool,
) -> TrainingResult:
    """Fine-tune ``base`` with replay of ``old``, else train a new model."""
    from atomistic.mlip.training import fine_tune, train

    if base is None:
        model = _new_model(config, frames)
        return train(model, frames, config=settings, progress=progress, resume=resume)
    return fine_tune(
        base,
        frames,
        old,
        replay=config.training.replay,
        config=settings,
        progress=progress,
        resume=resume,
    )


def _write_results(config: TrainConfig, result: TrainingResult) -> dict[str, Any]:
    """Save the potential and the metrics JSON (each atomically); the metrics written."""
    from atomistic.mlip.serialization import save_potential
    from multiscale.outputs import write_json

    metrics = dict(result.metrics)
    metrics["data_files"] = [str(config.path(n)) for n in config.data.files]
    metrics["fine_tuned_from"] = config.training.fine_tune_from
    potential_path = config.path(config.output.potential)
    metrics["potential"] = str(potential_path)
    save_potential(result.potential, potential_path, metadata=metrics)
    write_json(config.path(config.output.metrics), {**metrics, "history": result.history})
    return metrics


def _summary(metrics: dict[str, Any]) -> str:
    """One line: members, epochs, and the errors on the test set (else the training set)."""
    name = "test" if metrics["test"].get("n_frames") else "train"
    errors = metrics[name]
    calibration = metrics.get("calibration")
    return (
        f"trained {metrics['members']} member(s), {metrics['epochs']} epochs "
        f"({metrics['time_per_epoch_s']:.3g} s each): {name} force RMSE "
        f"{errors['force_rmse_eV_per_A']:.4g} eV/Å, energy RMSE "
        f"{errors['energy_rmse_eV_per_atom']:.4g} eV/atom"
        + (f", calibration {calibration:.3g}" if calibration is not None else "")
    )


def main(args: argparse.Namespace) -> int:
    """Train; returns 0 (bad input raises :class:`~multiscale.errors.CaseError`)."""
    from multiscale.config.train import load_train_config
    from multiscale.errors import CaseError

    config = load_train_config(args.config)
    frames = _read_frames(config, "data.files", config.data.files)
    if len(frames) < 1:
        raise CaseError(f"{config.file}: data.files hold no frames")
    settings = _settings(config, resume=args.resume)
    base = _base_model(config)
    replay = config.training.replay_files if base is not None else ()
    old = _read_frames(config, "training.replay_files", replay)
    potential = config.path(config.output.potential)
    made = [p for p in (potential.parent, *potential.parent.parents) if not p.exists()]
    potential.parent.mkdir(parents=True, exist_ok=True)
    try:
        metrics = _locked_fit(args, config, potential, frames, settings, base=base, old=old)
    except CaseError:
        for folder in made:  # refused before any result: leave no empty output folders
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        raise
    print(_summary(metrics))
    print(f"wrote {metrics['potential']} and {config.path(config.output.metrics)}")
    return 0


def _locked_fit(
    args: argparse.Namespace,
    config: TrainConfig,
    potential: Path,
    frames: list,
    settings: Any,
    *,
    base: Any,
    old: list,
) -> dict:
    """Train under the lock of the output potential and write the results."""
    from atomistic import UnknownElementError
    from atomistic.mlip.batches import FrameLabelError
    from atomistic.mlip.training import TrainingStateError
    from multiscale.errors import CaseError
    from multiscale.lock import output_lock

    with output_lock(
        potential,
        where=f"{config.file}: output.potential",
        command=f"multiscale train {args.config}",
    ):
        line = _EpochLine(config.training.epochs, enabled=not args.quiet)
        try:
            result = _fit(
                config, frames, settings, base=base, old=old, progress=line, resume=args.resume
            )
        except (FrameLabelError, UnknownElementError) as err:
            raise CaseError(f"{config.file}: data.files: {err}") from None
        except TrainingStateError as err:
            raise CaseError(f"{config.file}: --resume: {err}") from None
        finally:
            line.close()
        return _write_results(config, result)
