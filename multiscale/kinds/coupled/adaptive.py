"""The adaptive loop of a coupled case (``[adaptivity]``): estimate, mark, act, solve again.

After the last load step (``adaptivity.load_steps = "last"``) or after every load step
(``"every"``: the loop runs at that step's load, then the next step starts from its state),
iteration ``k = 0, 1, …``:

1. estimate the error of the current solution (:func:`coupling.estimator.estimate`);
2. stop when ``eta_total <= adaptivity.tolerance`` or, at this load step,
   ``adaptivity.max_iterations`` iterations have acted;
3. Dörfler-mark cells and atoms (:func:`coupling.marking.mark`, ``adaptivity.theta``); the
   term that dominates at a mark picks the action: ``refine`` (``eta_fe``), ``expand``
   (``eta_model``), ``retrain`` (``eta_ml``); a mark where ``eta_trunc`` dominates asks for a
   larger domain, which the loop reports and does not do;
4. act: refine the marked cells (:func:`continuum.adapt.refine_cells`), grow the core by a
   ball of radius ``h_K + adaptivity.buffer`` around each cell marked for expansion
   (:meth:`coupling.handshake.Handshake.grow`) and cut the cells now inside it out of the
   mesh (:func:`continuum.adapt.remove_cells`), retrain the committee on oracle labels of
   clusters cut around its most uncertain atoms and reload it into the atoms and the
   Cauchy–Born law (:mod:`multiscale.kinds.coupled.retraining`); an action that would pass a
   budget (``max_atoms``, ``max_fe_dofs``, ``max_oracle_calls``) is not taken (in part, for
   the oracle calls) and the budget is reported;
5. build the changed system, carry the solved state into it
   (:meth:`coupling.system.CoupledSystem.restore`: atoms by site, the FE field by
   interpolation, new atoms from the field) and solve again at the same load.

``history.csv`` gets one row per iteration: the estimate of the state solved at that
iteration, the load step it was solved at, the action then taken (``+``-joined; ``stop`` on
the last row of each load step), the counts, the energy, the wall time since the loop first
ran, and, when ``<output>/reference`` holds a reference of the same problem (at the full
load, so on the last load step's rows only), ``strain_error_rel`` and
``effectivity = eta_total / strain_error_rel``. The iteration number runs on over the load
steps; the estimate's far field is the load step's (``F_k − I`` and, for a crack, its K
field).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from multiscale.config.adaptivity import AdaptivitySection
from multiscale.kinds.coupled.retraining import Retrainer
from multiscale.kinds.coupled.setup import CoupledSetup
from multiscale.kinds.coupled.solve import CoupledRun, StepRecord, step_name
from multiscale.progress import Reporter

__all__ = ["HISTORY_COLUMNS", "AdaptiveLoop", "AdaptiveRecord", "Iteration", "adapt"]

#: After an expansion, cells of the handshake and pad longer than this many ``h_min`` are
#: bisected (:func:`_refine_shell`), at most :data:`SHELL_PASSES` times.
SHELL_H_FACTOR = 1.5
SHELL_PASSES = 4

#: The columns of ``history.csv``, in order.
HISTORY_COLUMNS = (
    "iteration",
    "load_step",
    "eta_fe",
    "eta_model",
    "eta_ml",
    "eta_trunc",
    "eta_total",
    "action",
    "n_atoms",
    "n_fe_dofs",
    "n_dof",
    "oracle_calls",
    "energy_eV",
    "wall_time_s",
    "strain_error_rel",
    "effectivity",
)


@dataclass(kw_only=True)
class Iteration:
    """One row of ``history.csv`` (see the module docstring)."""

    iteration: int
    eta: dict[str, float]
    action: str
    n_atoms: int
    n_free_atoms: int
    #: the load step whose load the state was solved at (a fraction for half of a cut step)
    load_step: int | float = 0
    n_fe_dofs: int
    oracle_calls: int
    energy: float
    wall_time_s: float
    marks: dict[str, int] = field(default_factory=dict)
    strain_error_rel: float | None = None

    @property
    def n_dof(self) -> int:
        """Unknowns of the coupled problem: ``3 n_free + n_fe_dofs``."""
        return 3 * self.n_free_atoms + self.n_fe_dofs

    @property
    def effectivity(self) -> float | None:
        """``eta_total / strain_error_rel`` (None without a reference)."""
        if self.strain_error_rel is None or not self.strain_error_rel > 0:
            return None
        return self.eta["eta_total"] / self.strain_error_rel

    def row(self) -> dict[str, Any]:
        """The ``history.csv`` row."""
        return {
            "iteration": self.iteration,
            "load_step": self.load_step,
            **{k: self.eta[k] for k in ("eta_fe", "eta_model", "eta_ml", "eta_trunc")},
            "eta_total": self.eta["eta_total"],
            "action": self.action,
            "n_atoms": self.n_atoms,
            "n_fe_dofs": self.n_fe_dofs,
            "n_dof": self.n_dof,
            "oracle_calls": self.oracle_calls,
            "energy_eV": self.energy,
            "wall_time_s": self.wall_time_s,
            "strain_error_rel": "" if self.strain_error_rel is None else self.strain_error_rel,
            "effectivity": "" if self.effectivity is None else self.effectivity,
        }

    def state(self) -> dict[str, Any]:
        """Every field, JSON-ready (for the checkpoint; :meth:`from_state` reads it back)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> Iteration:
        """The iteration of :meth:`state`."""
        return cls(**data)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready record for ``summary.json``."""
        row = self.row()
        row.update({"marks": self.marks, "n_free_atoms": self.n_free_atoms})
        return {k: (None if v == "" else v) for k, v in row.items()}


@dataclass(kw_only=True)
class AdaptiveRecord:
    """What the loop did.

    Attributes:
        history: one :class:`Iteration` per solved state.
        stop: why the loop stopped (``tolerance``, ``budget: max_iterations``, …).
        budgets: per budget its limit, what was used and whether it was reached.
        notes: things the user must know (a truncation-dominated estimate, a skipped action).
    """

    history: list[Iteration] = field(default_factory=list)
    stop: str = ""
    budgets: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    oracle_calls: int = 0
    #: budgets that stopped an action
    reached: set[str] = field(default_factory=set)
    #: per load step the loop ran at: ``{"load_step", "iterations", "stop"}``
    load_steps: list[dict[str, Any]] = field(default_factory=list)

    def state(self, *, iteration: int, elapsed: float, load_step: float) -> dict[str, Any]:
        """What a restart at ``iteration`` of ``load_step`` needs (JSON-ready)."""
        return {
            "iteration": iteration,
            "load_step": load_step,
            "elapsed_s": elapsed,
            "history": [it.state() for it in self.history],
            "notes": list(self.notes),
            "oracle_calls": self.oracle_calls,
            "reached": sorted(self.reached),
            "load_steps": list(self.load_steps),
        }

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> AdaptiveRecord:
        """The record of :meth:`state`, before its iteration."""
        return cls(
            history=[Iteration.from_state(d) for d in data["history"]],
            notes=list(data["notes"]),
            oracle_calls=int(data["oracle_calls"]),
            reached=set(data["reached"]),
            load_steps=list(data.get("load_steps", [])),
        )

    @property
    def acted(self) -> int:
        """Iterations that acted: rows but the last of each load step the loop ran at."""
        return len(self.history) - len({it.load_step for it in self.history})

    def as_dict(self) -> dict[str, Any]:
        """``summary["adaptivity"]``."""
        last = self.history[-1] if self.history else None
        return {
            "stop": self.stop,
            "iterations": self.acted,
            "eta_total": None if last is None else last.eta["eta_total"],
            "budgets": self.budgets,
            "notes": self.notes,
            "oracle_calls": self.oracle_calls,
            "load_steps": self.load_steps,
            "history": [it.as_dict() for it in self.history],
        }


def history_csv(record: AdaptiveRecord) -> str:
    """The text of ``history.csv``."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(HISTORY_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for it in record.history:
        writer.writerow({k: _fmt(v) for k, v in it.row().items()})
    return buffer.getvalue()


