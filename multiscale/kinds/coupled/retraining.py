"""The adaptive loop's ``retrain`` action: label clusters where the committee is unsure, fine-tune.

One round, when the loop marks atoms where ``eta_ml`` dominates
(:meth:`Retrainer.act`, the steps of :mod:`atomistic.mlip.active`):

1. **roll back or accept**: the largest calibrated force spread ``u`` of the free atoms
   decides (:func:`~atomistic.mlip.active.uncertainty_action`). ``max u <= hi``: the
   current committee is *accepted* and the round fine-tunes it. ``max u > hi``: the current
   committee is not trusted, and when it is the product of an earlier round (not yet
   accepted) the round fine-tunes the last accepted committee instead (the case's own
   committee until a retrained one has been accepted), on every label made so far. Only the
   committee rolls back: the solved state is kept, and the clusters of this round are cut
   from it (the oracle's labels are right for any configuration).
2. **centres**: the free atoms with ``u > lo``, most uncertain first, ``2 cluster_radius``
   apart, at most ``max_clusters`` and at most the oracle calls left under
   ``max_oracle_calls`` (:func:`~atomistic.mlip.active.select_centres`); fewer calls than
   centres is reported as the budget reached (``record.reached``, a note).
3. **clusters**: open spheres of the free and pad atoms at the solution, force labels
   within ``cluster_radius`` of the centre and an unlabelled buffer of ``cluster_buffer``
   (``"auto"``: twice the larger of the committee's and the oracle's cutoffs, so that the
   labelled forces are the ones of the configuration they were cut from). With
   ``label_predictor`` each centre also gets a cluster cut from the homogeneous predictor
   (the unrelaxed state the relaxation energy is measured from), once per centre position:
   the relaxation energy integrates the forces along the whole path, not at its end alone.
4. **labels**: one oracle call per cluster, each frame appended at once to
   ``<output>/adaptive/dataset.extxyz`` (atomic; earlier labels stay). An oracle that fails
   stops the labelling; the labels made are kept and used, the failure becomes a note (and a
   log line), the run goes on.
5. **fine-tune**: every member, warm start, on all the labels of the run with a replay of
   ``replay`` old frames per label, then recalibrated (:func:`~atomistic.mlip.active.retrain`);
   the loss weighs the labels' energies with ``energy_noise`` and the replayed frames' with
   ``replay_energy_noise`` (tighter keeps the bulk energy of the committee).
   The old frames are the committee file's training data (``metadata["data_files"]``, tried
   against the working folder and each folder above the committee file); when none is found
   only this run's labels are trained on, and a note says so.
6. **check**: a committee whose Cauchy–Born law is not strongly elliptic at ``F = I`` or at
   the load (the acoustic tensor not positive definite in some direction) would let the
   continuum collapse; it is not used (a note), and its labels wait for the next round.
7. **reload**: the new committee is written to ``<output>/adaptive/committee_KK.pt`` (``KK``:
   the iteration) and becomes the setup's potential, for the atoms and the Cauchy–Born law of
   the continuum alike (:class:`~multiscale.kinds.coupled.setup.PotentialSetup`).

The oracle is named as the dataset tools name it: ``"lammps:<file>"`` (an ``eam/alloy``
file, ``eam/fs`` for ``*.eam.fs``) or ``"emt"``. Collective: rank 0 labels and fine-tunes,
the committee is broadcast.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from multiscale.config.adaptivity import AdaptivitySection
from multiscale.kinds.coupled.setup import CoupledSetup
from multiscale.progress import Reporter

__all__ = ["DATASET", "Retrainer", "oracle_spec", "restored_setup"]

#: The labels of a run, under ``<output>/adaptive``.
DATASET = "dataset.extxyz"


def oracle_spec(name: str) -> dict[str, Any]:
    """The :func:`~atomistic.mlip.oracles.make_oracle` spec of ``adaptivity.oracle``.

    Raises:
        ValueError: neither ``"emt"`` nor ``"lammps:<file>"``.
    """
    if name == "emt":
        return {"kind": "emt"}
    kind, _, file = name.partition(":")
    if kind != "lammps" or not file:
        raise ValueError(f'oracle {name!r}: expected "emt" or "lammps:<potential file>"')
    style = "eam/fs" if file.endswith(".eam.fs") else "eam/alloy"
    return {"kind": "lammps", "pair_style": style, "file": file}


def _training_frames(module: Any) -> tuple[list[Any], list[str]]:
    """The frames the committee was trained on (from its metadata), and the files read."""
    from atomistic.mlip.dataset import read_dataset

    meta = getattr(module, "metadata", None) or {}
    source = getattr(module, "source", None)
    bases = [Path.cwd()]
    if source is not None:
        bases += list(Path(source).resolve().parents)
    frames: list[Any] = []
    read: list[str] = []
    for name in meta.get("data_files", []) or []:
        path = next((b / name for b in bases if (b / name).is_file()), None)
        if path is not None:
            frames += read_dataset(path)
            read.append(str(path))
    return frames, read


@dataclass(kw_only=True)
class _Round:
    """What rank 0 did in one round (broadcast to the others)."""

    committee: Any = None
    calls: int = 0
    notes: list[str] = field(default_factory=list)
    #: the budget message when ``max_oracle_calls`` left centres unlabelled, else ""
    reached: str = ""
    #: why a fine-tuned committee was not taken, else ""
    rejected: str = ""
    log: str = ""


@dataclass(kw_only=True)
class Retrainer:
    """The retrain action's state across the loop's iterations (module docstring).

    Attributes:
        settings: the case's ``[adaptivity]``.
        out: the output folder (labels and committees go to ``out/adaptive``), or None.
        reporter: log lines.
        comm: the run's communicator.
        accepted: the last accepted committee (the case's own at the start).
        current_accepted: whether the setup's committee is ``accepted``.
        labels: every frame labelled in the run, in order.
        rounds: fine-tunings done.
    """

    settings: AdaptivitySection
    out: Path | None
    reporter: Reporter
    comm: Any
    accepted: Any = None
    current_accepted: bool = True
    labels: list[Any] = field(default_factory=list)
    rounds: int = 0
    #: the accepted committee's name (a file under ``out/adaptive``, or the case's)
    accepted_name: str = "the case's committee"
    #: the iteration of the last retrain round
    last: int = -1
    #: why the last round's fine-tuned committee was not taken, else ""
    rejected: str = ""
    _oracle: Any = None
    _old: list[Any] | None = None
    _files: list[str] = field(default_factory=list)
    _predictor_done: set[tuple[float, ...]] = field(default_factory=set)

    @property
    def dataset(self) -> Path | None:
        """``out/adaptive/dataset.extxyz``, or None without an output folder."""
        return None if self.out is None else self.out / "adaptive" / DATASET

    def state(self) -> dict[str, Any]:
        """What a restart needs to go on with the rounds (JSON; the labels are in the dataset)."""
        return {
            "rounds": self.rounds,
            "last": self.last,
            "current_accepted": self.current_accepted,
            "accepted_name": self.accepted_name,
        }

    def restore(self, state: dict[str, Any], case_module: Any) -> None:
        """Go on from :meth:`state` (collective): the labels are read back from the dataset.

        Args:
            state: :meth:`state` of the checkpoint.
            case_module: the case's own committee (the accepted one until a round's is).
        """
        self.rounds = int(state["rounds"])
        self.last = int(state["last"])
        self.current_accepted = bool(state["current_accepted"])
        self.accepted_name = str(state["accepted_name"])
        self.accepted = case_module
        if self.accepted_name.startswith("committee_") and self.out is not None:
            from atomistic.mlip.serialization import load_network

            self.accepted = load_network(self.out / "adaptive" / self.accepted_name)
        if self.comm.rank == 0 and self.dataset is not None and self.dataset.is_file():
            from atomistic.mlip.dataset import read_dataset

            self.labels = list(read_dataset(self.dataset))

    def act(
        self,
        setup: CoupledSetup,
        *,
        run: Any,
        spread: np.ndarray,
        record: Any,
        k: int,
        skipped: list[tuple[str, str]],
    ) -> CoupledSetup | None:
        """One retrain round at iteration ``k`` (collective); the new setup, or None.

        Args:
            setup: the setup to give the new committee (the loop's, after its other actions).
            run: the solved run (its atoms are cut into clusters).
            spread: ``(n_free,)`` calibrated force spread of the free atoms, eV/Å.
            record: the loop's :class:`~multiscale.kinds.coupled.adaptive.AdaptiveRecord`
                (``oracle_calls`` and ``notes`` are updated).
            k: the iteration (names ``committee_KK.pt``).
            skipped: the plan's ``(budget, message)`` list: ``max_oracle_calls`` is added
                when the budget leaves centres unlabelled.
        """
        from multiscale.kinds.coupled.outputs import coupled_atoms

        if self.accepted is None:
            self.accepted = run.setup.potential.module
        atoms = coupled_atoms(run)  # collective
        if self.settings.label_predictor and run.system.predictor is not None:
            u0 = run.system.atom_displacements(run.system.predictor)  # collective
            atoms.set_array("predictor_position", atoms.arrays["reference_position"] + u0)
        done = None
        if self.comm.rank == 0:
            done = self._round(run.setup, atoms, np.asarray(spread, dtype=float), record, k)
        done = self.comm.bcast(done, root=0)
        assert isinstance(done, _Round)
        record.oracle_calls += done.calls
        record.notes.extend(n for n in done.notes if n not in record.notes)
        if done.reached:
            skipped.append(("max_oracle_calls", done.reached))
        if done.log:
            self.reporter.info(done.log)
        self.rejected = done.rejected
        if done.committee is None:
            return None
        self.rounds += 1
        self.last = k
        self.current_accepted = False
        return _with_potential(setup, done.committee)

    def _base(self, module: Any, top: float, done: _Round) -> Any:
        """The committee to fine-tune: the current one, or the last accepted (rollback)."""
        if top <= self.settings.hi:
            if not self.current_accepted:
                self.accepted_name = f"committee_{self.last:02d}.pt"
            self.accepted, self.current_accepted = module, True
            return module
        if self.current_accepted:
            return module
        done.notes.append(
            f"retrain: max force spread {top:.3g} eV/Å > adaptivity.hi = {self.settings.hi:g} "
            f"with the committee of the last retrain round; rolled back to the last accepted "
            f"committee ({self.accepted_name}) and fine-tuned it on every label of the run"
        )
        return self.accepted

    def _round(
        self, setup: CoupledSetup, atoms: Any, spread: np.ndarray, record: Any, k: int
    ) -> _Round:
        """Rank 0: centres, clusters, labels, fine-tuning (module docstring)."""
        done = _Round()
        s = self.settings
        top = float(spread.max()) if spread.size else 0.0
        base = self._base(setup.potential.module, top, done)
        centres = self._centres(atoms, spread, done, record.oracle_calls)
        n_labels = len(self.labels)
        if len(centres):
            self._label(atoms, centres, base, done)
        elif not done.reached:
            done.log = f"retrain: no free atom's force spread above lo (max {top:.3g} eV/Å)"
        if len(self.labels) == n_labels:  # nothing new to learn from
            return done
        old = self._replay(base, done)
        tuned = self._fine_tune(base, old, done, k, top)
        unstable = _unstable_at(tuned, setup)
        if unstable is not None:
            done.notes.append(
                f"retrain: iteration {k}: the fine-tuned committee's Cauchy–Born law is not "
                f"strongly elliptic at F = {unstable} (the continuum would be unstable); the "
                "committee was not changed, its labels are kept in the dataset"
            )
            done.rejected = "Cauchy–Born law not strongly elliptic"
            done.log += f"; rejected: {done.rejected}"
            return done
        done.committee = tuned
        if self.out is None:
            return done
        from atomistic.mlip.serialization import save_potential

        path = self.out / "adaptive" / f"committee_{k:02d}.pt"
        meta = {"data_files": [*self._files, str(self.dataset)], "oracle": s.oracle}
        save_potential(done.committee, path, metadata={"fine_tuned_in": f"iteration {k}", **meta})
        done.log += f"; wrote {path.name}"
        return done

    def _centres(self, atoms: Any, spread: np.ndarray, done: _Round, calls: int) -> np.ndarray:
        """Cluster centres among the free atoms, as many as the oracle budget allows."""
        from atomistic.mlip.active import select_centres

        s = self.settings
        n_free = len(spread)
        limit = None if s.max_oracle_calls == "none" else int(s.max_oracle_calls)
        left = s.max_clusters if limit is None else max(0, limit - calls)
        if s.label_predictor and limit is not None:  # up to two calls per centre
            left //= 2
        centres = select_centres(
            spread,
            atoms.positions[:n_free],
            lo=s.lo,
            min_separation=2.0 * s.cluster_radius,
            max_clusters=s.max_clusters,
            cell=atoms.cell.array,
            pbc=atoms.pbc,
        )
        if len(centres) > left:
            done.reached = (
                f"retrain: budget max_oracle_calls = {limit} reached: {len(centres) - left} "
                f"cluster(s) with force spread above lo = {s.lo:g} eV/Å left unlabelled"
            )
            centres = centres[:left]
        return centres

    def _label(self, atoms: Any, centres: np.ndarray, base: Any, done: _Round) -> None:
        from atomistic.mlip.active import carve_clusters, label_frames
        from atomistic.mlip.oracles import make_oracle, oracle_cutoff
        from atomistic.mlip.validation import oracle_name

        s = self.settings
        if self._oracle is None:
            self._oracle = make_oracle(oracle_spec(s.oracle))
        oracle = self._oracle
        if s.cluster_buffer == "auto":
            buffer = 2.0 * max(float(base.cutoff), float(oracle_cutoff(oracle) or 0.0))
        else:
            buffer = float(s.cluster_buffer)
        clusters = carve_clusters(
            atoms.positions,
            atoms.get_chemical_symbols(),
            atoms.cell.array,
            atoms.pbc,
            centres,
            r_core=s.cluster_radius,
            r_buffer=buffer,
        )
        if "predictor_position" in atoms.arrays:
            clusters += self._predictor_clusters(atoms, centres, s.cluster_radius, buffer)
        outcome = label_frames(
            clusters, oracle, oracle_name=oracle_name(oracle), dataset=self.dataset
        )
        done.calls = outcome.oracle_calls
        self.labels += list(outcome.frames)
        done.log = (
            f"retrain: {len(outcome.frames)} of {len(clusters)} cluster(s) labelled by "
            f"{s.oracle} ({[len(c) for c in clusters]} atoms)"
        )
        if outcome.error is not None:
            done.notes.append(f"retrain: {outcome.error}")
            done.log += f"; {outcome.error}"

    def _predictor_clusters(
        self, atoms: Any, centres: np.ndarray, r_core: float, r_buffer: float
    ) -> list[Any]:
        """Clusters cut around ``centres`` from the homogeneous predictor (``label_predictor``).

        The predictor is the unrelaxed state the relaxation starts from; a centre whose
        predictor position was labelled in an earlier round is not labelled again.
        """
        from atomistic.mlip.active import carve_clusters

        x0 = atoms.arrays["predictor_position"]
        keep = []
        for c in np.asarray(centres, dtype=np.int64).tolist():  # a few centres
            key = tuple(np.round(x0[c], 3).tolist())
            if key not in self._predictor_done:
                self._predictor_done.add(key)
                keep.append(c)
        if not keep:
            return []
        return carve_clusters(
            x0,
            atoms.get_chemical_symbols(),
            atoms.cell.array,
            atoms.pbc,
            keep,
            r_core=r_core,
            r_buffer=r_buffer,
        )

    def _replay(self, base: Any, done: _Round) -> list[Any]:
        if self._old is None:
            self._old, self._files = _training_frames(base)
            if not self._old:
                done.notes.append(
                    "retrain: the committee's training data (metadata data_files) was not "
                    "found; fine-tuning replays no old frames"
                )
        return self._old

    def _fine_tune(self, base: Any, old: list[Any], done: _Round, k: int, top: float) -> Any:
        from atomistic.mlip.active import RetrainSettings, retrain

        s = self.settings
        config = RetrainSettings(
            lo=s.lo,
            hi=s.hi,
            epochs=s.epochs,
            learning_rate=s.learning_rate,
            energy_noise=s.energy_noise,
        ).training_config()
        replay_noise = None if s.replay_energy_noise == "auto" else float(s.replay_energy_noise)
        result = retrain(
            base,
            self.labels,
            old_frames=old,
            config=config,
            replay=s.replay,
            replay_energy_noise=replay_noise,
        )
        done.log += (
            f"; fine-tuned on {result.n_new} label(s) + {result.n_replayed} replayed: masked "
            f"force RMSE {result.before.force_rmse:.3f} -> {result.after.force_rmse:.3f} eV/Å, "
            f"spread {result.before.uncertainty:.3f} -> {result.after.uncertainty:.3f} eV/Å "
            f"(max spread of the state {top:.3f})"
        )
        return result.committee


def _unstable_at(committee: Any, setup: CoupledSetup, n_directions: int = 400) -> str | None:
    """``"I"`` or ``"F_load"`` where the committee's Cauchy–Born law loses strong ellipticity.

    Strong ellipticity: the acoustic tensor ``Q_ik(n) = A_ijkl n_j n_l`` is positive definite
    for every direction ``n`` (sampled: a Fibonacci sphere). A law without it (for a cubic
    crystal, ``C11 <= C12`` or ``C44 <= 0``) lets the continuum collapse. None: stable at both.
    """
    from atomistic.cauchy_born import CauchyBorn

    law = CauchyBorn(committee, setup.lattice.cell)
    k = np.arange(n_directions) + 0.5
    z = 1.0 - 2.0 * k / n_directions
    phi = np.pi * (1.0 + 5.0**0.5) * k
    rho = np.sqrt(1.0 - z**2)
    n = np.stack([rho * np.cos(phi), rho * np.sin(phi), z], axis=1)
    loaded = setup.loading.deformation(setup.loading.steps)
    for name, F in (("I", np.eye(3)), ("F_load", loaded)):
        _, _, A = law(np.asarray(F, dtype=np.float64)[None])
        Q = np.einsum("ijkl,mj,ml->mik", A[0], n, n)
        if np.linalg.eigvalsh(0.5 * (Q + Q.transpose(0, 2, 1))).min() <= 0.0:
            return name
    return None


def _with_potential(setup: CoupledSetup, committee: Any) -> CoupledSetup:
    """``setup`` with ``committee`` as the potential of the atoms and of the Cauchy–Born law."""
    from atomistic.cauchy_born import CauchyBorn

    pot = setup.potential
    module = committee.to(device=pot.device)
    law = CauchyBorn(module, setup.lattice.cell, device=pot.device)
    return dataclasses.replace(setup, potential=dataclasses.replace(pot, module=module, law=law))


def restored_setup(setup: CoupledSetup, state: dict[str, Any] | None, out: Path) -> CoupledSetup:
    """``setup`` with the committee a checkpoint's :meth:`Retrainer.state` was using.

    Unchanged before the first retrain round; after it, ``out/adaptive/committee_KK.pt`` of
    the last round (``KK``: its iteration) is the potential of atoms and continuum.
    """
    if not state or int(state["rounds"]) == 0:
        return setup
    from atomistic.mlip.serialization import load_network

    path = out / "adaptive" / f"committee_{int(state['last']):02d}.pt"
    return _with_potential(setup, load_network(path))
