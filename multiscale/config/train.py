"""The training file read by ``multiscale train``: data, model, committee, training, output.

Only the standard library and :mod:`multiscale.config.schema` are imported, so checking a file is
fast. Paths are relative to the training file's folder. The schema, with an example, is
documented in ``docs/train.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from multiscale.config.schema import Context, build_section, option, read_toml
from multiscale.config.sections import all_positive, at_least_one, non_negative, positive

__all__ = ["TrainConfig", "load_train_config"]


def _fractions(value: tuple[float, float, float]) -> str | None:
    if any(f < 0 for f in value) or abs(sum(value) - 1.0) > 1e-9 or value[0] <= 0:
        return "must be three fractions >= 0 (train > 0) that sum to 1"
    return None


_non_negative = non_negative


def _zetas(value: tuple[float, ...]) -> str | None:
    return "entries must all be >= 1" if not value or any(z < 1 for z in value) else None


def _widths(value: tuple[int, ...]) -> str | None:
    return "must be a non-empty array of integers >= 1" if not value or min(value) < 1 else None


@dataclass(frozen=True, kw_only=True)
class DataSection:
    """``[data]``: the labelled frames and how they are split."""

    files: tuple[str, ...] = option(doc="extended XYZ datasets, relative to the training file")
    split: tuple[float, float, float] = option(
        (0.8, 0.1, 0.1), doc="train, validation, test fractions", check=_fractions
    )
    seed: int = option(0, doc="seeds the split, the bootstrap and the batch order")


def _max_l(value: int) -> str | None:
    return "must be an integer in 0 … 8" if not 0 <= value <= 8 else None


@dataclass(frozen=True, kw_only=True)
class ModelSection:
    """``[model]``: descriptor and networks (ignored when fine-tuning: the old ones are kept)."""

    elements: tuple[str, ...] = option((), doc="chemical symbols; default: those in the data")
    descriptor: Literal["moments", "acsf"] = option(
        "moments", doc="moments: moment-tensor invariants, O(pairs); acsf: G2/G4, O(triplets)"
    )
    cutoff: float = option(5.0, doc="radial cutoff", unit="Å", check=positive)
    angular_cutoff: float | None = option(
        None, doc="angular cutoff (default 0.8 × cutoff)", unit="Å", check=positive
    )
    radial_eta: tuple[float, ...] = option((2.0,), doc="G2 widths", unit="Å⁻²", check=all_positive)
    radial_shift: tuple[float, ...] = option(
        (1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0), doc="G2 centres", unit="Å"
    )
    angular_eta: tuple[float, ...] | None = option(
        None,
        doc="acsf: G4 widths (default [0.005, 0.05]); moments: widths of the radial "
        "functions of the moments (default [2.0])",
        unit="Å⁻²",
        check=all_positive,
    )
    zeta: tuple[float, ...] = option((1.0, 2.0, 4.0), doc="G4 exponents (acsf)", check=_zetas)
    angular_shift: tuple[float, ...] = option(
        (2.5, 3.0, 3.5), doc="centres of the radial functions of the moments", unit="Å"
    )
    max_l: int = option(3, doc="highest moment rank L: cos^l θ for l = 0 … L", check=_max_l)
    cutoff_function: Literal["polynomial", "cosine"] = option(
        "polynomial", doc="polynomial: C²; cosine: C¹"
    )
    hidden: tuple[int, ...] = option((32, 32), doc="hidden-layer widths", check=_widths)
    activation: Literal["silu", "tanh"] = option("silu", doc="activation function")

    def spec(self):
        """The descriptor hyper-parameters (``ACSFSpec`` or ``MomentSpec``; imports torch)."""
        from atomistic.mlip.acsf import ACSFSpec
        from atomistic.mlip.moments import MomentSpec

        common = {
            "cutoff": self.cutoff,
            "angular_cutoff": self.angular_cutoff,
            "radial_eta": self.radial_eta,
            "radial_shift": self.radial_shift,
            "cutoff_function": self.cutoff_function,
        }
        if self.angular_eta is not None:  # else each descriptor's own default
            common["angular_eta"] = self.angular_eta
        if self.descriptor == "acsf":
            return ACSFSpec(zeta=self.zeta, **common)
        return MomentSpec(angular_shift=self.angular_shift, max_l=self.max_l, **common)


@dataclass(frozen=True, kw_only=True)
class CommitteeSection:
    """``[committee]``: how many members and how they differ."""

    members: int = option(4, doc="committee size (1: a single network)", check=at_least_one)
    bootstrap: bool = option(True, doc="resample the training frames per member")


@dataclass(frozen=True, kw_only=True)
class TrainingSection:
    """``[training]``: optimisation, label noise and fine-tuning."""

    epochs: int = option(200, doc="maximum passes over the training frames", check=at_least_one)
    batch_size: int = option(8, doc="frames per minibatch", check=at_least_one)
    learning_rate: float = option(3e-3, doc="initial Adam learning rate", check=positive)
    lr_factor: float = option(0.5, doc="learning-rate factor on a plateau", check=positive)
    lr_patience: int = option(
        10, doc="epochs of plateau before the rate drops", check=_non_negative
    )
    patience: int = option(30, doc="epochs without improvement before stopping", check=at_least_one)
    energy_noise: float = option(0.002, doc="energy label noise", unit="eV/atom", check=positive)
    force_noise: float = option(0.05, doc="force label noise", unit="eV/Å", check=positive)
    stress_noise: float | None = option(
        None, doc="stress label noise; absent: stresses not fitted", unit="eV/Å³", check=positive
    )
    device: Literal["auto", "cpu", "cuda"] = option("auto", doc="auto: CUDA when present")
    dtype: Literal["float64", "float32"] = option("float64", doc="training precision")
    fine_tune_from: str | None = option(
        None, doc="a saved potential (.pt) to start from instead of new weights"
    )
    replay_files: tuple[str, ...] = option(
        (), doc="old datasets replayed when fine-tuning, relative to the training file"
    )
    replay: float = option(1.0, doc="old frames replayed per new frame", check=_non_negative)


@dataclass(frozen=True, kw_only=True)
class OutputSection:
    """``[output]``: where results go (relative to the training file)."""

    potential: str = option("potential.pt", doc="the trained potential")
    metrics: str = option("metrics.json", doc="metrics and per-epoch history (JSON)")
    checkpoint: str | None = option(None, doc="best weights while training, saved atomically")
    state: str | None = option(
        None,
        doc="the whole training state after every epoch, for multiscale train --resume; "
        "absent: the checkpoint's name with the suffix .state, when a checkpoint is set",
    )

    def state_name(self) -> str | None:
        """Where the training state goes (``state``, else derived from ``checkpoint``)."""
        if self.state is not None:
            return self.state
        if self.checkpoint is None:
            return None
        return str(Path(self.checkpoint).with_suffix(".state"))


_SECTIONS = {
    "data": DataSection,
    "model": ModelSection,
    "committee": CommitteeSection,
    "training": TrainingSection,
    "output": OutputSection,
}


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """A validated training file."""

    file: Path
    data: DataSection
    model: ModelSection
    committee: CommitteeSection
    training: TrainingSection
    output: OutputSection

    def path(self, name: str) -> Path:
        """``name`` relative to the training file's folder (absolute names as given)."""
        p = Path(name).expanduser()
        return p if p.is_absolute() else self.file.parent / p