def _fmt(value: Any) -> Any:
    return f"{value:.10g}" if isinstance(value, float) else value


def _material(setup: CoupledSetup, step: float | None = None) -> Any:
    """The estimator's view of the crystal, with the far field of load ``step`` (None: last)."""
    from coupling.estimator import Material

    cell = setup.lattice.cell
    loading = setup.loading
    strain = loading.factor(loading.steps if step is None else step) * loading.strain
    return Material(
        strain=strain,
        shear_modulus=setup.coupling.shear_modulus,
        r_cut=setup.potential.range,
        r_nn=setup.lattice.r_nn,
        volume_per_atom=float(cell.get_volume()) / len(cell),
        inradius=setup.domain.inradius,
        jump=None if setup.dislocation is None else setup.dislocation.jump,
    )


def _stresses(setup: CoupledSetup, system: Any) -> Any:
    """The atoms' first Piola site stresses as a function of their displacements."""
    from atomistic.stress import site_stresses

    cell = setup.lattice.cell
    omega = float(cell.get_volume()) / len(cell)

    def stresses(u: np.ndarray) -> np.ndarray:
        return site_stresses(
            setup.potential.module,
            reference_positions=system.positions,
            displacements=u,
            symbols=system.symbols,
            cell=system.atoms.cell,
            pbc=system.atoms.pbc,
            volume_per_atom=omega,
            device=setup.potential.device,
        )

    return stresses


