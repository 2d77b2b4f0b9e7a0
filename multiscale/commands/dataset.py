"""``multiscale dataset CONFIG``: generate configurations, label them with an oracle, write.

The config file is described in ``docs/dataset.md``. The extended XYZ file is written
atomically once every frame is labelled, so a failed or interrupted run leaves no partial
file (and, with ``--append``, the existing dataset untouched).
"""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "generate configurations, label them with an oracle and write an extxyz dataset"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``dataset``."""
    parser.add_argument("config", metavar="CONFIG", help="dataset config file (TOML)")
    parser.add_argument(
        "--append",
        action="store_true",
        help="append the new frames to an existing dataset instead of replacing it",
    )
    parser.add_argument(
        "--output",
        metavar="PATH",
        default=None,
        help="write here instead of [output] path (relative to the current folder)",
    )


def _check_output(out: Path, *, where: str, append: bool) -> None:
    """Refuse a bad dataset output before any labelling.

    A folder, a path below a file, or (with ``--append``) a file that is not a dataset.

    Raises:
        CaseError: naming ``where`` (``--output`` or ``output.path``).
    """
    from atomistic.mlip.dataset import DatasetError, read_dataset
    from multiscale.errors import CaseError

    if out.is_dir():
        raise CaseError(f"{where}: {out} is a folder; give the dataset's file name (.extxyz)")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise CaseError(f"{where}: {parent} is a file, not a folder")
            break
    if append and out.exists():
        try:
            read_dataset(out)
        except (DatasetError, OSError) as err:
            raise CaseError(f"{where}: --append onto a file that is not a dataset: {err}") from None


def main(args: argparse.Namespace) -> int:
    """Load the config, build the oracle, generate, label, write, print a summary."""
    from multiscale.config.dataset import load_dataset_config
    from multiscale.errors import CaseError

    config = load_dataset_config(args.config)
    where = (
        f"--output {args.output!r}" if args.output is not None else f"{config.file}: output.path"
    )
    if args.output is not None and not args.output.strip():
        raise CaseError(f"{where}: empty; give a file name")
    out = Path(args.output).resolve() if args.output is not None else config.output_path
    _check_output(out, where=where, append=args.append)

    from atomistic.mlip.dataset import append_dataset, label_all, write_dataset
    from multiscale.dataset_build import build_oracle, generate, summary
    from multiscale.lock import output_lock
    from multiscale.progress import Reporter

    calculator, oracle_name = build_oracle(config)
    out.parent.mkdir(parents=True, exist_ok=True)
    with (
        output_lock(out, where=where, command=f"multiscale dataset {args.config}"),
        Reporter() as reporter,
    ):
        counts = config.counts()
        total = sum(counts.values())
        reporter.info(
            f"dataset: {total} configurations ("
            + ", ".join(f"{k} {n}" for k, n in counts.items())
            + f"), oracle {oracle_name}, seed {config.seed}"
        )
        configurations = generate(config, calculator)
        reporter.info(f"generated {total} configurations in {reporter.elapsed:.1f} s")
        step = max(1, total // 10)

        def progress(k: int) -> None:
            if k % step == 0 or k == total:
                reporter.info(f"labelled {k}/{total}  elapsed {reporter.elapsed:.1f} s")

        frames = label_all(configurations, calculator, oracle=oracle_name, progress=progress)
        (append_dataset if args.append else write_dataset)(out, frames)
        print(summary(out, frames, elapsed=reporter.elapsed, appended=args.append))
    return 0
