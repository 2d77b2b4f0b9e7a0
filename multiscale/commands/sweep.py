"""``multiscale sweep CASE --grid key=v1,v2 ...``: run a case at every point of a grid.

Each point runs as ``multiscale run`` in its own process, in its own folder
``<output>/<key=value,...>/`` (a copy of the case with the point's values written in); points
already complete are skipped, a failed point is recorded and the others go on, and
``<output>/sweep.csv`` collects one row per point (see :mod:`multiscale.sweeps`). Every grid
value is checked against the case schema before anything runs. One line per finished point
on stderr; at the end the table's path and the counts on stdout.

Exit code: 0 when every point converged, 3 when some finished without converging and none
failed, 1 when a point failed, 2 for bad input (nothing run).
"""

from __future__ import annotations

import argparse
import sys

HELP = "run a case at every point of a grid of case-file values (--grid key=v1,v2) into sweep.csv"


def _jobs(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``sweep``."""
    parser.add_argument("case", metavar="CASE", help="case folder (holding case.toml)")
    parser.add_argument(
        "--grid",
        metavar="KEY=V1,V2",
        action="append",
        required=True,
        help="a case-file key and the values to try, e.g. --grid geometry.core_radius=14,18 "
        "(repeatable: the points are the product; arrays as in TOML, [4,4,4],[5,5,5])",
    )
    parser.add_argument("--output", metavar="DIR", help="the sweep's folder (default: CASE/sweep)")
    parser.add_argument(
        "--jobs", metavar="N", type=_jobs, default=1, help="points run at once (default 1)"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="override a case-file key at every point, e.g. --set solver.fmax=1e-5 (repeatable)",
    )
    parser.add_argument(
        "--reference",
        metavar="DIR",
        help="a folder written by `multiscale reference` (e.g. CASE/output/reference), copied "
        "into every point so that its summary gets reference_error (strain error)",
    )


def main(args: argparse.Namespace) -> int:
    """Run the sweep; the exit code says whether every point converged."""
    from mpi4py import MPI

    from multiscale.errors import EXIT_FAILURE, EXIT_NOT_CONVERGED, EXIT_OK, CaseError
    from multiscale.sweeps import CSV_FILE, parse_grid_option, sweep, sweep_folder

    if MPI.COMM_WORLD.size > 1:
        raise CaseError(
            "multiscale sweep starts its points itself; run it without mpiexec "
            "(--jobs N runs N points at once)"
        )
    grid: dict[str, list] = {}
    for text in args.grid:
        key, values = parse_grid_option(text)
        if key in grid:
            raise CaseError(f"--grid {key}: given twice; list all its values in one --grid")
        grid[key] = values
    rows = sweep(
        args.case,
        grid,
        output=args.output,
        jobs=args.jobs,
        overrides=args.overrides,
        reference=args.reference,
        progress=lambda line: print(line, file=sys.stderr, flush=True),
    )
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    skipped = sum(row["action"] == "skipped" for row in rows)
    told = ", ".join(f"{n} {status}" for status, n in counts.items())
    points = f"{len(rows)} point" + ("s" if len(rows) != 1 else "")
    print(f"sweep: {points} ({told}; {skipped} skipped as complete)")
    print(f"table: {sweep_folder(args.case, args.output) / CSV_FILE}")
    if counts.get("failed"):
        return EXIT_FAILURE
    return EXIT_NOT_CONVERGED if counts.get("not_converged") else EXIT_OK