def _spread(setup: CoupledSetup, system: Any) -> Any:
    """The committee's calibrated force spread of the free atoms, or None (no committee)."""
    from atomistic.mlip.committee import Committee

    module = setup.potential.module
    if not isinstance(module, Committee):
        return None
    from atomistic.mlip.active import atom_uncertainty

    def spread(u: np.ndarray) -> np.ndarray:
        sigma = atom_uncertainty(
            module,
            positions=system.positions + u,
            symbols=system.symbols,
            cell=system.atoms.cell,
            pbc=system.atoms.pbc,
            device=setup.potential.device,
        )
        return np.asarray(sigma)[: system.n_free]

    return spread


def _estimate(setup: CoupledSetup, system: Any, step: float | None = None) -> Any:
    from coupling.estimator import estimate

    return estimate(
        system,
        material=_material(setup, step),
        stresses=_stresses(setup, system),
        spread=_spread(setup, system),
    )


def _budget(value: int | str) -> int | None:
    return None if value == "none" else int(value)


@dataclass(kw_only=True)
class _Plan:
    """The actions chosen at one iteration, before they are applied."""

    refine: np.ndarray
    grow: tuple[np.ndarray, np.ndarray] | None
    retrain: np.ndarray
    #: ``(budget, message)`` of each action not taken
    skipped: list[tuple[str, str]] = field(default_factory=list)


def _expansion(est: Any, cells: np.ndarray, *, buffer: float, comm: Any) -> Any:
    """Centres ``(m, 3)`` and radii ``(m,)`` of the balls that grow the core (every rank)."""
    centres = np.vstack(comm.allgather(est.cells.centroid[cells].reshape(-1, 3)))
    radii = np.concatenate(comm.allgather(est.cells.h[cells] + buffer))
    return (centres, radii) if len(radii) else None


def _grown(setup: CoupledSetup, balls: tuple[np.ndarray, np.ndarray]) -> CoupledSetup:
    """The setup with the core grown by ``balls`` (one ball radius per call of ``grow``)."""
    handshake = setup.handshake
    centres, radii = balls
    rounded = np.round(radii, 3)
    for r in np.unique(rounded):
        handshake = handshake.grow(centers=centres[rounded == r], radius=float(r))
    return dataclasses.replace(setup, handshake=handshake)


def _count_free(setup: CoupledSetup) -> int:
    from atomistic.regions import REGION_CORE, REGION_HANDSHAKE
    from multiscale.kinds.coupled.sites import coupled_sites

    atoms, _ = coupled_sites(setup)
    codes = setup.handshake.classify(atoms.positions)
    return int(np.sum((codes == REGION_CORE) | (codes == REGION_HANDSHAKE)))


def _cut_core(setup: CoupledSetup, mesh_data: Any) -> Any:
    """The mesh without the cells the grown core removes (collective).

    :func:`coupling.core_cells.core_cells`: the continuum weight below its floor at every
    quadrature point and no pad site inside.
    """
    from continuum.adapt import remove_cells
    from coupling.core_cells import core_cells
    from multiscale.kinds.coupled.sites import coupled_sites

    sites, _ = coupled_sites(setup)
    remove = core_cells(mesh=mesh_data.mesh, handshake=setup.handshake, sites=sites.positions)
    if not mesh_data.mesh.comm.allreduce(int(remove.sum())):
        return mesh_data
    new, _ = remove_cells(mesh_data, remove=np.flatnonzero(remove).astype(np.int32))
    return new


