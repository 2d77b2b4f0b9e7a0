"""The vacancy case under ``mpiexec -n 2``: the serial energy, and one writer.

Every rank of a vacancy case relaxes the same small periodic cell (the kind is not
distributed), so the answer must be the serial one bit for bit, and only rank 0 may print,
log or write: ``log.txt`` holds one run, stdout one result line.
"""

import json
import subprocess
from pathlib import Path

import pytest
from conftest import MPIEXEC, run_on_ranks

ROOT = Path(__file__).resolve().parents[1]
CASE = ROOT / "cases" / "vacancy-cu"


def run(out: Path, ranks: int) -> subprocess.CompletedProcess:
    return run_on_ranks(CASE, out, ranks, timeout=300)


@pytest.mark.skipif(not MPIEXEC.exists(), reason="mpiexec not installed")
def test_two_ranks_give_the_serial_energy_and_write_once(tmp_path):
    serial = run(tmp_path / "serial", 1)
    two = run(tmp_path / "two", 2)
    a = json.loads((tmp_path / "serial" / "summary.json").read_text())
    b = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert b["status"] == "converged"
    assert b["energy_eV"] == pytest.approx(a["energy_eV"], abs=1e-9)
    assert b["n_atoms"] == a["n_atoms"]
    assert (a["mpi_ranks"], b["mpi_ranks"]) == (1, 2)
    # one writer: one result line on stdout, one run in the log
    assert two.stdout.count("vacancy formation energy:") == 1
    assert serial.stdout.count("vacancy formation energy:") == 1
    log = (tmp_path / "two" / "log.txt").read_text()
    assert log.count("=== run started") == 1
