"""What ``multiscale run`` and ``multiscale reference`` do for a ``coupled`` case.

MPI: every rank loads the case and builds the distributed problem (the atoms live on rank 0);
only rank 0 prints, logs and writes files, except the continuum fields (a collective write).
The reference is fully atomistic and runs on rank 0; other ranks wait for it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from multiscale.config import Case
from multiscale.errors import EXIT_NOT_CONVERGED, EXIT_OK, CaseError

__all__ = ["describe_coupled", "reference_case", "run_case"]


def describe_coupled(case: Case, setup: Any, *, output: str | Path | None = None) -> list[str]:
    """Lines describing a resolved coupled case (``check`` and the run log)."""
    from multiscale.schema import ORIGIN_DEFAULT, ORIGIN_SET

    s = setup
    if s.half_size is not None:
        k = 3 if s.dimension == "3d" else 2
        size = " x ".join(f"{2 * h:g}" for h in s.half_size[:k]) + " Å"
    else:
        size = f"radius {s.radius:g} Å"
    defect = "none" if s.void_radius is None else f"void of radius {s.void_radius:g} Å"
    boundary = "u = (F - I) X"
    if s.dislocation is not None:
        b, c = s.dislocation.burgers, s.dislocation.center
        defect = (
            f"dislocation along z, b = {(np.round(b, 6) + 0.0).tolist()} Å "
            f"(|b| {np.linalg.norm(b):.4f} Å), line at [{c[0]:.4f}, {c[1]:.4f}] Å"
        )
        boundary = "u = (F - I) X + anisotropic Volterra field of the dislocation"
    slab = f", slab period {s.period:.4f} Å along z" if s.period else ""
    overridden = [k for k, o in case.origins.items() if o == ORIGIN_SET]
    defaults = [
        k
        for k, o in case.origins.items()
        if o == ORIGIN_DEFAULT and _value(case, k) is not None  # skip keys of other choices
    ]
    rows = "default" if s.orientation is None else s.orientation.tolist()
    reach = "" if s.cutoff == s.potential.cutoff else f", range r_cut {s.cutoff:.4g} Å"
    return [
        f"case       {case.file} (coupled, {s.dimension})",
        f"lattice    {s.structure} {s.element}, a {s.a:.6f} Å, orientation {rows}{slab}",
        f"potential  {s.potential_file} (cutoff {s.potential.cutoff:.4g} Å{reach})",
        f"geometry   outer {s.outer} {size}; core R {s.core_radius:g} Å, handshake "
        f"{s.handshake_width:.4g} Å, pad {s.pad_width:.4g} Å (atoms to {s.atom_radius:.4g} Å)",
        f"mesh       h_min {s.h_min:.4g} Å, h_max {s.h_max:.4g} Å, growth {s.growth:g}",
        f"defect     {defect}",
        f"boundary   {boundary}, F - I = {s.strain.tolist()}, {s.steps} load step(s)",
        f"coupling   kappa {s.kappa:.4g} eV/Å² (mu_V {s.shear_modulus:.4g} eV/Å³), ghost-force "
        f"correction {'on' if s.ghost_force_correction else 'off'}",
        f"device     {s.device}",
        f"output     {case.output_dir(output)}",
        f"--set      {', '.join(overridden) or '-'}",
        f"defaults   {', '.join(defaults) or '-'}",
    ]


def _value(case: Case, key: str) -> Any:
    section, name = key.split(".", 1)
    return getattr(getattr(case.config, section), name)


def _output_folder(case: Case, override: str | None) -> Path:
    out = case.output_dir(override)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        where = (
            "--output"
            if override is not None
            else f"{case.where('output.directory')}: output.directory"
        )
        raise CaseError(f"{where}: cannot create the output folder {out} ({err.strerror})") from err
    return out


def run_case(case: Case, args: argparse.Namespace) -> int:
    """``multiscale run`` of a coupled case; returns the exit code."""
    from mpi4py import MPI

    from multiscale import version
    from multiscale.compare import reference_error
    from multiscale.coupled import run_coupled
    from multiscale.coupled_outputs import (
        REFERENCE_DIR,
        coupled_atoms,
        coupled_summary,
        read_reference,
        write_continuum,
        write_coupled_outputs,
    )
    from multiscale.coupled_setup import resolve_setup
    from multiscale.outputs import resolved_toml
    from multiscale.progress import Reporter

    comm = MPI.COMM_WORLD
    root = comm.rank == 0
    setup = resolve_setup(case, comm=comm)
    out = _output_folder(case, args.output)
    solver = case.config.solver
    assert solver is not None
    with Reporter(out / "log.txt" if root else None, enabled=root, interval=10.0) as reporter:
        reporter.log("\n".join(describe_coupled(case, setup, output=args.output)))
        reporter.log("parameters (origin after #):\n" + resolved_toml(case, version=version()))
        run = run_coupled(
            setup,
            comm=comm,
            reporter=reporter,
            fmax=solver.fmax,
            max_iterations=solver.max_iterations,
            linear_solver=solver.linear_solver,
            tangent_tolerance=solver.tangent_tolerance,
        )
        reference = read_reference(out)  # every rank reads it: the comparison is collective
        error = None
        if reference is not None:
            error = reference_error(run, *reference, path=str(out / REFERENCE_DIR))
            if "skipped" in error:
                reporter.info(f"multiscale: warning: reference_error skipped: {error['skipped']}")
            else:
                reporter.info(
                    f"against the reference: energy error {error['energy_error_eV']:.3e} eV, "
                    f"strain error {error['strain_error_rel']:.3e} (relative)"
                )
        write_continuum(run, out=out)  # collective
        atoms = coupled_atoms(run)  # collective
        summary = coupled_summary(run, case, reference_error=error, atoms=atoms)
        if root:
            write_coupled_outputs(
                case, run, atoms=atoms, out=out, summary=summary, output_override=args.output
            )
        reporter.log(f"outputs written to {out}")
    if root:
        print(
            f"coupled energy: {summary['energy_eV']:.8f} eV, relaxation "
            f"{summary['relaxation_energy_eV']:+.6e} eV ({summary['status']}, "
            f"max|f| {summary['max_force_eV_per_A']:.2e} eV/Å, {run.wall_time_s:.1f} s)"
        )
        print(f"outputs: {out}")
        if not run.converged:
            print(
                f"multiscale: warning: load step {run.last.step} stopped at max|f| = "
                f"{run.max_force:.2e} eV/Å > solver.fmax = {solver.fmax:g} "
                f"({run.last.reason}); raise solver.max_iterations or loading.steps",
                file=sys.stderr,
            )
    return EXIT_OK if summary["status"] == "converged" else EXIT_NOT_CONVERGED


def reference_case(case: Case, args: argparse.Namespace) -> int:
    """``multiscale reference`` of a coupled case; returns the exit code."""
    from mpi4py import MPI

    from multiscale import version
    from multiscale.coupled_outputs import REFERENCE_DIR, write_reference_outputs
    from multiscale.coupled_setup import resolve_setup
    from multiscale.outputs import resolved_toml
    from multiscale.progress import Reporter
    from multiscale.reference import run_reference

    comm = MPI.COMM_WORLD
    setup = resolve_setup(case, comm=comm)
    out = _output_folder(case, args.output)
    ref, solver = case.config.reference, case.config.solver
    assert ref is not None and solver is not None
    fmax = solver.fmax if ref.fmax == "solver" else float(ref.fmax)
    code = EXIT_OK
    if comm.rank == 0:
        folder = out / REFERENCE_DIR
        folder.mkdir(parents=True, exist_ok=True)
        with Reporter(folder / "log.txt") as reporter:
            reporter.log("\n".join(describe_coupled(case, setup, output=args.output)))
            reporter.log("parameters (origin after #):\n" + resolved_toml(case, version=version()))
            result = run_reference(
                setup,
                reporter=reporter,
                fmax=fmax,
                method=ref.method,
                max_steps=ref.max_steps,
            )
            summary = write_reference_outputs(
                case, setup, result, out=out, output_override=args.output, fmax=fmax
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
                f" eV/Å > reference.fmax = {fmax:g}; raise reference.max_steps",
                file=sys.stderr,
            )
            code = EXIT_NOT_CONVERGED
    return int(comm.bcast(code, root=0))
