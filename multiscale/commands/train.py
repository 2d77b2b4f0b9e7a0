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


def _read_frames(config, key: str, names) -> list:
    from atomistic.mlip.dataset import DatasetError, read_dataset
    from multiscale.errors import CaseError

    frames = []
    for name in names:
        try:
            frames.extend(read_dataset(config.path(name)))
        except (DatasetError, OSError) as err:
            raise CaseError(f"{config.file}: {key}: {err}") from None
    return frames


def main(args: argparse.Namespace) -> int:
    """Train; returns 0 (bad input raises :class:`~multiscale.errors.CaseError`)."""
    from multiscale.config.train import load_train_config
    from multiscale.errors import CaseError
    from multiscale.outputs import write_json

    config = load_train_config(args.config)

    import torch

    from atomistic import MLIP, Committee, UnknownElementError, load_potential
    from atomistic.mlip.batches import FrameLabelError
    from atomistic.mlip.network import NetworkPotential
    from atomistic.mlip.serialization import save_potential
    from atomistic.mlip.training import TrainingConfig, TrainingStateError, fine_tune, train

    frames = _read_frames(config, "data.files", config.data.files)
    if len(frames) < 1:
        raise CaseError(f"{config.file}: data.files hold no frames")
    t, m = config.training, config.model
    device = t.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    elif device == "cuda" and not torch.cuda.is_available():
        raise CaseError(f'{config.file}: training.device = "cuda" but no CUDA device is present')
    checkpoint, state = config.output.checkpoint, config.output.state_name()
    if args.resume and state is None:
        raise CaseError(
            f"{config.file}: --resume needs [output] state or [output] checkpoint "
            "(where the stopped run saved its training state)"
        )
    settings = TrainingConfig(
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
    line = _EpochLine(t.epochs, enabled=not args.quiet)
    try:
        if t.fine_tune_from is not None:
            base = load_potential(config.path(t.fine_tune_from))
            if not isinstance(base, NetworkPotential):
                raise CaseError(
                    f"{config.file}: training.fine_tune_from = {t.fine_tune_from} is not a "
                    "network potential (.pt saved by multiscale train)"
                )
            old = _read_frames(config, "training.replay_files", t.replay_files)
            result = fine_tune(
                base,
                frames,
                old,
                replay=t.replay,
                config=settings,
                progress=line,
                resume=args.resume,
            )
        else:
            elements = m.elements or tuple(
                sorted({s for f in frames for s in f.get_chemical_symbols()})
            )
            spec = m.spec()
            common = {
                "elements": elements,
                "descriptor": spec,
                "hidden": m.hidden,
                "activation": m.activation,
            }
            members = config.committee.members
            seeds = tuple(config.data.seed * 1000 + k for k in range(members))
            model = (
                Committee(n_members=members, seeds=seeds, **common)
                if members > 1
                else MLIP(seed=seeds[0], **common)
            )
            result = train(model, frames, config=settings, progress=line, resume=args.resume)
    except (FrameLabelError, UnknownElementError) as err:
        raise CaseError(f"{config.file}: data.files: {err}") from None
    except TrainingStateError as err:
        raise CaseError(f"{config.file}: --resume: {err}") from None
    finally:
        line.close()
    metrics = dict(result.metrics)
    metrics["data_files"] = [str(config.path(n)) for n in config.data.files]
    metrics["fine_tuned_from"] = t.fine_tune_from
    potential_path = config.path(config.output.potential)
    metrics["potential"] = str(potential_path)
    save_potential(result.potential, potential_path, metadata=metrics)
    write_json(config.path(config.output.metrics), {**metrics, "history": result.history})
    test = metrics["test"] if metrics["test"].get("n_frames") else metrics["train"]
    name = "test" if metrics["test"].get("n_frames") else "train"
    print(
        f"trained {metrics['members']} member(s), {metrics['epochs']} epochs "
        f"({metrics['time_per_epoch_s']:.3g} s each): {name} force RMSE "
        f"{test['force_rmse_eV_per_A']:.4g} eV/Å, energy RMSE "
        f"{test['energy_rmse_eV_per_atom']:.4g} eV/atom"
        + (f", calibration {metrics['calibration']:.3g}" if "calibration" in metrics else "")
    )
    print(f"wrote {potential_path} and {config.path(config.output.metrics)}")
    return 0