def _refine_shell(
    setup: CoupledSetup, mesh_data: Any, settings: AdaptivitySection, plan: _Plan
) -> Any:
    """The mesh with the grown core's handshake and pad at the case's ``h_min`` (collective).

    The case's graded mesh has elements of ``h_min`` up to the atoms; a core grown into
    coarser elements would leave its handshake and pad atoms on a field too coarse to follow
    them. Cells with a vertex within ``w + p`` of the core (signed depth) and longer than
    :data:`SHELL_H_FACTOR` ``h_min`` are bisected, up to :data:`SHELL_PASSES` times, and the
    children inside the core cut again. A refinement that would pass ``max_fe_dofs`` is not
    done, and the budget is reported.
    """
    from continuum.adapt import refine_cells

    handshake, comm = setup.handshake, mesh_data.mesh.comm
    reach = handshake.width + handshake.pad_width
    limit = _budget(settings.max_fe_dofs)
    for _ in range(SHELL_PASSES):
        mesh = mesh_data.mesh
        tdim = mesh.topology.dim
        n = mesh.topology.index_map(tdim).size_local
        cells = np.arange(n, dtype=np.int32)
        h = mesh.h(tdim, cells)
        depth = handshake.depth(mesh.geometry.x)[mesh.geometry.dofmaps[0][:n]].min(axis=1)
        marked = cells[(depth <= reach) & (h > SHELL_H_FACTOR * setup.mesh.h_min)]
        if not comm.allreduce(len(marked)):
            break
        refined, _ = refine_cells(mesh_data, cells=marked)
        if limit is not None and _mesh_dofs(refined) > limit:
            plan.skipped.append(
                (
                    "max_fe_dofs",
                    f"expand: the shell at h_min needs {_mesh_dofs(refined)} FE dofs > {limit}",
                )
            )
            break
        mesh_data = _cut_core(setup, refined)
    return mesh_data


def _mesh_dofs(mesh_data: Any) -> int:
    return 3 * int(mesh_data.mesh.topology.index_map(0).size_global)


def _within_domain(setup: CoupledSetup, plan: _Plan) -> tuple[np.ndarray, np.ndarray] | None:
    """The growth balls whose atoms stay an element ``h_max`` inside the outer boundary.

    The others are dropped and reported (``domain``): the atoms would reach the boundary,
    where the continuum must hold the far field.
    """
    assert plan.grow is not None
    centres, radii = plan.grow
    hs = setup.handshake
    k = 2 if hs.shape == "cylinder" else 3
    origin = np.asarray(hs.center, dtype=np.float64)[:k]
    n_balls = hs.n_balls + len(radii)
    margin = hs.width + hs.pad_width + hs.softness * np.log(n_balls) + setup.mesh.h_max
    reach = np.linalg.norm(centres[:, :k] - origin, axis=1) + radii + margin
    keep = reach <= setup.domain.inradius
    if not keep.all():
        plan.skipped.append(
            (
                "domain",
                f"expand: {int((~keep).sum())} of {len(keep)} growth balls left out: their "
                f"atoms would come within h_max of the outer boundary at "
                f"{setup.domain.inradius:.1f} Å (enlarge the domain)",
            )
        )
    return (centres[keep], radii[keep]) if keep.any() else None


def _apply(
    setup: CoupledSetup,
    run: CoupledRun,
    plan: _Plan,
    settings: AdaptivitySection,
    retrain: Callable[..., CoupledSetup | None] | None = None,
) -> tuple[CoupledSetup, Any, list[str]]:
    """The setup and mesh after ``plan``'s refinement, growth and retraining, and what was done.

    ``retrain``: :meth:`~multiscale.kinds.coupled.retraining.Retrainer.act` bound to this
    iteration, called when atoms are marked for it.
    """
    from continuum.adapt import refine_cells

    comm = run.system.comm
    done: list[str] = []
    mesh_data = run.system.problem.mesh_data
    if comm.allreduce(len(plan.refine)):
        refined, _ = refine_cells(mesh_data, cells=plan.refine)
        limit = _budget(settings.max_fe_dofs)
        if limit is not None and _mesh_dofs(refined) > limit:
            plan.skipped.append(
                ("max_fe_dofs", f"refine: would need {_mesh_dofs(refined)} FE dofs > {limit}")
            )
        else:
            mesh_data = refined
            done.append("refine")
    balls = _within_domain(setup, plan) if plan.grow is not None else None
    if balls is not None:
        grown = _grown(setup, balls)
        n_free = _count_free(grown)
        limit = _budget(settings.max_atoms)
        if limit is not None and n_free > limit:
            plan.skipped.append(("max_atoms", f"expand: would need {n_free} free atoms > {limit}"))
        else:
            setup = grown
            mesh_data = _cut_core(setup, mesh_data)
            mesh_data = _refine_shell(setup, mesh_data, settings, plan)
            done.append("expand")
    if retrain is not None and comm.allreduce(len(plan.retrain)):
        retrained = retrain(setup, skipped=plan.skipped)
        if retrained is not None:
            setup = retrained
            done.append("retrain")
    return setup, mesh_data, done


