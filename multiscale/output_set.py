"""The results of a run replace the previous ones as a set, never file by file.

A finished run writes its results (summary, atoms, continuum fields, ``iterations.csv``, a
reference's folder) into ``OUT/.incoming/`` first. Once every file is there, the marker
``.incoming/COMPLETE`` is written and the entries are moved into ``OUT`` one by one (a
folder that is replaced goes to ``OUT/.outgoing/`` first and is deleted at the end).

A run killed at any point therefore leaves one of three states, and the next run into the
folder (under its lock, before it does anything else) repairs it with :func:`recover`:

- no marker: the new results were incomplete. ``.incoming/`` is deleted; ``OUT`` still
  holds the previous results, untouched;
- the marker: the new results were complete. The move is finished (roll forward); the
  folder then holds the new results only;
- ``.outgoing/`` left over: deleted.

The same holds one level down (``OUT/reference/.incoming/``: ``multiscale reference``
replaces its three result files as a set and keeps appending to its ``log.txt``).

Temporary files of :func:`multiscale.outputs.atomic_file` that a killed run left behind
(``.NAME.*.tmp``) are deleted as well. ``log.txt`` (appended to), the adaptive loop's
per-iteration files and the checkpoints (``checkpoint/`` after every load step,
``adaptive/checkpoint/`` every iteration, for ``--restart``) are not part of the set.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["INCOMING", "recover", "staged"]

#: Where a run's results are assembled before they replace the previous ones.
INCOMING = ".incoming"
_OUTGOING = ".outgoing"
_MARKER = "COMPLETE"


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _commit(out: Path) -> None:
    """Move every entry of ``out/.incoming`` into ``out`` (idempotent: resumes a killed move)."""
    incoming, outgoing = out / INCOMING, out / _OUTGOING
    for entry in sorted(incoming.iterdir()):
        if entry.name == _MARKER:
            continue
        target = out / entry.name
        if entry.is_dir() and target.exists():
            # A folder cannot replace another in one rename: set the old one aside first.
            outgoing.mkdir(exist_ok=True)
            aside = outgoing / entry.name
            _remove(aside)
            os.replace(target, aside)
        os.replace(entry, target)
    _remove(outgoing)
    (incoming / _MARKER).unlink(missing_ok=True)
    incoming.rmdir()


def recover(out: Path) -> list[str]:
    """Repair ``out`` after a run that was killed while writing its results (rank 0 only).

    Returns:
        One line per repair made (empty when there was nothing to do), for the log.
    """
    done: list[str] = []
    folders = [out, *(p for p in out.iterdir() if p.is_dir())] if out.is_dir() else []
    for folder in folders:
        where = "" if folder == out else f" in {folder.name}/"
        incoming = folder / INCOMING
        if incoming.is_dir():
            if (incoming / _MARKER).exists():
                _commit(folder)
                done.append(
                    f"finished moving the complete results of an interrupted run into place{where}"
                )
            else:
                shutil.rmtree(incoming)
                done.append(f"removed the incomplete results of an interrupted run{where}")
        if (folder / _OUTGOING).exists():
            _remove(folder / _OUTGOING)
            done.append(f"removed the replaced results of an interrupted run{where}")
    if out.is_dir():
        for tmp in out.rglob(".*.tmp"):
            if tmp.is_file():
                tmp.unlink(missing_ok=True)
                done.append(f"removed the temporary file {tmp.relative_to(out)}")
    return done


@contextmanager
def staged(out: Path, *, comm: Any = None) -> Iterator[Path]:
    """Yield ``out/.incoming`` (empty) to write the results into; commit them on success.

    Collective under MPI: rank 0 prepares and commits, every rank may write (the continuum
    fields are a collective write), with barriers in between. On an exception the staged
    files are deleted and ``out`` keeps the previous results.
    """
    root = comm is None or comm.rank == 0
    incoming = out / INCOMING
    if root:
        _remove(incoming)
        incoming.mkdir(parents=True)
    if comm is not None:
        comm.Barrier()
    try:
        yield incoming
    except BaseException:
        if root:
            shutil.rmtree(incoming, ignore_errors=True)
        raise
    if comm is not None:
        comm.Barrier()
    if root:
        marker = incoming / _MARKER
        marker.write_text("complete\n", encoding="utf-8")
        with open(marker, "rb") as fh:
            os.fsync(fh.fileno())
        _commit(out)
    if comm is not None:
        comm.Barrier()
