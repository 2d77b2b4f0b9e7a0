"""Parameter sweeps: one case run at every point of a grid of case-file values.

``multiscale sweep CASE --grid key=v1,v2 --grid other=a,b`` and :func:`sweep` (also
``multiscale.sweep``) do the same thing:

1. every point of the grid (the product of the values, the first key varying slowest) is
   validated against the case schema before anything runs (:mod:`.grid`);
2. each point gets its own folder, ``<output>/<key=value,...>/``: a copy of the case folder
   whose ``case.toml`` has the point's values written in (:mod:`.folders`);
3. each point whose ``output/summary.json`` does not already record a finished run of that
   problem runs as ``multiscale run <folder>`` in its own process, ``jobs`` at a time; a
   point that fails is recorded and the others go on (:mod:`.runner`);
4. ``<output>/sweep.csv`` gets one row per point: the grid values, ``status``, ``action``
   (``ran`` or ``skipped``), ``exit_code``, ``error``, the run's time and the summary's main
   scalars (:data:`~multiscale.sweeps.runner.SCALARS`). It is rewritten atomically after
   every point.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from multiscale.config import find_case_file, load_case
from multiscale.errors import CaseError
from multiscale.sweeps.folders import (
    completed_summary,
    copy_reference,
    point_case_text,
    prepare_point,
)
from multiscale.sweeps.grid import Point, grid_points, parse_grid_option, validate_points
from multiscale.sweeps.runner import (
    SCALARS,
    allow_points,
    point_row,
    run_point,
    stop_points,
    write_csv,
)

__all__ = [
    "CSV_FILE",
    "SCALARS",
    "Point",
    "grid_points",
    "parse_grid_option",
    "sweep",
    "sweep_folder",
]

#: The table of results, in the sweep's folder.
CSV_FILE = "sweep.csv"


def sweep(
    case: str | Path,
    grid: Mapping[str, Sequence[Any]],
    *,
    output: str | Path | None = None,
    jobs: int = 1,
    overrides: Sequence[str] = (),
    reference: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Run a case at every point of a grid of case-file values and collect ``sweep.csv``.

    Example::

        rows = multiscale.sweep(
            "cases/vacancy-cu",
            {"lattice.size": [[3, 3, 3], [4, 4, 4]], "relax.method": ["lbfgs", "fire"]},
            output="vacancy-sweep",
            jobs=2,
        )

    Args:
        case: the case folder (or case file).
        grid: dotted case-file key → the values to try (numbers, strings, lists as in TOML).
        output: the sweep's folder; ``<case folder>/sweep`` by default.
        jobs: points run at once, each in its own process.
        overrides: ``"key=value"`` strings applied to every point, as ``--set``.
        reference: a fully atomistic reference folder (``<output>/reference`` written by
            ``multiscale reference``) copied into every point, whose summary then gets
            ``reference_error`` (``strain_error_rel``...); only for coupled cases whose grid
            leaves the reference's problem (domain, defect, strain) unchanged.
        progress: called with one line per finished point (e.g. ``print``).

    Returns:
        One row per point, in grid order (the rows of ``sweep.csv``).

    Raises:
        CaseError: the case, a grid key or value, an override, the output folder or the
            reference is wrong; nothing has run then.
    """
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise CaseError(f"--jobs: must be an integer >= 1, got {jobs!r}")
    base = load_case(case, overrides=overrides)
    points = grid_points(grid, overrides=overrides)
    validate_points(case, points, overrides=overrides)
    ref = _reference_folder(reference)
    out = _make_folder(sweep_folder(case, output))
    texts = [point_case_text(base, values=p.values, overrides=overrides) for p in points]
    for point, text in zip(points, texts, strict=True):
        prepare_point(base, out / point.name, text=text, exclude=[base.output_dir(), out])
        if ref is not None:
            copy_reference(ref, out / point.name)
    return _run_points(points, out, jobs=jobs, needs_reference=ref is not None, report=progress)


