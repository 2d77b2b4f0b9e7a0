"""The vacancy case under ``mpiexec -n 2``: the serial energy, and one writer.

Every rank of a vacancy case relaxes the same small periodic cell (the kind is not
distributed), so the answer must be the serial one bit for bit, and only rank 0 may print,
log or write: ``log.txt`` holds one run, stdout one result line.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CASE = ROOT / "cases" / "vacancy-cu"
MPIEXEC = Path(sys.executable).parent / "mpiexec"


def run(out: Path, ranks: int) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    prefix = [str(MPIEXEC), "-n", str(ranks)] if ranks > 1 else []
    command = [sys.executable, "-m", "multiscale", "run", str(CASE), "--output", str(out)]
    proc = subprocess.run(prefix + command, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.mark.skipif(not MPIEXEC.exists(), reason="mpiexec not installed")
def test_two_ranks_give_the_serial_energy_and_write_once(tmp_path):
    serial = run(tmp_path / "serial", 1)
    two = run(tmp_path / "two", 2)
    a = json.loads((tmp_path / "serial" / "summary.json").read_text())
    b = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert b["status"] == "converged"
    assert b["energy_eV"] == pytest.approx(a["energy_eV"], abs=1e-9)
    assert b["n_atoms"] == a["n_atoms"]
    # one writer: one result line on stdout, one run in the log
    assert two.stdout.count("vacancy formation energy:") == 1
    assert serial.stdout.count("vacancy formation energy:") == 1
    log = (tmp_path / "two" / "log.txt").read_text()
    assert log.count("=== run started") == 1
