"""``multiscale check CASE``: validate a case without running it; writes nothing."""

from __future__ import annotations

import argparse

from multiscale.commands.common import add_case_arguments, load_case_from_args

HELP = "validate a case (file, keys, potential file, element) without running it"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``check``."""
    add_case_arguments(parser, output=False)


def main(args: argparse.Namespace) -> int:
    """Load and resolve the case (the potential too) and print a short summary."""
    from multiscale.kinds import case_kind

    case = load_case_from_args(args)
    kind = case_kind(case)
    print("\n".join(kind.describe(case, kind.resolve(case))))
    print(f"ok: {case.file} is valid")
    return 0
