"""``multiscale run CASE --restart`` after a SIGKILL reproduces the uninterrupted history.

``cases/adaptive-refine`` on a smaller disk (80 Å) for two iterations: one run straight
through; another killed with SIGKILL once the checkpoint of iteration 1 is on disk (while it
refines and solves towards iteration 2), then restarted. Every column of ``history.csv`` but
the wall time must agree (the restart solves once from the checkpointed state, which is
already converged, so they agree far below the solver tolerance).
"""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
CASE = ROOT / "cases" / "adaptive-refine"
SETS = ["--set", "adaptivity.max_iterations=2", "--set", "geometry.radius=80"]


def command(out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "multiscale",
        "run",
        str(CASE),
        "--output",
        str(out),
        *SETS,
        *extra,
    ]


def environment() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def history(out: Path) -> list[dict[str, str]]:
    with open(out / "history.csv", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def kill_after_checkpoint(out: Path, iteration: int, timeout: float = 600.0) -> int:
    """Start a run, SIGKILL it once the checkpoint of ``iteration`` exists; its iteration."""
    proc = subprocess.Popen(
        command(out), env=environment(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    record = out / "adaptive" / "checkpoint" / "record.json"
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            time.sleep(0.1)
            if proc.poll() is not None:
                pytest.fail("the run finished before it could be killed")
            if record.exists():
                try:
                    reached = json.loads(record.read_text(encoding="utf-8"))["iteration"]
                except (json.JSONDecodeError, KeyError, OSError):
                    continue  # being replaced
                if reached >= iteration:
                    time.sleep(0.5)  # into the next iteration's work
                    return int(reached)
        pytest.fail("no checkpoint in time")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_restart_after_sigkill_reproduces_the_history(tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    done = subprocess.run(command(straight), env=environment(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    expected = history(straight)
    assert [row["iteration"] for row in expected] == ["0", "1", "2"]

    reached = kill_after_checkpoint(killed, 1)
    assert not (killed / "summary.json").exists()  # it really died before the end
    resumed = subprocess.run(
        command(killed, "--restart"), env=environment(), capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"from the checkpoint of adaptive iteration {reached}" in resumed.stderr
    got = history(killed)
    assert len(got) == len(expected)
    for want, row in zip(expected, got, strict=True):
        for key, value in want.items():
            if key == "wall_time_s":
                continue
            if key == "action" or value == "":
                assert row[key] == value, (key, row, want)
            else:
                np.testing.assert_allclose(float(row[key]), float(value), rtol=1e-7, err_msg=key)
    summary = json.loads((killed / "summary.json").read_text(encoding="utf-8"))
    assert summary["adaptivity"]["stop"] == "budget: max_iterations"


def test_restart_without_adaptivity_is_refused(tmp_path):
    case = ROOT / "cases" / "vacancy-cu"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "multiscale",
            "run",
            str(case),
            "--output",
            str(tmp_path),
            "--restart",
        ],
        env=environment(),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert "--restart continues an adaptive run" in done.stderr
    assert "case.toml" in done.stderr