def _plan(
    est: Any, setup: CoupledSetup, settings: AdaptivitySection, *, comm: Any, record: Any
) -> tuple[_Plan, dict[str, int]]:
    """Mark and sort the marks into actions."""
    from coupling.marking import mark

    allowed = tuple(settings.actions)
    if settings.oracle == "none" or est.spread is None:
        allowed = tuple(a for a in allowed if a != "retrain")
    marks = mark(
        est,
        theta=settings.theta,
        comm=comm,
        allowed=allowed,
        resolved=2.0 * setup.potential.range,
    )
    counts = marks.counts(comm)
    if est.totals["eta_trunc"] > settings.tolerance:
        note = (
            f"eta_trunc = {est.totals['eta_trunc']:.3g} > adaptivity.tolerance: against the "
            "infinite crystal the domain is too small for this accuracy (enlarge "
            "geometry.size or geometry.radius); it is not counted in eta_total, which "
            "estimates the error of the problem on this domain, and the loop does not act on it"
        )
        if note not in record.notes:
            record.notes.append(note)
    buffer = setup.lattice.r_nn if settings.buffer == "auto" else float(settings.buffer)
    plan = _Plan(
        refine=marks.refine,
        grow=_expansion(est, marks.expand, buffer=buffer, comm=comm),
        retrain=marks.retrain,
    )
    return plan, counts


def _reference_error(run: CoupledRun, reference: Any) -> float | None:
    """The true strain error against the reference (at the full load), else None."""
    if reference is None or run.last.step != run.setup.loading.steps:
        return None
    from multiscale.kinds.coupled.compare import reference_error

    err = reference_error(run, *reference, path="reference")
    value = err.get("strain_error_rel")
    return None if value is None else float(value)


def _row(
    k: int, run: CoupledRun, est: Any, record: AdaptiveRecord, reference: Any, start: float
) -> Iteration:
    system = run.system
    return Iteration(
        iteration=k,
        load_step=run.last.step,
        eta=dict(est.totals),
        action="",
        n_atoms=len(system.positions),
        n_free_atoms=int(system.n_free),
        n_fe_dofs=int(system.problem.n_dofs),
        oracle_calls=record.oracle_calls,
        energy=float(run.last.energy),
        wall_time_s=time.perf_counter() - start,
        strain_error_rel=_reference_error(run, reference),
    )


def _report(reporter: Reporter, it: Iteration, steps: int) -> None:
    eta = it.eta
    true = (
        ""
        if it.strain_error_rel is None
        else (f"; true {it.strain_error_rel:.3e}, effectivity {it.effectivity:.2f}")
    )
    at = "" if steps == 1 else f" (load step {step_name(it.load_step)}/{steps})"
    reporter.info(
        f"adaptive iteration {it.iteration}{at}: eta_total {eta['eta_total']:.3e} (fe "
        f"{eta['eta_fe']:.2e}, model {eta['eta_model']:.2e}, ml {eta['eta_ml']:.2e}, trunc "
        f"{eta['eta_trunc']:.2e}){true}; {it.n_free_atoms} free atoms, {it.n_fe_dofs} FE dofs"
    )


