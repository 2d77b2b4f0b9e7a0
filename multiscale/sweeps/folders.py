"""The folder of one sweep point: a self-contained copy of the case with the point's values.

``<sweep>/<point>/`` holds every file of the case folder (potential files, READMEs...) except
its outputs and earlier sweeps, a ``case.toml`` with the ``--set`` and grid values written in
and ``output.directory = "output"``, and, with a reference, ``output/reference/``. It runs on
its own: ``multiscale run <sweep>/<point>``.

Files are copied only when missing or changed, and ``case.toml`` is rewritten only when its
text changes, so its modification time says when the point's problem last changed: a
``summary.json`` older than it belongs to another problem (:func:`completed_summary`).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from multiscale.config import CASE_FILE, Case, case_table
from multiscale.config.schema import toml_value
from multiscale.outputs import write_text

__all__ = [
    "COMPLETE",
    "OUTPUT",
    "completed_summary",
    "copy_reference",
    "point_case_text",
    "prepare_point",
]

#: Output folder of every point, inside its folder.
OUTPUT = "output"
#: ``summary.json`` statuses of a run that finished (converged or not); others run again.
COMPLETE = ("converged", "not_converged")
#: A folder holding this file is a sweep's output, never copied into a point.
SWEEP_MARK = "sweep.csv"


def point_case_text(case: Case, *, values: Mapping[str, Any], overrides: Sequence[str] = ()) -> str:
    """The text of a point's ``case.toml``: the case file with the overrides written in.

    A ``potential.file`` found relative to the case folder but outside it becomes an absolute
    path, so that the copy finds it; ``output.directory`` becomes ``"output"``.
    """
    point_overrides = [f"{k}={toml_value(v)}" for k, v in values.items()]
    table = case_table(case.file, overrides=[*overrides, *point_overrides])
    potential = table.get("potential", {}).get("file")
    if isinstance(potential, str):
        path = case.folder / potential
        if path.is_file() and not path.resolve().is_relative_to(case.folder.resolve()):
            table["potential"]["file"] = str(path.resolve())
    if "directory" in table.get("output", {}):
        table["output"]["directory"] = OUTPUT
    lines = [
        "# One point of a sweep, written by `multiscale sweep`: the case file",
        f"# {case.file.resolve()}",
        "# with these values (and any --set) written in:",
        *(f"#   {k} = {toml_value(v)}" for k, v in values.items()),
        "# Run it alone with: multiscale run <this folder>",
    ]
    return "\n".join(lines) + "\n" + _toml(table)


def _toml(table: Mapping[str, Any]) -> str:
    """TOML text of a case table: top-level values, then one ``[section]`` per sub-table."""
    lines = [f"{k} = {toml_value(v)}" for k, v in table.items() if not isinstance(v, Mapping)]
    for name, section in table.items():
        if isinstance(section, Mapping):
            lines += ["", f"[{name}]"]
            lines += [f"{k} = {toml_value(v)}" for k, v in section.items()]
    return "\n".join(lines) + "\n"


def prepare_point(case: Case, folder: Path, *, text: str, exclude: Sequence[Path]) -> None:
    """Make ``folder`` a copy of the case folder whose ``case.toml`` is ``text``.

    Args:
        case: the loaded case (its folder is copied).
        folder: the point's folder, created.
        text: the point's case file (:func:`point_case_text`); written only if it changed.
        exclude: folders not to copy (the case's output folder, the sweep's folder).
    """
    skip = {p.resolve() for p in exclude} | {case.file.resolve()}
    _copy_tree(case.folder, folder, skip=skip)
    target = folder / CASE_FILE
    if not target.is_file() or target.read_text(encoding="utf-8") != text:
        write_text(target, text)


def _copy_tree(source: Path, target: Path, *, skip: set[Path]) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for entry in sorted(source.iterdir()):
        if entry.resolve() in skip or entry.name.startswith("."):
            continue
        if entry.is_dir():
            if not (entry / SWEEP_MARK).exists():
                _copy_tree(entry, target / entry.name, skip=skip)
        elif entry.is_file():
            _copy_if_changed(entry, target / entry.name)


def _copy_if_changed(source: Path, target: Path) -> None:
    mine = source.stat()
    if target.is_file():
        theirs = target.stat()
        if (theirs.st_size, theirs.st_mtime_ns) == (mine.st_size, mine.st_mtime_ns):
            return
    tmp = target.with_name(f".{target.name}.copy.tmp")
    shutil.copy2(source, tmp)
    os.replace(tmp, target)


def copy_reference(reference: Path, folder: Path) -> None:
    """Copy a reference folder (from ``multiscale reference``) to ``folder/output/reference``."""
    _copy_tree(reference, folder / OUTPUT / "reference", skip=set())


def completed_summary(folder: Path, *, needs_reference: bool = False) -> dict[str, Any] | None:
    """The point's ``summary.json`` if it records a finished run of its current problem.

    Finished: ``status`` is one of :data:`COMPLETE`, the summary is not older than the point's
    ``case.toml`` and, with ``needs_reference``, it holds ``reference_error``.
    """
    file = folder / OUTPUT / "summary.json"
    try:
        summary = json.loads(file.read_text(encoding="utf-8"))
        newer = file.stat().st_mtime_ns >= (folder / CASE_FILE).stat().st_mtime_ns
    except (OSError, ValueError):
        return None
    if not isinstance(summary, dict) or summary.get("status") not in COMPLETE or not newer:
        return None
    if needs_reference and "reference_error" not in summary:
        return None
    return summary
