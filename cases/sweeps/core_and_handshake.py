"""Strain error of the coupled solution against the handshake width and the core radius.

Sweeps ``geometry.core_radius`` and ``geometry.handshake_width`` over ``void-small`` (a 4 Å
void through a 60 Å copper disk under 1 % biaxial tension, 2.5d) with ``multiscale.sweep``,
against one fully atomistic reference computed first (``multiscale reference``), and prints
the strain error of every point. Results: ``<output>/sweep.csv`` and one folder per point.

    python cases/sweeps/core_and_handshake.py                # 2 x 2 points
    python cases/sweeps/core_and_handshake.py --full         # 3 x 3 points
    python cases/sweeps/core_and_handshake.py --jobs 2 --output /tmp/core-sweep

Run it again and the complete points are skipped.
"""

import argparse
import subprocess
import sys
from pathlib import Path

import multiscale

HERE = Path(__file__).resolve().parent
CASE = HERE / "void-small"

GRIDS = {
    "short": {"geometry.core_radius": [16.0, 22.0], "geometry.handshake_width": [5.5, 11.0]},
    "full": {
        "geometry.core_radius": [16.0, 20.0, 24.0],
        "geometry.handshake_width": [2.75, 5.5, 11.0],
    },
}


def main() -> int:
    """Compute the reference once, run the sweep, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=HERE / "output", help="sweep folder")
    parser.add_argument("--jobs", type=int, default=1, help="points run at once")
    parser.add_argument("--full", action="store_true", help="3 x 3 points instead of 2 x 2")
    args = parser.parse_args()

    reference = args.output / "reference-run" / "reference"
    if not (reference / "summary.json").is_file():
        print(f"fully atomistic reference of {CASE.name} into {reference}")
        command = [sys.executable, "-m", "multiscale", "reference", str(CASE)]
        subprocess.run([*command, "--output", str(reference.parent)], check=True)

    grid = GRIDS["full" if args.full else "short"]
    rows = multiscale.sweep(
        CASE, grid, output=args.output, jobs=args.jobs, reference=reference, progress=print
    )

    print(f"\n{'R (Å)':>6} {'w (Å)':>6} {'strain error':>13} {'atoms':>6} {'FE dofs':>8}  status")
    for row in rows:
        err = row["strain_error_rel"]
        print(
            f"{row['geometry.core_radius']:6.2f} {row['geometry.handshake_width']:6.2f} "
            f"{'' if err is None else f'{100 * err:.3f} %':>13} {row['n_atoms'] or '':>6} "
            f"{row['n_fe_dofs'] or '':>8}  {row['status']}"
        )
    print(f"table: {args.output / 'sweep.csv'}")
    return 0 if all(row["status"] == "converged" for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
