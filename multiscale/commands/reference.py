"""``multiscale reference CASE``: the same coupled problem, fully atomistic, for validation.

Writes ``<output>/reference/summary.json``, ``atoms.extxyz``, ``case.resolved.toml`` and
``log.txt`` (see :mod:`multiscale.kinds.coupled.reference`). A later ``multiscale run`` of
the case into the same output folder then reports ``reference_error`` against it.
"""

from __future__ import annotations

import argparse

from multiscale.commands.common import add_case_arguments, load_case_from_args, locked_output

HELP = "solve a coupled case fully atomistically and write <output>/reference/ for validation"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``reference``."""
    add_case_arguments(parser)
    parser.add_argument(
        "--engine",
        choices=("torch", "lammps"),
        help="same as --set reference.engine=...: relax with the project's torch potential or "
        "with LAMMPS minimize (EAM and Stillinger-Weber potentials; default for them)",
    )


def main(args: argparse.Namespace) -> int:
    """Run the reference; returns the exit code (0 converged, 3 not converged)."""
    from mpi4py import MPI

    from multiscale.kinds import case_kind

    comm = MPI.COMM_WORLD
    case = load_case_from_args(args)
    kind = case_kind(case, needs="reference")
    setup = kind.resolve(case, comm=comm)
    kind.check_reference(case, setup)
    with locked_output(case, args, comm=comm, verb="reference") as out:
        return int(kind.reference(case, setup, out=out, output_override=args.output, comm=comm))