def load_train_config(path: str | Path) -> TrainConfig:
    """Read and validate a training file.

    Raises:
        CaseError: a missing or unreadable file, bad TOML, an unknown section or key, or a
            bad value; the one-line message names the file, the key and what is allowed.
    """
    file = Path(path)
    raw = read_toml(file, "training config file")
    ctx = Context(file=str(file))
    for name in raw:
        if name not in _SECTIONS:
            ctx.fail(name, f"unknown section [{name}]; allowed: {', '.join(_SECTIONS)}")
    if "data" not in raw:
        ctx.fail("data", "missing section [data]")
    sections = {
        name: build_section(cls, raw.get(name, {}), prefix=name, ctx=ctx)
        for name, cls in _SECTIONS.items()
    }
    config = TrainConfig(file=file, **sections)
    model = config.model
    if model.angular_cutoff is not None and model.angular_cutoff > model.cutoff:
        ctx.fail(
            "model.angular_cutoff", f"model.angular_cutoff must be <= model.cutoff = {model.cutoff}"
        )
    if len(model.radial_eta) not in (1, len(model.radial_shift)):
        ctx.fail("model.radial_eta", "model.radial_eta needs one value or one per radial_shift")
    if (
        model.descriptor == "moments"
        and model.angular_eta is not None
        and len(model.angular_eta) not in (1, len(model.angular_shift))
    ):
        ctx.fail("model.angular_eta", "model.angular_eta needs one value or one per angular_shift")
    if model.descriptor == "moments" and not model.angular_shift:
        ctx.fail("model.angular_shift", "model.angular_shift must not be empty")
    for key, names in (
        ("data.files", config.data.files),
        ("training.replay_files", config.training.replay_files),
    ):
        for name in names:
            if not config.path(name).is_file():
                ctx.fail(key, f"{key}: {name} not found (looked in {config.file.parent})")
    if not config.data.files:
        ctx.fail("data.files", "data.files must name at least one dataset")
    tune = config.training.fine_tune_from
    if tune is not None and not config.path(tune).is_file():
        ctx.fail("training.fine_tune_from", f"training.fine_tune_from: {tune} not found")
    _check_outputs(config, ctx)
    return config


def _check_outputs(config: TrainConfig, ctx: Context) -> None:
    """Each output must be a file, not a folder, an input or another output.

    So the model cannot overwrite its own training data.
    """
    inputs = {
        config.path(n).resolve(): key
        for key, names in (
            ("data.files", config.data.files),
            ("training.replay_files", config.training.replay_files),
        )
        for n in names
    }
    seen: dict[Path, str] = {}
    out = config.output
    for name in ("potential", "metrics", "checkpoint", "state"):
        value = out.state_name() if name == "state" else getattr(out, name)
        if value is None:
            continue
        key = f"output.{name}"
        if not value.strip():
            ctx.fail(key, f"{key} is empty; give a file name")
        path = config.path(value).resolve()
        if path.is_dir():
            ctx.fail(key, f"{key} = {value!r} is a folder; give a file name, e.g. potential.pt")
        if path in inputs:
            ctx.fail(key, f"{key} = {value!r} would overwrite the training data ({inputs[path]})")
        if path in seen:
            ctx.fail(key, f"{key} = {value!r} is also {seen[path]}; give each output its own file")
        seen[path] = key
