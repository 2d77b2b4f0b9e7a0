"""``multiscale run CASE``: run a case and write its outputs.

Outputs (all in the output folder, replaced as a set only once the run has finished, so a
failed or killed run leaves the previous results intact, :mod:`multiscale.output_set`):
``summary.json``,
``case.resolved.toml``, ``atoms/*.extxyz``, ``log.txt`` (appended to), ``iterations.csv``
(every Newton iteration or force evaluation of the run's solves) and, for a coupled case,
``continuum/`` (see :mod:`multiscale.kinds.coupled.outputs`) and its checkpoint
(``checkpoint/`` or ``adaptive/checkpoint/``, for ``--restart``,
:mod:`multiscale.kinds.coupled.checkpoint`). Then ``plots/*.png``
(:mod:`multiscale.plotting`); a figure that fails is a warning on stderr and in the log, and
the run keeps its exit code. A coupled case whose output folder holds
``reference/summary.json`` (from ``multiscale reference``) also gets ``reference_error`` in
its summary.

MPI: every rank loads the case and runs the collective parts; only rank 0 prints, logs and
writes files (the continuum fields are a collective write).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from multiscale.commands.common import add_case_arguments, load_case_from_args, locked_output

if TYPE_CHECKING:
    from multiscale.progress import Reporter

HELP = "run a case and write summary.json, case.resolved.toml, atoms/*.extxyz, log.txt, plots/"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``run``."""
    add_case_arguments(parser)
    parser.add_argument(
        "--restart",
        action="store_true",
        help="continue a coupled run from its last checkpoint in the output folder (the last "
        "load step's, checkpoint/, or the adaptive loop's, adaptive/checkpoint/); without "
        "one, start from the beginning",
    )


def main(args: argparse.Namespace) -> int:
    """Run the case; returns the exit code (0 converged, 3 finished but not converged)."""
    from mpi4py import MPI

    from multiscale import version
    from multiscale.errors import EXIT_NOT_CONVERGED, EXIT_OK, CaseError
    from multiscale.kinds import case_kind
    from multiscale.output_set import staged
    from multiscale.outputs import resolved_toml, write_text
    from multiscale.progress import Reporter

    comm = MPI.COMM_WORLD
    root = comm.rank == 0
    case = load_case_from_args(args)
    kind = case_kind(case)
    with (
        locked_output(case, args, comm=comm, verb="run") as out,
        Reporter(out / "log.txt" if root else None, enabled=root, interval=10.0) as reporter,
    ):
        setup = kind.resolve(case, comm=comm)  # bad input is logged as a failed run too
        reporter.log("\n".join(kind.describe(case, setup, output=args.output)))
        reporter.log("parameters (origin after #):\n" + resolved_toml(case, version=version()))
        restart = bool(getattr(args, "restart", False))
        if restart and case.config.case.kind != "coupled":
            raise CaseError(
                f"{case.file}: --restart continues a coupled run, and this case is "
                f'case.kind = "{case.config.case.kind}"'
            )
        extra = {"restart": True} if restart else {}
        result = kind.run(case, setup, comm=comm, reporter=reporter, out=out, **extra)
        # The results replace the previous ones as a set (a kill leaves the old or the new).
        with staged(out, comm=comm) as stage:
            if root:
                write_text(stage / "iterations.csv", reporter.iterations_csv())
            finished = kind.write(
                case,
                setup,
                result,
                out=out,
                stage=stage,
                output_override=args.output,
                comm=comm,
                reporter=reporter,
            )
        if root:
            _plot(out, reporter)
        reporter.log(f"outputs written to {out}")
    if root:
        print("\n".join(finished.lines))
        if finished.warning is not None:
            print(f"multiscale: warning: {finished.warning}", file=sys.stderr)
    return EXIT_OK if finished.converged else EXIT_NOT_CONVERGED


def _plot(out: Path, reporter: Reporter) -> None:
    """``plots/*.png`` of the finished run; a failure is a warning, never a failed run."""
    try:
        from multiscale.plotting import plot_output

        written, notes = plot_output(out)
    except Exception as err:  # the results are written: a figure must not fail the run
        message = " ".join(f"{type(err).__name__}: {err}".split())
        reporter.info(f"multiscale: warning: plots/ not drawn: {message}")
        return
    reporter.log(f"plots: {', '.join(p.name for p in written) or 'none'}")
    for note in notes:
        reporter.log(f"plots: {note}")