def _reference_folder(reference: str | Path | None) -> Path | None:
    """The reference folder: the one given, or its ``reference/`` (an output folder)."""
    if reference is None:
        return None
    folder = Path(reference)
    if not (folder / "summary.json").is_file() and (folder / "reference").is_dir():
        folder = folder / "reference"
    if not (folder / "summary.json").is_file() or not (folder / "atoms.extxyz").is_file():
        raise CaseError(
            f"--reference {reference}: no summary.json and atoms.extxyz there (a folder "
            "written by `multiscale reference CASE`, e.g. CASE/output/reference)"
        )
    return folder


def sweep_folder(case: str | Path, output: str | Path | None = None) -> Path:
    """The sweep's folder: ``output``, else ``sweep`` in the case folder.

    Raises:
        CaseError: ``output`` is an empty name, or there is no case at ``case``.
    """
    if output is not None and not str(output).strip():
        raise CaseError("--output: an empty folder name")
    return Path(output) if output is not None else find_case_file(case).parent / "sweep"


def _make_folder(out: Path) -> Path:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CaseError(
            f"--output: cannot create the sweep folder {out} ({err.strerror})"
        ) from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise CaseError(f"--output: the sweep folder {out} is not writable")
    return out


#: How often (s) the sweep's main thread wakes while points run, to act on Ctrl-C.
POLL_S = 0.2


def _run_points(
    points: Sequence[Point],
    out: Path,
    *,
    jobs: int,
    needs_reference: bool,
    report: Callable[[str], None] | None,
) -> list[dict[str, Any]]:
    """Skip the complete points, run the others ``jobs`` at a time, keep ``sweep.csv`` current."""
    allow_points()
    rows = [point_row(p, out / p.name, action="pending") for p in points]
    todo, done = [], 0
    for i, point in enumerate(points):
        if completed_summary(out / point.name, needs_reference=needs_reference) is None:
            todo.append(i)
            continue
        rows[i] = point_row(point, out / point.name, action="skipped")
        done += 1
        _report(report, rows[i], done, len(points))
    write_csv(out / CSV_FILE, rows)
    began: set[int] = set()  # points a worker has started (set.add is atomic)
    recorded: set[int] = set()  # points whose end is in ``rows``

    def start(i: int) -> dict[str, Any]:
        began.add(i)
        return run_point(out / points[i].name, jobs=jobs)

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        running: dict[Future, int] = {}
        try:
            for i in todo:
                running[pool.submit(start, i)] = i
            while running:
                # with a timeout: the kernel may hand Ctrl-C to a worker thread, and then only
                # a main thread that comes back to Python code runs the interrupt
                finished, _ = wait(running, timeout=POLL_S, return_when=FIRST_COMPLETED)
                for future in finished:
                    i = running.pop(future)
                    rows[i] = point_row(
                        points[i],
                        out / points[i].name,
                        action="ran",
                        record=future.result(),
                        needs_reference=needs_reference,
                    )
                    recorded.add(i)
                    done += 1
                    write_csv(out / CSV_FILE, rows)
                    _report(report, rows[i], done, len(points))
        except BaseException:  # Ctrl-C: no new points, and the running ones are stopped
            pool.shutdown(wait=False, cancel_futures=True)
            stop_points()
            for i in sorted(began - recorded):
                rows[i] = point_row(points[i], out / points[i].name, action="interrupted")
            write_csv(out / CSV_FILE, rows)
            raise
    return rows


def _report(report: Callable[[str], None] | None, row: Mapping[str, Any], k: int, n: int) -> None:
    """One line per finished point: ``sweep: [k/n] point: status, details``."""
    if report is None:
        return
    details = []
    if row["status"] == "failed":
        details.append(f"exit code {row['exit_code']}: {row['error']}")
    if row["energy_eV"] is not None:
        details.append(f"energy {row['energy_eV']:.6g} eV")
    if row["strain_error_rel"] is not None:
        details.append(f"strain error {100 * row['strain_error_rel']:.3g} %")
    if row["action"] == "ran" and row["run_time_s"] is not None:
        details.append(f"{row['run_time_s']:.1f} s")
    skipped = " (already complete, skipped)" if row["action"] == "skipped" else ""
    head = f"sweep: [{k}/{n}] {row['point']}: {row['status']}{skipped}"
    report(head + "".join(f", {d}" for d in details))
