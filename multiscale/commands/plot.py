"""``multiscale plot OUTPUT``: draw ``plots/*.png`` again from an output folder's files.

The same figures as at the end of ``multiscale run`` (:mod:`multiscale.plotting`), from
``summary.json``, ``iterations.csv``, ``history.csv``, the atoms and the continuum mesh.
A folder that is not the output of a run is a one-line error (exit 2).
"""

from __future__ import annotations

import argparse

HELP = "draw plots/*.png again from the files of a run's output folder"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``plot``."""
    parser.add_argument("output", metavar="OUTPUT", help="output folder of 'multiscale run'")


def main(args: argparse.Namespace) -> int:
    """Draw the figures; print the files written and the figures left out."""
    from pathlib import Path

    from multiscale.plotting import plot_output

    written, notes = plot_output(Path(args.output))
    for path in written:
        print(path)
    for note in notes:
        print(f"note: {note}")
    return 0