def _resolve(
    setup: CoupledSetup, run: CoupledRun, mesh_data: Any, reporter: Reporter, k: int
) -> StepRecord:
    """Build the changed system, carry the state into it and solve again at its load step."""
    from multiscale.kinds.coupled.solve import build_system, solve_step

    step = run.last.step
    state = run.system.snapshot()
    system = build_system(setup, comm=run.system.comm, mesh_data=mesh_data, step=step)
    system.restore(state)
    run.system, run.setup = system, setup
    record = solve_step(setup, system, step, reporter, advance=False, label=f"adaptive {k}")
    run.steps[-1] = record
    run.measure_energy_parts()
    return record


def _budgets(record: AdaptiveRecord, settings: AdaptivitySection) -> None:
    last = record.history[-1]
    used = {
        "max_iterations": max(r["iterations"] for r in record.load_steps),
        "max_atoms": last.n_free_atoms,
        "max_fe_dofs": last.n_fe_dofs,
        "max_oracle_calls": record.oracle_calls,
    }
    stops = {r["stop"] for r in record.load_steps}
    for name, value in used.items():
        limit = _budget(getattr(settings, name))
        record.budgets[name] = {
            "limit": limit,
            "used": value,
            "reached": bool(name in record.reached or f"budget: {name}" in stops),
        }


class AdaptiveLoop:
    """The adaptive loop of one run, called at each load step it runs at (collective).

    One :class:`AdaptiveRecord` and one :class:`~multiscale.kinds.coupled.retraining.Retrainer`
    serve every call, so the history, the budgets and the retrained committee go on from one
    load step to the next.

    Args:
        settings: the case's ``[adaptivity]``.
        reporter: messages (silent on ranks other than 0).
        out: the output folder; ``history.csv`` is rewritten there after every iteration,
            and the checkpoint at the start of each.
        reference: ``(summary, atoms)`` of the reference, for the true error at the full load.
        comm: the run's communicator.
        resume: the ``record.json`` of a checkpoint whose state the run holds: the first call
            goes on from its iteration with its history.
        case_module: with ``resume``, the case's own committee (the run may hold a
            retrained one).
    """

    def __init__(
        self,
        settings: AdaptivitySection,
        *,
        reporter: Reporter,
        out: Path | None,
        comm: Any,
        reference: Any = None,
        resume: dict[str, Any] | None = None,
        case_module: Any = None,
    ) -> None:
        self.settings, self.reporter, self.out, self.comm = settings, reporter, out, comm
        self.reference = reference
        self.record = AdaptiveRecord()
        self.start = time.perf_counter()
        self.retrainer = Retrainer(settings=settings, out=out, reporter=reporter, comm=comm)
        self._resume = resume
        self._case_module = case_module
        if resume is not None:
            self.record = AdaptiveRecord.from_state(resume)
            self.start -= float(resume["elapsed_s"])

    def __call__(self, run: CoupledRun) -> None:
        """Run the loop at the run's current load step; the run's system and setup change."""
        if self._resume is not None and self._resume.get("retrainer"):
            module = self._case_module or run.setup.potential.module
            self.retrainer.restore(self._resume["retrainer"], module)
        self._resume = None
        step = run.last.step
        record = self.record
        done_here = sum(1 for it in record.history if it.load_step == step)
        k = len(record.history)
        for j in range(done_here, self.settings.max_iterations + 1):
            self._checkpoint(run, k)
            stop = self._iteration(run, k, j)
            if stop is not None:
                record.stop = stop
                record.load_steps = [r for r in record.load_steps if r["load_step"] != step]
                record.load_steps.append({"load_step": step, "iterations": j, "stop": stop})
                break
            k += 1
        _budgets(record, self.settings)

    def _checkpoint(self, run: CoupledRun, k: int) -> None:
        """The checkpoint of iteration ``k``, unless the run's state did not converge.

        A restart then goes on from the last state that did.
        """
        if self.out is None or not run.converged:
            return
        from multiscale.kinds.coupled.checkpoint import (
            remove_checkpoints,
            step_states,
            write_checkpoint,
        )

        elapsed = time.perf_counter() - self.start
        state = self.record.state(iteration=k, elapsed=elapsed, load_step=run.last.step)
        state["retrainer"] = self.retrainer.state()
        state["steps"] = step_states(run)
        write_checkpoint(self.out, run, state)
        remove_checkpoints(self.out, self.comm, adaptive=False)  # superseded by the loop's

    def _iteration(self, run: CoupledRun, k: int, j: int) -> str | None:
        """Iteration ``k`` (the ``j``-th at this load step): estimate, then stop or act.

        Returns:
            Why the loop stops here; None: it acted and solved again.
        """
        settings, record, comm = self.settings, self.record, self.comm
        step = run.last.step
        est = _estimate(run.setup, run.system, step)
        it = _row(k, run, est, record, self.reference, self.start)
        record.history.append(it)
        _report(self.reporter, it, run.setup.loading.steps)
        _write_iteration(run, est, k, self.out)
        stop = None
        if not run.converged:
            stop = "not converged"
        elif it.eta["eta_total"] <= settings.tolerance:
            stop = "tolerance"
        elif j == settings.max_iterations:
            stop = "budget: max_iterations"
        done: list[str] = []
        if stop is None:
            plan, it.marks = _plan(est, run.setup, settings, comm=comm, record=record)
            retrainer = self.retrainer
            act = partial(retrainer.act, run=run, spread=est.spread, record=record, k=k)
            retrainer.rejected = ""
            setup, mesh_data, done = _apply(run.setup, run, plan, settings, act)
            record.notes.extend(m for _, m in plan.skipped if m not in record.notes)
            record.reached.update(b for b, _ in plan.skipped)
            if not done:
                stop = _why_idle(plan, retrainer)
        it.action = "+".join(done) if done else "stop"
        _write_history(record, self.out, comm)
        if stop is None:
            self.reporter.info(f"adaptive iteration {k}: {it.action} ({it.marks})")
            _resolve(setup, run, mesh_data, self.reporter, k + 1)
        return stop


