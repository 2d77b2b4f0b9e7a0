"""In-run retraining of a committee potential: find, cut, label, fine-tune, recalibrate.

The **retrain** action of the adaptive loop (DESIGN.md §3), as plain functions the loop calls
in turn:

==================================  ======================================================
step                                function
==================================  ======================================================
``u_i = c·s_i`` per atom (eV/Å)     :func:`atom_uncertainty` (the committee's calibrated
                                    force spread at the current positions)
accept / label / roll back          :func:`uncertainty_action` (``max u < lo``, between,
                                    ``> hi``)
cluster centres                     :func:`select_centres` (greedy: most uncertain first,
                                    above ``lo``, ``min_separation`` apart)
clusters                            :func:`carve_clusters` (spheres ``r_core + r_buffer``,
                                    force labels only within ``r_core``)
labels                              :func:`label_frames` (one oracle call per cluster, each
                                    labelled frame appended to the dataset at once)
fine-tuning, recalibration          :func:`retrain` (warm start, replay of old frames)
==================================  ======================================================

Clusters: the force on atom ``i`` of a potential with site energies that reach ``r_cut``
(EAM's embedding, the network's descriptor) depends on atoms up to ``2 r_cut`` away, so a
buffer ``r_buffer ≥ 2 r_cut`` gives the masked atoms of a cluster the forces they have in
the configuration it was cut from (:mod:`atomistic.mlip.configurations`);
:meth:`RetrainSettings.buffer_width` picks it from the model's and the oracle's cutoffs.
A cluster is cut from exactly the atoms it is given: atoms missing there (beyond the
atomistic region) are missing in the cluster too.

Labels are expensive, so :func:`label_frames` writes each labelled frame to the dataset file
as soon as it has it (atomically, :func:`~atomistic.mlip.dataset.append_dataset`), and an
oracle that fails stops the labelling with a one-line error instead of an exception: the
labels already made stay on disk and are handed back.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator
from ase.geometry import complete_cell, get_distances
from numpy.typing import ArrayLike

from atomistic.device import resolve_device
from atomistic.mlip.batches import make_batch, split_indices
from atomistic.mlip.committee import Committee
from atomistic.mlip.configurations import defect_cluster
from atomistic.mlip.dataset import append_dataset, label
from atomistic.mlip.training import TrainingConfig, evaluate_set, fine_tune
from atomistic.neighbours import NeighbourList, build_graph
from atomistic.potentials.protocol import species_indices

__all__ = [
    "CLUSTER_CONFIG_TYPE",
    "LabelOutcome",
    "MaskedErrors",
    "RetrainResult",
    "RetrainSettings",
    "atom_uncertainty",
    "carve_clusters",
    "label_frames",
    "masked_errors",
    "retrain",
    "select_centres",
    "uncertainty_action",
]

#: ``info['config_type']`` of the clusters :func:`carve_clusters` cuts.
CLUSTER_CONFIG_TYPE = "adaptive-cluster"

Action = Literal["accept", "label", "rollback"]


@dataclass(frozen=True, kw_only=True)
class RetrainSettings:
    """Settings of the retrain action (units: eV, Å, eV/Å).

    Attributes:
        lo: calibrated force spread (eV/Å) below which an atom is trusted; atoms above it
            are candidates for labelling.
        hi: calibrated force spread (eV/Å) above which the state is not trusted at all: the
            loop rolls back to the last accepted state before labelling (``hi > lo``).
        r_core: radius (Å) around a centre within which the oracle's forces are labels.
        r_buffer: buffer (Å) beyond ``r_core`` whose atoms are in the cluster but carry no
            force label; None: :meth:`buffer_width` (twice the larger cutoff).
        max_clusters: most clusters cut (and oracle calls made) per retrain action.
        min_separation: least distance (Å) between two centres, so that clusters do not
            label the same atoms twice (``≥ 2 r_core`` keeps their cores apart).
        epochs: most fine-tuning epochs.
        learning_rate: Adam learning rate of the fine-tuning (lower than from scratch).
        batch_size: frames per minibatch.
        patience: epochs without validation improvement before the fine-tuning stops.
        replay: old frames replayed per new frame (drawn without replacement, seeded);
            None: all old frames.
        split: train, validation, test fractions of the fine-tuning's frames. The new frames
            go to training first; validation and test are taken from the replayed frames
            (:func:`retrain`). The default trains on every frame and keeps the weights of
            the lowest training loss: a validation set of old frames alone would keep the
            weights that fit the old frames best, not the new ones. The calibration is
            then fitted on the training frames.
        energy_noise: ``σ_E`` of the fine-tuning loss, eV/atom. Looser than for training
            from scratch: a cluster's energy includes its cut surface, which the run never
            meets, and a tight ``σ_E`` lets that outweigh the masked forces.
        replay_energy_noise: ``σ_E`` of the replayed frames, eV/atom; None: ``energy_noise``.
            Tighter than ``energy_noise`` keeps the energy of the old (bulk) frames where it
            was while the new clusters' energies stay loose (:func:`retrain`).
        force_noise: ``σ_F`` of the fine-tuning loss, eV/Å per component.
        stress_noise: ``σ_S`` of the fine-tuning loss, eV/Å³ (frames with a stress label,
            the periodic replayed ones); None leaves stresses out.
        seed: seeds the replay draw, the split, the bootstrap and the batch order.
    """

    lo: float = 0.05
    hi: float = 0.20
    r_core: float = 2.8
    r_buffer: float | None = None
    max_clusters: int = 4
    min_separation: float = 5.6
    epochs: int = 40
    learning_rate: float = 2e-3
    batch_size: int = 4
    patience: int = 15
    replay: float | None = 4.0
    split: tuple[float, float, float] = (1.0, 0.0, 0.0)
    energy_noise: float = 0.02
    replay_energy_noise: float | None = None
    force_noise: float = 0.05
    stress_noise: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        positive = ("lo", "hi", "r_core", "min_separation", "learning_rate")
        for name in positive:
            if not getattr(self, name) > 0.0:
                raise ValueError(f"RetrainSettings.{name} must be > 0, got {getattr(self, name)}")
        if self.hi <= self.lo:
            raise ValueError(f"RetrainSettings.hi ({self.hi}) must exceed lo ({self.lo})")
        if self.r_buffer is not None and self.r_buffer < 0.0:
            raise ValueError(f"RetrainSettings.r_buffer must be >= 0, got {self.r_buffer}")
        for name in ("max_clusters", "epochs", "batch_size", "patience"):
            if getattr(self, name) < 1:
                raise ValueError(f"RetrainSettings.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("replay_energy_noise", "stress_noise"):
            value = getattr(self, name)
            if value is not None and not value > 0.0:
                raise ValueError(f"RetrainSettings.{name} must be > 0 or None, got {value}")
        if self.replay is not None and self.replay < 0.0:
            raise ValueError(f"RetrainSettings.replay must be >= 0 or None, got {self.replay}")

    def buffer_width(self, *, model_cutoff: float, oracle_cutoff: float | None) -> float:
        """``r_buffer`` in Å: as given, else ``2 max(model_cutoff, oracle_cutoff)``.

        Args:
            model_cutoff: the committee's cutoff, Å.
            oracle_cutoff: the oracle's cutoff, Å (:func:`~atomistic.mlip.oracles.oracle_cutoff`),
                or None when unknown (then the model's alone).
        """
        if self.r_buffer is not None:
            return float(self.r_buffer)
        return 2.0 * max(float(model_cutoff), float(oracle_cutoff or 0.0))

    def training_config(
        self, *, device: str = "cpu", dtype: str = "float64", base: TrainingConfig | None = None
    ) -> TrainingConfig:
        """The :class:`TrainingConfig` of the fine-tuning: ``base`` with these settings.

        Args:
            device: ``"cpu"`` or ``"cuda"``.
            dtype: ``"float64"`` or ``"float32"``.
            base: other training settings (default :class:`TrainingConfig`'s).
        """
        names = {f.name for f in fields(TrainingConfig)}
        ours = {f.name: getattr(self, f.name) for f in fields(self) if f.name in names}
        return replace(base or TrainingConfig(), **ours, device=device, dtype=dtype)


def uncertainty_action(uncertainty: ArrayLike, *, lo: float, hi: float) -> Action:
    """What the largest per-atom uncertainty asks for (thresholds in eV/Å).

    Returns:
        ``"accept"`` when no atom exceeds ``lo`` (or there are none), ``"rollback"`` when
        one exceeds ``hi``, else ``"label"`` (the atoms above ``lo`` are then the candidates
        of :func:`select_centres`).
    """
    u = np.asarray(uncertainty, dtype=np.float64)
    top = float(u.max()) if u.size else 0.0
    if top > hi:
        return "rollback"
    return "label" if top > lo else "accept"


def atom_uncertainty(
    committee: Committee,
    *,
    positions: ArrayLike,
    symbols: Sequence[str],
    cell: ArrayLike | None,
    pbc: bool | Sequence[bool],
    device: str | torch.device | None = None,
) -> np.ndarray:
    """Calibrated committee force spread per atom, ``u_i = c·s_i`` (eV/Å), at ``positions``.

    Args:
        committee: the committee (not changed; copied when another device is asked for).
        positions: ``(n, 3)`` positions, Å (the current, deformed ones).
        symbols: ``n`` chemical symbols.
        cell: ``(3, 3)`` cell, Å (rows are lattice vectors; ignored along open axes), or
            None for an open cluster.
        pbc: periodicity along each cell vector (a 2.5D slab: ``(False, False, True)``).
        device: where to evaluate; None: the committee's device.

    Returns:
        ``(n,)`` float64, eV/Å (:meth:`Committee.forces_uncertainty`).
    """
    ref = next(committee.parameters())
    target = ref.device if device is None else resolve_device(device)
    model = committee if target == ref.device else copy.deepcopy(committee).to(device=target)
    pos = torch.as_tensor(np.asarray(positions, dtype=np.float64), dtype=ref.dtype, device=target)
    box = np.zeros((3, 3)) if cell is None else np.asarray(cell, dtype=np.float64)
    species = species_indices(list(symbols), committee.elements, source="committee")
    graph = build_graph(
        positions=pos,
        cell=torch.as_tensor(box, dtype=ref.dtype, device=target),
        species=species.to(target),
        neighbours=NeighbourList(cutoff=committee.cutoff),
        pbc=pbc,
    )
    return model.forces_uncertainty(graph).cpu().numpy().astype(np.float64)


def _distances_from(
    point: np.ndarray, positions: np.ndarray, cell: np.ndarray | None, pbc: np.ndarray
) -> np.ndarray:
    """``|x_j − point|`` ``(n,)``, minimum image along the periodic axes."""
    if not pbc.any() or cell is None:
        return np.linalg.norm(positions - point, axis=1)
    _, d = get_distances(point[None], positions, cell=cell, pbc=pbc)
    return d[0]


def select_centres(
    uncertainty: ArrayLike,
    positions: ArrayLike,
    *,
    lo: float,
    min_separation: float,
    max_clusters: int,
    cell: ArrayLike | None = None,
    pbc: bool | Sequence[bool] = False,
) -> np.ndarray:
    """Cluster centres, greedily: the most uncertain atom, then the most uncertain far enough.

    An atom is a candidate when its uncertainty exceeds ``lo``; after each pick, every atom
    within ``min_separation`` of it stops being one. Ties go to the lower index.

    Args:
        uncertainty: ``(n,)`` calibrated spread, eV/Å (:func:`atom_uncertainty`).
        positions: ``(n, 3)`` positions, Å.
        lo: threshold, eV/Å.
        min_separation: least distance between centres, Å (minimum image along ``pbc``).
        max_clusters: most centres returned.
        cell: ``(3, 3)`` cell, Å, for the periodic axes (None: open).
        pbc: periodicity along each cell vector.

    Returns:
        ``(k,)`` int64 atom indices, ``k ≤ max_clusters``, most uncertain first.
    """
    u = np.asarray(uncertainty, dtype=np.float64)
    x = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
    if u.shape != (len(x),):
        raise ValueError(f"uncertainty must have shape ({len(x)},), got {u.shape}")
    periodic = np.broadcast_to(np.asarray(pbc, dtype=bool), (3,)).copy()
    box = None if cell is None else complete_cell(np.asarray(cell, dtype=np.float64))
    candidate = u > lo
    picks: list[int] = []
    while len(picks) < max_clusters and candidate.any():  # one pass per cluster
        k = int(np.argmax(np.where(candidate, u, -np.inf)))
        picks.append(k)
        candidate &= _distances_from(x[k], x, box, periodic) >= min_separation
    return np.asarray(picks, dtype=np.int64)


def carve_clusters(
    positions: ArrayLike,
    symbols: Sequence[str],
    cell: ArrayLike | None,
    pbc: bool | Sequence[bool],
    centres: Sequence[int] | np.ndarray,
    *,
    r_core: float,
    r_buffer: float,
) -> list[Atoms]:
    """Open spherical clusters of radius ``r_core + r_buffer`` around the atoms ``centres``.

    Each is :func:`~atomistic.mlip.configurations.defect_cluster` of the configuration
    (minimum image along the periodic axes, the configuration repeated where it is narrower
    than the sphere).

    Args:
        positions: ``(n, 3)`` positions, Å.
        symbols: ``n`` chemical symbols.
        cell: ``(3, 3)`` cell, Å (zero rows along open axes are completed), or None.
        pbc: periodicity along each cell vector.
        centres: atom indices (:func:`select_centres`).
        r_core: force-label radius, Å.
        r_buffer: unlabelled buffer, Å (:meth:`RetrainSettings.buffer_width`).

    Returns:
        One cluster per centre: ``pbc`` False, ``arrays['force_mask']`` True within
        ``r_core`` of the centre, ``arrays['parent_index']`` (each atom's index in the
        configuration), ``info['config_type']`` = :data:`CLUSTER_CONFIG_TYPE`,
        ``info['centre']`` (Å) and ``info['site']`` (the centre's index).
    """
    x = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
    periodic = np.broadcast_to(np.asarray(pbc, dtype=bool), (3,)).copy()
    box = np.zeros((3, 3)) if cell is None else np.asarray(cell, dtype=np.float64)
    if periodic.any():
        box = complete_cell(box)
    parent = Atoms(symbols=list(symbols), positions=x, cell=box, pbc=periodic)
    clusters = []
    for site in np.asarray(centres, dtype=np.int64).tolist():  # one per cluster
        cluster = defect_cluster(
            parent, x[site], r_core=r_core, r_buffer=r_buffer, config_type=CLUSTER_CONFIG_TYPE
        )
        cluster.info["site"] = int(site)
        clusters.append(cluster)
    return clusters


@dataclass(frozen=True, kw_only=True)
class LabelOutcome:
    """What :func:`label_frames` did.

    Attributes:
        frames: the labelled frames, in order (each already in ``dataset`` when one was
            given).
        oracle_calls: frames handed to the oracle, the failed one included.
        error: None, or one line naming the oracle, the frame and the failure.
        dataset: the file appended to, or None.
    """

    frames: tuple[Atoms, ...]
    oracle_calls: int
    error: str | None = None
    dataset: Path | None = None

    @property
    def ok(self) -> bool:
        """True when every frame was labelled."""
        return self.error is None


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def label_frames(
    frames: Sequence[Atoms],
    oracle: Calculator,
    *,
    oracle_name: str,
    dataset: str | Path | None,
) -> LabelOutcome:
    """Label frames one by one with ``oracle``, appending each to ``dataset`` at once.

    Each frame costs one oracle evaluation (:func:`~atomistic.mlip.dataset.label`: energy
    and forces, and stress for fully periodic cells); its ``force_mask`` and
    ``config_type`` are kept. An exception from the oracle stops the labelling: the
    frames labelled before it are returned (and are in ``dataset``) with ``error`` set;
    nothing is raised for it. A dataset that cannot be written does raise.

    Args:
        frames: unlabelled configurations (e.g. :func:`carve_clusters`).
        oracle: any ASE calculator.
        oracle_name: its name, stored in ``info['oracle']`` and used in ``error``.
        dataset: extended XYZ file appended to (created if absent), or None.

    Raises:
        DatasetError: ``dataset`` exists but is not a dataset.
        OSError: ``dataset`` cannot be written.
    """
    path = None if dataset is None else Path(dataset)
    done: list[Atoms] = []
    calls = 0
    for k, atoms in enumerate(frames):  # one oracle call per frame
        calls += 1
        try:
            frame = label(atoms, oracle, oracle=oracle_name)
        except Exception as err:  # any oracle failure; the labels made so far are kept
            where = f"frame {k} of {len(frames)} ({len(atoms)} atoms"
            if "site" in atoms.info:
                where += f", centred on atom {atoms.info['site']}"
            kept = f"{len(done)} labelled frame(s) kept" + (f" in {path}" if path else "")
            error = (
                f"oracle {oracle_name!r} failed on {where}): "
                f"{type(err).__name__}: {_one_line(str(err))}; {kept}"
            )
            return LabelOutcome(frames=tuple(done), oracle_calls=calls, error=error, dataset=path)
        if path is not None:
            append_dataset(path, [frame])
        for key in ("site", "centre"):
            if key in atoms.info:
                frame.info[key] = copy.copy(atoms.info[key])
        done.append(frame)
    return LabelOutcome(frames=tuple(done), oracle_calls=calls, dataset=path)


@dataclass(frozen=True, kw_only=True)
class MaskedErrors:
    """The committee mean against force labels, over the atoms whose label is used.

    Attributes:
        force_rmse: RMS of ``F̄ − F_label`` per Cartesian component, eV/Å.
        uncertainty: mean calibrated spread ``c·s_i`` over those atoms, eV/Å.
        n_atoms: how many atoms.
    """

    force_rmse: float
    uncertainty: float
    n_atoms: int


def masked_errors(committee: Committee, frames: Sequence[Atoms]) -> MaskedErrors:
    """Force error and uncertainty of ``committee`` on the masked atoms of labelled frames.

    Evaluated on the committee's device and dtype, in one batch.
    """
    ref = next(committee.parameters())
    batch = make_batch(
        frames,
        range(len(frames)),
        elements=committee.elements,
        cutoff=committee.cutoff,
        dtype=ref.dtype,
        device=ref.device,
    )
    m = evaluate_set(committee, [batch], config=TrainingConfig())
    if not m["n_force_atoms"]:
        raise ValueError("masked_errors: the frames have no atom with a force label")
    return MaskedErrors(
        force_rmse=float(m["force_rmse_eV_per_A"]),
        uncertainty=committee.calibration * float(m["spread"].mean()),
        n_atoms=int(m["n_force_atoms"]),
    )


@dataclass(kw_only=True)
class RetrainResult:
    """What :func:`retrain` returns.

    Attributes:
        committee: the fine-tuned, recalibrated committee (float64, CPU).
        calibration: its calibration factor ``c``.
        before: the old committee on the new frames' masked atoms.
        after: the new committee there (the new frames are training frames, so this is a
            training error, not a test error).
        n_new: new frames.
        n_replayed: old frames replayed.
        n_new_in_training: new frames in the training set (all, unless the split left
            fewer training slots than new frames).
        metrics: the fine-tuning's metrics (:func:`~atomistic.mlip.training.train`).
        history: the fine-tuning's per-epoch rows.
    """

    committee: Committee
    calibration: float
    before: MaskedErrors
    after: MaskedErrors
    n_new: int
    n_replayed: int
    n_new_in_training: int
    metrics: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)


def _arranged(
    new: Sequence[Atoms], old: Sequence[Atoms], config: TrainingConfig
) -> tuple[list[Atoms], int]:
    """``new`` and ``old`` in the order that puts the new frames on training slots first.

    :func:`~atomistic.mlip.training.train` splits its frames with
    :func:`~atomistic.mlip.batches.split_indices` and ``config.seed``; the slots of that
    split are filled train first, then validation, then test, new frames before old ones.
    Returns the frames and how many new frames are on training slots.
    """
    n = len(new) + len(old)
    train_ids, val_ids, test_ids = split_indices(n, config.split, seed=config.seed)
    slots = [*train_ids, *val_ids, *test_ids]
    ordered: list[Atoms | None] = [None] * n
    for frame, slot in zip([*new, *old], slots, strict=True):
        ordered[slot] = frame
    return [f for f in ordered if f is not None], min(len(new), len(train_ids))


def _weighted(frame: Atoms, weight: float) -> Atoms:
    """A copy of ``frame`` whose energy term weighs ``weight`` times its own."""
    out = frame.copy()
    out.info["energy_weight"] = weight * float(frame.info.get("energy_weight", 1.0))
    return out


def retrain(
    committee: Committee,
    new_frames: Sequence[Atoms],
    *,
    old_frames: Sequence[Atoms] = (),
    config: TrainingConfig,
    replay: float | None,
    replay_energy_noise: float | None = None,
) -> RetrainResult:
    """Fine-tune every member on new labels with a replay of old ones, then recalibrate.

    The replayed frames are drawn from ``old_frames`` without replacement
    (``round(replay · len(new_frames))`` of them, seeded by ``config.seed``; None: all).
    The new frames are put on training slots of the fine-tuning's split first, so their
    labels are all trained on; validation (early stopping, calibration) and test come from
    the replayed frames when there are enough of them. The warm start keeps the
    normalisation (:func:`~atomistic.mlip.training.fine_tune`); the calibration is refitted
    on the validation frames (the training frames when there are none).

    Args:
        committee: the committee to start from (not changed).
        new_frames: labelled frames (:func:`label_frames`); only masked forces are used.
        old_frames: the frames trained on before.
        config: fine-tuning settings (:meth:`RetrainSettings.training_config`).
        replay: old frames per new frame; None: all.
        replay_energy_noise: ``σ_E`` of the replayed frames, eV/atom (their energy terms are
            weighted by ``(config.energy_noise / replay_energy_noise)²``, on copies); None:
            ``config.energy_noise`` like the new frames.

    Raises:
        ValueError: no new frames.
    """
    if not isinstance(committee, Committee):
        raise TypeError(f"retrain needs a Committee, got {type(committee).__name__}")
    if not new_frames:
        raise ValueError("retrain needs at least one new labelled frame")
    old = list(old_frames)
    if replay is not None and old:
        n_old = min(len(old), round(replay * len(new_frames)))
        pick = np.random.default_rng([config.seed, 2]).choice(len(old), n_old, replace=False)
        old = [old[k] for k in sorted(pick.tolist())]
    if replay_energy_noise is not None:
        if not replay_energy_noise > 0.0:
            raise ValueError(f"replay_energy_noise must be > 0, got {replay_energy_noise}")
        weight = (config.energy_noise / replay_energy_noise) ** 2
        old = [_weighted(frame, weight) for frame in old]
    frames, n_in_training = _arranged(new_frames, old, config)
    before = masked_errors(committee, new_frames)
    result = fine_tune(committee, frames, (), replay=None, config=config)
    tuned = result.potential
    assert isinstance(tuned, Committee)  # train returns the kind it was given
    return RetrainResult(
        committee=tuned,
        calibration=tuned.calibration,
        before=before,
        after=masked_errors(tuned, new_frames),
        n_new=len(new_frames),
        n_replayed=len(old),
        n_new_in_training=n_in_training,
        metrics=result.metrics,
        history=result.history,
    )
