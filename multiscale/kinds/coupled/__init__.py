"""The ``coupled`` case kind: atoms near the defect, a Cauchy–Born continuum elsewhere.

==============  =====================================================================
module          holds
==============  =====================================================================
``setup``       the case turned into objects (:func:`resolve`), checks that need the
                potential
``sites``       the lattice sites of the coupled atoms and of the reference
``run``         the load steps (:func:`run`)
``outputs``     ``summary.json``, atoms, continuum fields, reference files
``reference``   the fully atomistic reference (``multiscale reference``)
``compare``     ``reference_error``: a run against its reference
==============  =====================================================================

MPI: every rank loads the case and builds the distributed problem (the atoms live on rank 0);
only rank 0 prints, logs and writes files, except the continuum fields (a collective write).
The reference is fully atomistic and runs on rank 0; other ranks wait for it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from multiscale.config import Case
from multiscale.config.schema import ORIGIN_DEFAULT, ORIGIN_SET
from multiscale.errors import EXIT_NOT_CONVERGED, EXIT_OK
from multiscale.kinds import Finished
from multiscale.kinds.coupled.setup import CoupledSetup, estimate, resolve_setup
from multiscale.progress import Reporter
from multiscale.resources import machine_text

__all__ = ["check_reference", "describe", "reference", "resolve", "run", "write"]


def resolve(case: Case, *, comm: Any = None) -> CoupledSetup:
    """:func:`multiscale.kinds.coupled.setup.resolve_setup`."""
    return resolve_setup(case, comm=comm)


def check_reference(case: Case, setup: CoupledSetup) -> None:
    """Refuse a reference beyond the machine's memory (the whole domain is atoms).

    Raises:
        CaseError: naming the outer size and the estimate.
    """
    from multiscale.kinds.coupled.setup import check_resources

    check_resources(case, setup, reference=True)


def describe(case: Case, setup: CoupledSetup, *, output: str | Path | None = None) -> list[str]:
    """Lines describing a resolved coupled case (``check`` and the run log)."""
    s = setup
    domain, lattice, hs = s.domain, s.lattice, s.handshake
    if domain.half_size is not None:
        k = 3 if s.dimension == "3d" else 2
        size = " x ".join(f"{2 * h:g}" for h in domain.half_size[:k]) + " Å"
    else:
        size = f"radius {domain.radius:g} Å"
    defect = "none" if s.void_radius is None else f"void of radius {s.void_radius:g} Å"
    boundary = "u = (F - I) X"
    if s.dislocation is not None:
        b, c = s.dislocation.burgers, s.dislocation.center
        defect = (
            f"dislocation along z, b = {(np.round(b, 6) + 0.0).tolist()} Å "
            f"(|b| {np.linalg.norm(b):.4f} Å), line at [{c[0]:.4f}, {c[1]:.4f}] Å"
        )
        boundary = "u = (F - I) X + anisotropic Volterra field of the dislocation"
    if s.crack is not None:
        from continuum.elastic_fields import MPA_SQRT_M_TO_EV_PER_A2_5 as K_UNIT

        t, load = s.crack.tip, s.loading
        defect = f"crack along z on y = {t[1]:.4f} Å, faces x < {t[0]:.4f} Å (mesh cut along them)"
        boundary = (
            "u = (F - I) X + anisotropic mode-I K field of the crack, K_I from "
            f"{load.k_i_start / K_UNIT:g} to {load.k_i / K_UNIT:g} MPa√m"
        )
    slab = f", slab period {lattice.period:.4f} Å along z" if lattice.period else ""
    overridden = [k for k, o in case.origins.items() if o == ORIGIN_SET]
    defaults = [
        k
        for k, o in case.origins.items()
        if o == ORIGIN_DEFAULT and _value(case, k) is not None  # skip keys of other choices
    ]
    rows = "default" if lattice.orientation is None else lattice.orientation.tolist()
    pot = s.potential
    reach = "" if pot.range == pot.cutoff else f", range r_cut {pot.range:.4g} Å"
    m, c = s.mesh, s.coupling
    return [
        f"case       {case.file} (coupled, {s.dimension})",
        f"lattice    {lattice.structure} {lattice.element}, a {lattice.a:.6f} Å, "
        f"orientation {rows}{slab}",
        f"potential  {pot.file} (cutoff {pot.cutoff:.4g} Å{reach})",
        f"geometry   outer {domain.outer} {size}; core R {hs.core_radius:g} Å, handshake "
        f"{hs.width:.4g} Å, pad {hs.pad_width:.4g} Å (atoms to {hs.reach:.4g} Å)",
        f"mesh       h_min {m.h_min:.4g} Å, h_max {m.h_max:.4g} Å, growth {m.growth:g}",
        f"defect     {defect}",
        f"boundary   {boundary}, F - I = {s.loading.strain.tolist()}, "
        f"{s.loading.steps} load step(s)",
        f"coupling   kappa {c.kappa:.4g} eV/Å² (mu_V {c.shear_modulus:.4g} eV/Å³), ghost-force "
        f"correction {'on' if c.ghost_force_correction else 'off'}",
        f"device     {pot.device}",
        f"needs      {estimate(s).text()}; reference {estimate(s, reference=True).text()} "
        f"(machine: {machine_text()})",
        f"reference  engine {s.reference.engine}, fmax {s.reference.fmax:g} eV/Å "
        "(multiscale reference)",
        f"output     {case.output_dir(output)}",
        f"--set      {', '.join(overridden) or '-'}",
        f"defaults   {', '.join(defaults) or '-'}",
    ]


def _value(case: Case, key: str) -> Any:
    section, name = key.split(".", 1)
    return getattr(getattr(case.config, section), name)


def run(
    case: Case,
    setup: CoupledSetup,
    *,
    comm: Any,
    reporter: Reporter,
    out: Path | None = None,
    restart: bool = False,
) -> Any:
    """Solve the load steps (:func:`multiscale.kinds.coupled.solve.run_coupled`).

    With ``[adaptivity]``, the adaptive loop (:class:`multiscale.kinds.coupled.adaptive.
    AdaptiveLoop`) follows the last load step, or every load step with ``load_steps =
    "every"``; ``out`` is where it keeps ``history.csv`` and its checkpoint and finds
    ``reference/``, and where every load step leaves its checkpoint (the loop's supersedes
    it). With ``restart`` and a checkpoint in ``out``, the load steps and the iterations
    before the checkpoint are not run again (:mod:`multiscale.kinds.coupled.checkpoint`).
    """
    import time

    start = time.perf_counter()
    settings = case.config.adaptivity
    checkpoint = _checkpoint(out, comm, reporter, restart=restart, adaptive=settings is not None)
    resumed = checkpoint is not None and checkpoint.adaptive
    # seconds of the interrupted run a load-step checkpoint records (the loop's: not counted)
    before = 0.0 if checkpoint is None or resumed else float(checkpoint.record["elapsed_s"])
    loop = None
    if settings is not None:
        from multiscale.kinds.coupled.adaptive import AdaptiveLoop
        from multiscale.kinds.coupled.outputs import read_reference

        loop = AdaptiveLoop(
            settings,
            reporter=reporter,
            out=out,
            comm=comm,
            reference=read_reference(out) if out is not None else None,
            resume=checkpoint.record if resumed else None,
            case_module=setup.potential.module if resumed else None,
        )
    if resumed:
        assert out is not None and loop is not None and settings is not None
        result = _resume_adaptive(checkpoint, setup, out=out, comm=comm, reporter=reporter)
        loop(result)
        if settings.load_steps == "every" and result.converged:
            if result.last.step < setup.loading.steps:
                result = _run_steps(
                    setup, out=out, comm=comm, reporter=reporter, restored=result, loop=loop
                )
    else:
        from multiscale.kinds.coupled.checkpoint import restore_steps

        every = settings is not None and settings.load_steps == "every"
        restored = None if checkpoint is None else restore_steps(checkpoint, setup, comm=comm)
        result = _run_steps(
            setup,
            out=out,
            comm=comm,
            reporter=reporter,
            restored=restored,
            elapsed_before=before,
            loop=loop if every else None,
        )
        history = [] if loop is None else loop.record.history
        # the loop after the last step solved; with "every", unless it ran there already (a
        # restart from a load-step checkpoint of a run without it may have no step left)
        if loop is not None and (not history or history[-1].load_step != result.last.step):
            loop(result)
    if loop is not None:
        result.adaptive = loop.record
        result.wall_time_s = time.perf_counter() - start + before
    return result


def _run_steps(
    setup: CoupledSetup,
    *,
    out: Path | None,
    comm: Any,
    reporter: Reporter,
    restored: Any = None,
    elapsed_before: float = 0.0,
    loop: Any = None,
) -> Any:
    """The load steps after ``restored``'s (all of them when None).

    Without ``loop`` each converged step leaves its checkpoint in ``out``
    (:mod:`multiscale.kinds.coupled.checkpoint`); with it, ``loop`` runs after every step
    and its checkpoints replace the steps'.
    """
    from multiscale.kinds.coupled.checkpoint import write_step_checkpoint
    from multiscale.kinds.coupled.solve import run_coupled

    def after_step(run: Any, elapsed: float) -> None:
        assert out is not None
        write_step_checkpoint(out, run, elapsed=elapsed)

    return run_coupled(
        setup,
        comm=comm,
        reporter=reporter,
        restored=restored,
        after_step=None if out is None or loop is not None else after_step,
        elapsed_before=elapsed_before,
        adapt=loop,
    )


def _checkpoint(
    out: Path | None, comm: Any, reporter: Reporter, *, restart: bool, adaptive: bool
) -> Any:
    """The checkpoint a restart goes on from, or None (then the old ones are removed)."""
    if out is None:
        return None
    from multiscale.kinds.coupled.checkpoint import latest_checkpoint, remove_checkpoints

    checkpoint = latest_checkpoint(out, comm, adaptive=adaptive) if restart else None
    if checkpoint is None:
        if restart:
            reporter.info(f"restart: no checkpoint in {out}; running from the start")
        remove_checkpoints(out, comm)
    elif checkpoint.adaptive:
        k = checkpoint.record["iteration"]
        reporter.info(f"restart: from the checkpoint of adaptive iteration {k} in {out}")
    else:
        k = checkpoint.record["step"]
        reporter.info(f"restart: from the checkpoint of load step {k} in {out}")
    return checkpoint


def _resume_adaptive(
    checkpoint: Any, setup: CoupledSetup, *, out: Path, comm: Any, reporter: Reporter
) -> Any:
    """The run at an adaptive checkpoint, with the committee it was using (collective)."""
    import time

    from multiscale.kinds.coupled.checkpoint import restore_run
    from multiscale.kinds.coupled.retraining import restored_setup

    start = time.perf_counter()
    setup = restored_setup(setup, checkpoint.record.get("retrainer"), out)
    result = restore_run(checkpoint, setup, comm=comm, reporter=reporter)
    result.wall_time_s = time.perf_counter() - start
    return result


def _compare(run: Any, out: Path, reporter: Reporter) -> dict | None:
    """``reference_error`` against ``out/reference``, or None without one (collective)."""
    from multiscale.kinds.coupled.compare import reference_error
    from multiscale.kinds.coupled.outputs import REFERENCE_DIR, read_reference

    reference_data = read_reference(out)  # every rank reads it: the comparison is collective
    if reference_data is None:
        return None
    error = reference_error(run, *reference_data, path=str(out / REFERENCE_DIR))
    if "skipped" in error:
        reporter.info(f"multiscale: warning: reference_error skipped: {error['skipped']}")
    else:
        reporter.info(
            f"against the reference: energy error {error['energy_error_eV']:.3e} eV, "
            f"strain error {error['strain_error_rel']:.3e} (relative)"
        )
    return error


def write(
    case: Case,
    setup: CoupledSetup,
    result: Any,
    *,
    out: Path,
    output_override: str | None,
    comm: Any,
    reporter: Reporter,
    stage: Path | None = None,
) -> Finished:
    """Compare with ``out/reference`` when there is one, then write every output.

    The files go to ``stage`` when given (:func:`multiscale.output_set.staged`), else to
    ``out``. Collective: the comparison, the continuum fields and the atoms gather over
    ``comm``; rank 0 writes the files.
    """
    from multiscale.kinds.coupled.outputs import (
        coupled_atoms,
        coupled_summary,
        write_continuum,
        write_coupled_outputs,
    )
    from multiscale.kinds.coupled.solve import step_name

    run = result
    error = _compare(run, out, reporter)
    dest = out if stage is None else stage
    write_continuum(run, out=dest)  # collective
    atoms = coupled_atoms(run)  # collective
    summary = coupled_summary(run, case, reference_error=error, atoms=atoms)
    if comm.rank == 0:
        write_coupled_outputs(
            case,
            run,
            atoms=atoms,
            out=dest,
            summary=summary,
            output_override=output_override,
            output_dir=out,
        )
    lines = [
        f"coupled energy: {summary['energy_eV']:.8f} eV, relaxation "
        f"{summary['relaxation_energy_eV']:+.6e} eV ({summary['status']}, "
        f"max|f| {summary['max_force_eV_per_A']:.2e} eV/Å, {run.wall_time_s:.1f} s)",
        f"outputs: {out}",
    ]
    if run.adaptive is not None:
        last = run.adaptive.history[-1]
        steps = len(run.adaptive.load_steps)
        at = f" at {steps} load steps, the last" if steps > 1 else ","
        lines.insert(
            1,
            f"adaptive: {run.adaptive.acted} iteration(s){at} stopped on "
            f"{run.adaptive.stop}; eta_total {last.eta['eta_total']:.3e}"
            + (
                ""
                if last.strain_error_rel is None
                else f", true strain error {last.strain_error_rel:.3e}"
            )
            + " (history.csv, plots/)",
        )
    warning = None
    if not run.converged:
        advice = _advice(run.last)
        warning = (
            f"load step {step_name(run.last.step)} stopped at max|f| = {run.max_force:.2e} eV/Å > "
            f"solver.fmax = {setup.solver.fmax:g} ({run.last.reason}); {advice}"
        )
    return Finished(
        summary=summary,
        lines=lines,
        warning=warning,
        converged=summary["status"] == "converged",
    )


def _advice(last: Any) -> str:
    """What to change when the load step ``last`` (a step record) did not converge."""
    if last.law_wall is not None:
        return (
            "continuum points are pressed against the Cauchy–Born law's wall (log.txt): "
            "more load steps will not help; give the defect more atoms (geometry.core_radius)"
        )
    if last.reason == "DIVERGED_ROUNDOFF":
        return (
            "the forces stopped at their round-off, so no Newton step or load-step cut can "
            "reach solver.fmax: raise solver.fmax above the max|f| reached"
        )
    if last.reason == "DIVERGED_STALLED":
        from coupling.solver import STALL_STEPS  # the solve has loaded PETSc already

        return (
            f"the forces stopped falling for {STALL_STEPS} Newton steps; if they are at "
            "round-off, raise solver.fmax, else raise loading.steps or loading.max_cuts"
        )
    return "raise solver.max_iterations, loading.steps or loading.max_cuts"


def reference(
    case: Case, setup: CoupledSetup, *, out: Path, output_override: str | None, comm: Any
) -> int:
    """``multiscale reference``: the fully atomistic problem, relaxed on rank 0.

    Writes ``out/reference``; returns the exit code on every rank.
    """
    import sys

    from multiscale import version
    from multiscale.kinds.coupled.outputs import REFERENCE_DIR, write_reference_outputs
    from multiscale.kinds.coupled.reference import run_reference
    from multiscale.output_set import staged
    from multiscale.outputs import resolved_toml

    code = EXIT_OK
    if comm.rank == 0:
        folder = out / REFERENCE_DIR
        folder.mkdir(parents=True, exist_ok=True)
        options = setup.reference
        with Reporter(folder / "log.txt") as reporter:
            reporter.log("\n".join(describe(case, setup, output=output_override)))
            reporter.log("parameters (origin after #):\n" + resolved_toml(case, version=version()))
            result = run_reference(setup, reporter=reporter)
            with staged(folder) as stage:  # the three files replace the old ones as a set
                summary = write_reference_outputs(
                    case, setup, result, out=out, output_override=output_override, folder=stage
                )
            reporter.log(f"outputs written to {folder}")
        print(
            f"reference energy: {result.energy:.8f} eV, relaxation "
            f"{result.relaxation_energy:+.6e} eV ({summary['status']}, {summary['n_atoms']} "
            f"atoms, max|F| {result.max_force:.2e} eV/Å, {result.wall_time_s:.1f} s)"
        )
        print(f"outputs: {folder}")
        if not result.converged:
            print(
                f"multiscale: warning: the reference stopped at max|F| = {result.max_force:.2e}"
                f" eV/Å > reference.fmax = {options.fmax:g}; raise reference.max_steps",
                file=sys.stderr,
            )
            code = EXIT_NOT_CONVERGED
    return int(comm.bcast(code, root=0))
