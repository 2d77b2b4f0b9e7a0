"""What the user sees while a case runs: messages, a progress line, and ``log.txt``.

Messages go to stderr and to the log. Progress of an iterative solver is a single line that
is redrawn in place when stderr is a terminal, and a plain line every ``interval`` seconds
otherwise (a batch job's log then stays readable); the log gets one line every
``log_every`` steps. ``log.txt`` is appended to, so the logs of earlier runs are kept.

Every progress step is also kept as a row of :attr:`Reporter.iterations` (one per Newton
iteration or force evaluation, numbered by solve), which ``multiscale run`` writes to
``iterations.csv`` (:meth:`Reporter.iterations_csv`) and ``plots/solver.png`` shows.
"""

from __future__ import annotations

import csv
import io
import sys
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Any

__all__ = ["ITERATION_COLUMNS", "Reporter"]

#: The first columns of ``iterations.csv``; the ``parts`` of :meth:`Reporter.progress`
#: (e.g. the atom force and the FE residual of a coupled solve) follow.
ITERATION_COLUMNS = ("solve", "label", "iteration", "energy_eV", "max_force_eV_per_A")


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
        #: one row per progress step: the columns of :data:`ITERATION_COLUMNS` and the parts
        self.iterations: list[dict[str, Any]] = []

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

    def progress(
        self,
        label: str,
        step: int,
        energy: float,
        max_force: float,
        *,
        parts: Mapping[str, float] | None = None,
    ) -> None:
        """Report one step of an iterative solver (a ``relax`` progress callback).

        The step is also kept in :attr:`iterations`; a new solve starts when the label
        changes or the step number does not grow.

        Args:
            label: what is being solved, e.g. ``"relax vacancy"``.
            step: force evaluations (or Newton iterations) so far.
            energy: current energy in eV.
            max_force: current largest force norm in eV/Å.
            parts: more columns for :attr:`iterations` (name with its unit → value), e.g.
                ``{"max_atom_force_eV_per_A": ..., "max_fe_residual_eV_per_A": ...}``.
        """
        if not self.enabled:
            return
        self._keep(label, step, energy, max_force, parts or {})
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

    def _keep(
        self, label: str, step: int, energy: float, max_force: float, parts: Mapping[str, float]
    ) -> None:
        last = self.iterations[-1] if self.iterations else None
        solve = 1
        if last is not None:
            same = last["label"] == label and step > last["iteration"]
            solve = last["solve"] + (0 if same else 1)
        row = dict(zip(ITERATION_COLUMNS, (solve, label, step, energy, max_force), strict=True))
        self.iterations.append(row | dict(parts))

    def iterations_csv(self) -> str:
        """The text of ``iterations.csv``: :attr:`iterations`, floats round-trip exact."""
        columns = list(ITERATION_COLUMNS)
        for row in self.iterations:
            columns += [k for k in row if k not in columns]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for row in self.iterations:
            writer.writerow({k: _text(v) for k, v in row.items()})
        return buffer.getvalue()

    def _clear(self) -> None:
        if self._live:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self._live = False
        # A new solve starts its own interval for plain progress lines.
        self._last_draw = -float("inf")


def _text(value: Any) -> Any:
    """A float as the shortest text that reads back to the same number."""
    return repr(float(value)) if isinstance(value, float) else value
