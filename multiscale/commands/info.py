"""``multiscale info``: versions, torch device and threads, CUDA, MPI and ADIOS2 of this install.

Plain text by default; ``--json`` prints one JSON object (:func:`multiscale.info.environment_info`).
Under ``mpiexec`` only rank 0 prints, and the MPI size is the number of ranks.
"""

from __future__ import annotations

import argparse

HELP = "show versions, the torch device, CUDA, MPI and ADIOS2 availability, CPU threads"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``info``."""
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def main(args: argparse.Namespace) -> int:
    """Print what this installation runs on."""
    import json

    from mpi4py import MPI

    from multiscale.info import environment_info, format_info

    info = environment_info()
    if MPI.COMM_WORLD.rank == 0:
        print(json.dumps(info, indent=2) if args.json else format_info(info))
    return 0
