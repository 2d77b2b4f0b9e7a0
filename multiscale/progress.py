"""What the user sees while a case runs: messages, a progress line, and ``log.txt``.

Messages go to stderr and to the log. Progress of an iterative solver is a single line that
is redrawn in place when stderr is a terminal, and a plain line every ``interval`` seconds
otherwise (a batch job's log then stays readable); the log gets one line every
``log_every`` steps. ``log.txt`` is appended to, so the logs of earlier runs are kept.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import IO

__all__ = ["Reporter"]


class Reporter:
    """Messages and progress for one run.

    Args:
        log_path: the log file (appended to), or None for no log.
        stream: where messages and progress go (stderr by default).
        interval: seconds between plain progress lines when ``stream`` is not a terminal.
        log_every: steps between progress lines in the log.
        enabled: False makes every method a no-op (MPI ranks other than 0).
    """

    def __init__(
        self,
        log_path: Path | None = None,
        *,
        stream: IO[str] | None = None,
        interval: float = 10.0,
        log_every: int = 50,
        enabled: bool = True,
    ) -> None:
        self.enabled = enabled
        self.log_path = log_path if enabled else None
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval = interval
        self.log_every = log_every
        self._log: IO[str] | None = None
        self._start = time.perf_counter()
        self._last_draw = -float("inf")
        self._live = False

    def __enter__(self) -> Reporter:
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = self.log_path.open("a", encoding="utf-8", buffering=1)
            stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
            self._log.write(f"\n=== run started {stamp} ===\n")
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._clear()
        if error is not None:
            self.log(f"run failed: {type(error).__name__}: {error}")
        if self._log is not None:
            self._log.close()
            self._log = None

    @property
    def elapsed(self) -> float:
        """Seconds since the reporter was made."""
        return time.perf_counter() - self._start

    def log(self, message: str) -> None:
        """Write a line to the log only."""
        if self._log is not None:
            for line in message.splitlines() or [""]:
                self._log.write(f"[{self.elapsed:9.2f} s] {line}\n")

    def info(self, message: str) -> None:
        """Show a message on the stream and write it to the log."""
        if not self.enabled:
            return
        self._clear()
        print(message, file=self.stream, flush=True)
        self.log(message)

    def progress(self, label: str, step: int, energy: float, max_force: float) -> None:
        """Report one step of an iterative solver (a ``relax`` progress callback).

        Args:
            label: what is being solved, e.g. ``"relax vacancy"``.
            step: force evaluations so far.
            energy: current energy in eV.
            max_force: current largest force norm in eV/Å.
        """
        if not self.enabled:
            return
        line = f"{label}: step {step:6d}  E = {energy:.8f} eV  max|F| = {max_force:.2e} eV/Å"
        if step % self.log_every == 0:
            self.log(line)
        now = time.perf_counter()
        if self.tty and now - self._last_draw >= 0.1:
            self.stream.write("\r\033[K" + line)
            self.stream.flush()
            self._live = True
            self._last_draw = now
        elif not self.tty and now - self._last_draw >= self.interval:
            if self._last_draw > -float("inf"):
                print(line, file=self.stream, flush=True)
            self._last_draw = now

    def _clear(self) -> None:
        if self._live:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self._live = False
        # A new solve starts its own interval for plain progress lines.
        self._last_draw = -float("inf")
