"""Output files, each written atomically: to a temporary file beside it, then ``os.replace``.

A reader (or a run that dies half-way) therefore sees either the old file or the new one,
never a torn one, and a failed run leaves the outputs of the last good run in place.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from multiscale.config import Case
from multiscale.config.schema import toml_value

__all__ = ["atomic_file", "resolved_toml", "write_extxyz", "write_json", "write_text"]


@contextmanager
def atomic_file(path: Path, mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temporary file next to ``path``; on success it replaces ``path``.

    On an exception the temporary file is removed and ``path`` is left untouched.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_file(path) as fh:
        fh.write(text)


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Write ``data`` as indented JSON atomically."""
    write_text(path, json.dumps(data, indent=2, allow_nan=True) + "\n")


def print_json(data: Mapping[str, Any], path: str | Path | None = None) -> None:
    """Print ``data`` as indented JSON on stdout and, with ``path``, write it there too.

    The file is written atomically; this is what the benchmarks do with their result.
    """
    text = json.dumps(data, indent=1, ensure_ascii=False) + "\n"
    sys.stdout.write(text)
    sys.stdout.flush()
    if path is not None:
        write_text(Path(path), text)


def write_extxyz(path: Path, atoms: Any, *, results: Mapping[str, Any]) -> None:
    """Write atoms as extended XYZ (OVITO, ASE) atomically.

    Args:
        path: the ``.extxyz`` file.
        atoms: ASE ``Atoms``; per-atom arrays such as ``region`` are written as columns.
        results: calculator results to store: ``energy`` (eV), ``forces`` ``(n, 3)`` eV/Å,
            ``energies`` ``(n,)`` eV, ``stress`` (Voigt, eV/Å³) as available.
    """
    import ase.io
    from ase.calculators.singlepoint import SinglePointCalculator

    out = atoms.copy()
    out.info = {k: v for k, v in atoms.info.items() if isinstance(v, str | int | float)}
    out.calc = SinglePointCalculator(out, **results)
    with atomic_file(path) as fh:
        # parallel=False: only the calling rank writes (ASE would broadcast to the others)
        ase.io.write(fh, out, format="extxyz", parallel=False)


def resolved_toml(
    case: Case,
    *,
    values: Mapping[str, Any] | None = None,
    notes: Mapping[str, str] | None = None,
    version: str = "",
) -> str:
    """Text of ``case.resolved.toml``: every parameter used, with its origin as a comment.

    Args:
        case: the loaded case.
        values: dotted key → value written instead of the configured one (e.g. the absolute
            path of the potential file).
        notes: dotted key → extra comment (e.g. the relaxed lattice constant).
        version: the multiscale version, for the header.
    """
    values = values or {}
    notes = notes or {}
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    lines = [
        "# Every parameter of this run, with its origin: user (the case file), default",
        "# (built in), --set (command line). Run it again with: multiscale run <this file>",
        f"# case file: {case.file.resolve()}",
        f"# written by multiscale {version} at {stamp}",
    ]
    for name, section in case.config.sections():
        lines += ["", f"[{name}]"]
        units = {f.name: f.metadata.get("unit") for f in dataclasses.fields(section)}
        for field, value in vars(section).items():
            key = f"{name}.{field}"
            comment = case.origins.get(key, "default")
            if units.get(field):
                comment += f"; {units[field]}"
            if key in values:
                comment += f"; given as {toml_value(value)}"
                value = values[key]
            if key in notes:
                comment += f"; {notes[key]}"
            if value is None:  # a key the other choices use (e.g. radius of a ball)
                lines.append(f"# {field}: not used  # {comment}")
                continue
            lines.append(f"{field} = {toml_value(value)}  # {comment}")
    return "\n".join(lines) + "\n"
