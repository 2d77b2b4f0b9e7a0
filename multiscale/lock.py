"""One writer per output: a lock file that names the run holding it.

``multiscale run`` and ``reference`` lock their output folder (``<folder>/.multiscale.lock``),
``train`` and ``dataset`` the file they write (``.<name>.lock`` beside it). The lock file is
created with ``O_CREAT | O_EXCL`` and holds the holder's pid, host, start time and command
line as JSON. A second run that meets a live lock is refused with a
:class:`~multiscale.errors.CaseError` that names the holder. A lock whose pid is no longer
alive on this host (a run killed with SIGKILL) is stale: it is taken over, with a one-line
notice on stderr. A lock from another host cannot be checked and is never taken over. The
lock is removed when the ``with`` block ends, however it ends.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from multiscale.errors import CaseError

__all__ = ["LOCK_NAME", "lock_path", "output_lock"]

#: Name of the lock file inside a locked output folder.
LOCK_NAME = ".multiscale.lock"


def lock_path(target: Path) -> Path:
    """The lock file of ``target``: inside it for a folder, beside it for a file."""
    if target.is_dir():
        return target / LOCK_NAME
    return target.parent / f".{target.name}.lock"


def _alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    return True


def _holder_text(holder: dict[str, Any]) -> str:
    command = holder.get("command")
    return f"pid {holder.get('pid')} on {holder.get('host')}, started {holder.get('started')}" + (
        f", '{command}'" if command else ""
    )


def _read(path: Path) -> dict[str, Any] | None:
    """The lock's content, or None when it vanished; an unreadable lock reads as ``{}``."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _create(path: Path, holder: dict[str, Any], where: str) -> bool:
    """Create the lock file; False if it exists already."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    except OSError as err:
        raise CaseError(
            f"{where}: cannot write in {path.parent} ({err.strerror}); choose a writable output"
        ) from None
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(holder, fh)
    return True


def _acquire(path: Path, holder: dict[str, Any], where: str) -> None:
    for _ in range(10):  # another run may take or free the lock between the steps
        if _create(path, holder, where):
            return
        other = _read(path)
        if other is None:
            continue
        pid = other.get("pid")
        if other.get("host") != holder["host"] or not isinstance(pid, int) or _alive(pid):
            if other.get("host") != holder["host"] and isinstance(pid, int):
                hint = f"; if that run is gone, remove {path}"
            elif not isinstance(pid, int):
                hint = f"; its lock file {path} is unreadable: remove it if no run is writing"
            else:
                hint = "; wait for it to finish or choose another output"
            raise CaseError(
                f"{where}: {path.parent} is being written by another multiscale run "
                f"({_holder_text(other)}){hint}"
            )
        stale = path.with_name(f"{path.name}.stale.{os.getpid()}")
        try:
            os.replace(path, stale)
        except FileNotFoundError:
            continue
        stale.unlink(missing_ok=True)
        print(
            f"multiscale: note: taking over the stale lock of {path.parent} "
            f"({_holder_text(other)}; that process is gone)",
            file=sys.stderr,
        )
    raise CaseError(f"{where}: could not lock {path.parent}: the lock keeps changing hands")


@contextmanager
def output_lock(
    target: Path, *, where: str, command: str, enabled: bool = True
) -> Iterator[Path | None]:
    """Hold the lock of ``target`` (an output folder, or an output file) for the block.

    Args:
        target: the folder (it must exist) or the file to be written.
        where: the option or key that named ``target`` (``--output``, ``output.directory``),
            for messages.
        command: what holds the lock, e.g. ``"multiscale run cases/void-cu-3d"``.
        enabled: False: take no lock (MPI ranks other than 0).

    Yields:
        The lock file, or None when not enabled.

    Raises:
        CaseError: another live run holds the lock, or the folder is not writable.
    """
    if not enabled:
        yield None
        return
    path = lock_path(target)
    holder = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "command": command,
    }
    _acquire(path, holder, where)
    try:
        yield path
    finally:
        mine = _read(path)
        if mine is not None and mine.get("pid") == holder["pid"]:
            path.unlink(missing_ok=True)
