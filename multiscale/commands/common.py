"""Arguments and set-up shared by the verbs that take a case: ``run``, ``reference``, ``check``."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from multiscale.config import Case

__all__ = ["add_case_arguments", "load_case_from_args"]


def add_case_arguments(
    parser: argparse.ArgumentParser, *, output: bool = True, device: bool = True
) -> None:
    """``CASE``, ``--set`` (repeatable) and, as asked, ``--output`` and ``--device``."""
    parser.add_argument("case", metavar="CASE", help="case folder (holding case.toml)")
    if output:
        parser.add_argument(
            "--output", metavar="DIR", help="output folder (default: output.directory of the case)"
        )
    parser.add_argument(
        "--set",
        dest="overrides",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="override a case-file key, e.g. --set solver.fmax=1e-5 (repeatable)",
    )
    if device:
        parser.add_argument(
            "--device", choices=("cpu", "cuda", "auto"), help="same as --set run.device=..."
        )


def load_case_from_args(args: argparse.Namespace) -> Case:
    """The case of ``args.case`` with ``--set`` and ``--device`` applied.

    Raises:
        CaseError: anything wrong with the folder, the file or the overrides.
    """
    from multiscale.config import load_case

    overrides = list(args.overrides)
    if getattr(args, "device", None) is not None:
        overrides.append(f'run.device="{args.device}"')
    return load_case(args.case, overrides=overrides)
