"""The adaptive loop under ``mpiexec -n 2`` takes the serial run's actions, with its counts,
estimates and energies.

``cases/adaptive-refine`` on a smaller disk (80 Å) for two iterations: iteration 0 refines,
iteration 1 refines and grows the atoms, so refinement (cells mapped to their parents on
each rank), Dörfler marking over the ranks and region growth are all collective here.
"""

import csv
from pathlib import Path

import numpy as np
import pytest
from conftest import MPIEXEC, run_on_ranks

ROOT = Path(__file__).resolve().parents[1]
CASE = ROOT / "cases" / "adaptive-refine"
SETS = ["--set", "adaptivity.max_iterations=2", "--set", "geometry.radius=80"]


def run(out: Path, ranks: int) -> list[dict[str, str]]:
    run_on_ranks(CASE, out, ranks, extra=SETS)
    with open(out / "history.csv", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.mark.skipif(not MPIEXEC.exists(), reason="mpiexec not installed")
def test_two_ranks_take_the_serial_actions_with_its_counts_and_energies(tmp_path):
    serial, parallel = run(tmp_path / "serial", 1), run(tmp_path / "two", 2)
    assert [r["action"] for r in serial] == ["refine", "refine+expand", "stop"]
    assert len(parallel) == len(serial)
    for a, b in zip(serial, parallel, strict=True):
        for key in ("iteration", "action", "n_atoms", "n_fe_dofs", "n_dof", "oracle_calls"):
            assert b[key] == a[key], (a["iteration"], key)
        np.testing.assert_allclose(float(b["energy_eV"]), float(a["energy_eV"]), rtol=1e-9)
        for key in ("eta_fe", "eta_model", "eta_ml", "eta_trunc", "eta_total"):
            np.testing.assert_allclose(float(b[key]), float(a[key]), rtol=1e-6, atol=1e-12)
