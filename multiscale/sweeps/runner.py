"""Running the points of a sweep, each as ``multiscale run`` in its own process, and ``sweep.csv``.

A point whose ``summary.json`` records a finished run of its current problem is skipped
(:func:`~multiscale.sweeps.folders.completed_summary`). A point that fails is recorded (status
``failed``, the exit code and the last error line) and the others go on. After every point,
``sweep.csv`` is rewritten atomically with one row per point (``pending`` for those not yet
done, ``interrupted`` for those a Ctrl-C or a signal stopped), so it is complete and readable at
any moment.
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from multiscale.outputs import write_json, write_text
from multiscale.sweeps.folders import OUTPUT, completed_summary
from multiscale.sweeps.grid import Point

__all__ = ["SCALARS", "allow_points", "point_row", "run_point", "stop_points", "write_csv"]

#: Columns taken from each point's ``summary.json``: column → path of keys in the summary.
SCALARS: dict[str, tuple[str, ...]] = {
    "energy_eV": ("energy_eV",),
    "strain_error_rel": ("reference_error", "strain_error_rel"),
    "energy_error_rel": ("reference_error", "energy_error_rel"),
    "max_force_eV_per_A": ("max_force_eV_per_A",),
    "n_atoms": ("n_atoms",),
    "n_fe_dofs": ("n_fe_dofs",),
    "wall_time_s": ("wall_time_s",),
}

#: How ``multiscale`` starts its one-line error messages.
ERROR_PREFIX = "multiscale: error:"
#: The record of a point's last run, in its folder.
POINT_RECORD = "point.json"
#: What ``multiscale run`` printed for the point (appended to).
POINT_LOG = "run.log"


def _child_env(jobs: int) -> dict[str, str]:
    """The environment of a point's process: this ``multiscale`` first on the path."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    if jobs > 1 and "OMP_NUM_THREADS" not in env:
        # N processes at once share the cores instead of each taking them all
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // jobs))
    return env


def _error_line(log_text: str, code: int) -> str:
    """The last ``multiscale: error:`` message of a run's output, else its last line."""
    lines = [line.strip() for line in log_text.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(ERROR_PREFIX)]
    if errors:
        return errors[-1][len(ERROR_PREFIX) :].strip()
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return lines[-1] if lines else f"exit code {code}, no output"


_running: set[subprocess.Popen] = set()
_running_lock = threading.Lock()
_stopping = threading.Event()


def _wait(process: subprocess.Popen) -> int:
    """Wait for a point's process, which :func:`stop_points` may end meanwhile."""
    with _running_lock:
        _running.add(process)
        if _stopping.is_set():  # started after stop_points: it must not outlive the sweep
            process.terminate()
    try:
        return process.wait()
    finally:
        with _running_lock:
            _running.discard(process)


def stop_points() -> None:
    """Send SIGTERM to every point still running (an interrupted sweep stops them).

    Points started after this call are stopped as they start, until :func:`allow_points`.
    """
    with _running_lock:
        _stopping.set()
        for process in _running:
            process.terminate()


def allow_points() -> None:
    """Let points run again after :func:`stop_points` (a new sweep in the same process)."""
    _stopping.clear()


def run_point(folder: Path, *, jobs: int = 1, python: str | None = None) -> dict[str, Any]:
    """Run ``multiscale run <folder>`` in a new process and record how it ended.

    The output goes to ``<folder>/run.log`` (appended to); ``<folder>/point.json`` records
    the exit code, the last error line (empty on success) and the time taken.

    Args:
        folder: the point's folder (:func:`~multiscale.sweeps.folders.prepare_point`).
        jobs: how many points run at once (shares the CPU threads between them).
        python: the interpreter; this one by default.

    Returns:
        The record written to ``point.json``.
    """
    command = [python or sys.executable, "-m", "multiscale", "run", str(folder)]
    log = folder / POINT_LOG
    start = time.perf_counter()
    with log.open("a", encoding="utf-8") as fh:
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        fh.write(f"\n=== multiscale run {folder.name} at {stamp} ===\n")
        fh.flush()
        offset = fh.tell()
        code = _wait(
            subprocess.Popen(command, stdout=fh, stderr=subprocess.STDOUT, env=_child_env(jobs))
        )
    with log.open(encoding="utf-8", errors="replace") as fh:
        fh.seek(offset)
        text = fh.read()
    record = {
        "exit_code": code,
        "error": "" if code in (0, 3) else _error_line(text, code),
        "run_time_s": round(time.perf_counter() - start, 3),
        "finished": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
    }
    write_json(folder / POINT_RECORD, record)
    return record


def _scalar(summary: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = summary
    for key in path:
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def point_row(
    point: Point,
    folder: Path,
    *,
    action: str,
    record: Mapping[str, Any] | None = None,
    needs_reference: bool = False,
) -> dict[str, Any]:
    """The ``sweep.csv`` row of a point from its folder.

    Args:
        point: the point.
        folder: its folder.
        action: ``"ran"``, ``"skipped"`` (complete before this sweep), ``"pending"`` (not
            started) or ``"interrupted"`` (started, then stopped by Ctrl-C or a signal).
        record: the ``point.json`` of its last run (read from the folder when None).
        needs_reference: a summary without ``reference_error`` is not complete.

    Returns:
        ``point``, the grid values, ``status`` (``converged``, ``not_converged``, ``failed``,
        ``pending`` or ``interrupted``), ``action``, ``exit_code``, ``error``, ``run_time_s``
        and the :data:`SCALARS` of the summary (None when absent).
    """
    if action in ("pending", "interrupted"):
        record, summary = {}, None
    else:
        if record is None:
            record = _read_record(folder)
        summary = completed_summary(folder, needs_reference=needs_reference)
        if action == "ran" and record.get("exit_code") not in (0, 3):
            summary = None  # a failed run leaves the summary of an earlier problem, if any
    status = action if action in ("pending", "interrupted") else "failed"
    error = record.get("error") or ""
    if summary is not None:
        status, error = str(summary["status"]), ""
    elif status == "failed" and not error:
        error = f"no complete {OUTPUT}/summary.json"
    return {
        "point": point.name,
        **dict(point.values),
        "status": status,
        "action": action,
        "exit_code": record.get("exit_code"),
        "error": error,
        "run_time_s": record.get("run_time_s"),
        **{name: _scalar(summary or {}, path) for name, path in SCALARS.items()},
    }


def _read_record(folder: Path) -> dict[str, Any]:
    try:
        record = json.loads((folder / POINT_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _cell(value: Any) -> str:
    from multiscale.config.schema import toml_value

    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return toml_value(value)


def write_csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """Write the rows (all with the same columns) to ``path`` as CSV, atomically."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(list(rows[0]))
    for row in rows:
        writer.writerow([_cell(v) for v in row.values()])
    write_text(path, buffer.getvalue())
