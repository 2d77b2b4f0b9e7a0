"""``multiscale run CASE --restart`` after a SIGKILL reproduces the uninterrupted history.

``cases/adaptive-refine`` on a smaller disk (80 Å) for two iterations: one run straight
through; another killed with SIGKILL once the checkpoint of iteration 1 is on disk (while it
refines and solves towards iteration 2), then restarted. Every column of ``history.csv`` but
the wall time must agree (the restart solves once from the checkpointed state, which is
already converged, so they agree far below the solver tolerance).
"""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import assert_same_history, kill_and_restart, subprocess_environment

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


def history(out: Path) -> list[dict[str, str]]:
    with open(out / "history.csv", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_restart_after_sigkill_reproduces_the_history(tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    done = subprocess.run(
        command(straight), env=subprocess_environment(), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    expected = history(straight)
    assert [row["iteration"] for row in expected] == ["0", "1", "2"]

    kill_and_restart(command, killed, 1)
    assert_same_history(expected, history(killed))
    summary = json.loads((killed / "summary.json").read_text(encoding="utf-8"))
    assert summary["adaptivity"]["stop"] == "budget: max_iterations"


def test_restart_of_a_case_that_is_not_coupled_is_refused(tmp_path):
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
        env=subprocess_environment(),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert "--restart continues a coupled run" in done.stderr
    assert "case.toml" in done.stderr