def adapt(
    run: CoupledRun,
    settings: AdaptivitySection,
    *,
    reporter: Reporter,
    out: Path | None,
    reference: Any = None,
    resume: dict[str, Any] | None = None,
    case_module: Any = None,
) -> AdaptiveRecord:
    """Run the adaptive loop once, on a run at its last load step (:class:`AdaptiveLoop`)."""
    loop = AdaptiveLoop(
        settings,
        reporter=reporter,
        out=out,
        comm=run.system.comm,
        reference=reference,
        resume=resume,
        case_module=case_module,
    )
    loop(run)
    return loop.record


def _why_idle(plan: _Plan, retrainer: Retrainer) -> str:
    """Why the loop stops at an iteration whose plan did nothing."""
    if plan.skipped:
        return f"budget: {plan.skipped[0][0]}"
    if retrainer.rejected:
        # the next round would label nothing new and fine-tune the same committee
        return f"retrain rejected: {retrainer.rejected}"
    return "nothing to act on"


def _write_iteration(run: CoupledRun, est: Any, k: int, out: Path | None) -> None:
    """``out/adaptive/atoms_KK.extxyz`` (``eta_ml``, ``region``, ``β``) and the cell indicators.

    Collective: the atoms gather and the cell fields are written by every rank.
    """
    if out is None:
        return
    from continuum.output import write_cell_fields
    from multiscale.kinds.coupled.outputs import coupled_atoms
    from multiscale.outputs import write_extxyz

    folder = out / "adaptive"
    atoms = coupled_atoms(run)
    n_free = run.system.n_free
    eta_ml = np.zeros(len(atoms))
    spread = np.zeros(len(atoms))
    eta_ml[:n_free] = np.sqrt(est.ml / est.norm2) if est.norm2 > 0 else 0.0
    if est.spread is not None:
        spread[:n_free] = est.spread
    atoms.set_array("eta_ml", eta_ml)
    atoms.set_array("force_spread", spread)
    scale = est.norm2 if est.norm2 > 0 else 1.0
    fields = {name: np.sqrt(getattr(est, name) / scale) for name in ("fe", "model", "trunc")}
    cells = {f"eta_{name}": value for name, value in fields.items()}
    write_cell_fields(
        mesh=run.system.problem,
        fields=cells,
        directory=folder,
        time=float(k),
        stem=f"indicators_{k:02d}",
    )
    if run.system.comm.rank == 0:
        folder.mkdir(parents=True, exist_ok=True)
        write_extxyz(folder / f"atoms_{k:02d}.extxyz", atoms, results={})


def _write_history(record: AdaptiveRecord, out: Path | None, comm: Any) -> None:
    if out is None or comm.rank != 0:
        return
    from multiscale.outputs import write_text

    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "history.csv", history_csv(record))
