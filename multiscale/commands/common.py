"""Arguments and set-up shared by the verbs that take a case: ``run``, ``reference``, ``check``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from multiscale.config import Case

__all__ = ["add_case_arguments", "load_case_from_args", "locked_output"]


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
    options = {}
    for key, option in (("run.device", "device"), ("reference.engine", "engine")):
        value = getattr(args, option, None)
        if value is not None:
            overrides.append(f'{key}="{value}"')
            options[key] = f"--{option} {value}"
    return load_case(args.case, overrides=overrides, options=options)


@contextmanager
def locked_output(case: Case, args: argparse.Namespace, *, comm: Any, verb: str) -> Iterator[Path]:
    """The output folder, created and locked (:mod:`multiscale.lock`) for the block.

    Rank 0 takes the lock and tells the others whether it could, so that every rank refuses
    together.

    Raises:
        CaseError: the folder cannot be made or written, or another run is writing it.
    """
    from multiscale.errors import CaseError
    from multiscale.kinds.shared import output_folder, output_where
    from multiscale.lock import output_lock
    from multiscale.output_set import recover

    override = getattr(args, "output", None)
    root = comm is None or comm.rank == 0
    with ExitStack() as stack:
        problem = None
        out = case.output_dir(override)
        if root:
            try:
                out = output_folder(case, override)
                stack.enter_context(
                    output_lock(
                        out,
                        where=output_where(case, override),
                        command=f"multiscale {verb} {args.case}",
                    )
                )
            except CaseError as err:
                problem = str(err)
            if problem is None:
                for line in recover(out):  # a run killed while writing its results
                    print(f"multiscale: note: {out}: {line}", file=sys.stderr)
        if comm is not None:
            problem = comm.bcast(problem, root=0)
        if problem is not None:
            raise CaseError(problem)
        yield out
