"""``bench/convergence.py --quick`` on a tiny 2.5D void: the JSON contract of the table and an
error that falls as the atomistic core grows (timings are not asserted)."""

import json
import math
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]

TINY_VOID = """
[case]
kind = "coupled"
dimension = "2.5d"

[lattice]
structure = "fcc"
element = "Cu"
a = 3.614925

[potential]
file = "Cu_mishin1.eam.alloy"

[geometry]
outer = "disk"
radius = 48.0
core_radius = 14.2

[defect]
kind = "void"
radius = 3.0

[boundary]
strain = [[0.01, 0.0, 0.0], [0.0, -0.005, 0.0], [0.0, 0.0, 0.0]]

[solver]
fmax = 1e-6
"""

ROW_KEYS = {
    "R",
    "n_atoms",
    "n_fe_dofs",
    "n_dof",
    "energy_error_eV",
    "strain_error_rel",
    "strain_error_interior_rel",
    "wall_time_s",
    "speedup_vs_reference",
    "atom_ratio",
    "atomistic_time_at_matched_error_s",
    "speedup_at_matched_error",
    "matched_error_how",
}


def test_convergence_bench_quick(tmp_path):
    case = tmp_path / "tiny-void"
    case.mkdir()
    (case / "case.toml").write_text(TINY_VOID)
    out = tmp_path / "convergence.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "convergence.py"), str(case), "--quick"]
        + ["--work", str(tmp_path / "work"), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert json.loads(out.read_text()) == result
    assert {"rows", "reference_n_atoms", "rate_strain_vs_dof", "truncated", "targets"} <= set(
        result
    )

    rows = result["rows"]
    assert len(rows) >= 4
    for row in rows:
        assert ROW_KEYS <= set(row), ROW_KEYS - set(row)
        assert row["converged"]
        assert 0 < row["n_atoms"] < result["reference_n_atoms"]
        assert row["n_fe_dofs"] > 0 and row["wall_time_s"] > 0
        assert row["speedup_vs_reference"] == result["reference_wall_time_s"] / row["wall_time_s"]
        share = row["strain_error_share"]
        assert set(share) == {"core", "handshake", "pad", "continuum"}
        assert sum(share.values()) == pytest.approx(1.0, abs=1e-12)
        assert all(v >= 0 for v in share.values())
        assert "partial_positions_A" not in row  # a void has none
    radii = [r["R"] for r in rows]
    assert radii == sorted(radii) and len(set(radii)) == len(radii)
    assert [r["n_atoms"] for r in rows] == sorted(r["n_atoms"] for r in rows)

    # the error falls as the core grows, at a clear rate (measured: about -1 for this case)
    errors = [r["strain_error_rel"] for r in rows]
    assert all(0 < e < 0.1 for e in errors), errors
    assert all(b < a for a, b in zip(errors, errors[1:], strict=False)), errors
    assert errors[-1] < 0.85 * errors[0], errors
    assert result["rate_strain_vs_dof"] < -0.3, result["rate_strain_vs_dof"]

    # truncated atomistic solves: smaller domains are worse; matched-error times are defined
    truncated = result["truncated"]
    assert len(truncated) == 2
    assert truncated[0]["n_atoms"] < truncated[1]["n_atoms"] < result["reference_n_atoms"]
    assert truncated[0]["strain_error_rel"] > truncated[1]["strain_error_rel"] > 0
    for row in rows:
        assert row["matched_error_how"] in {"interpolated", "extrapolated", "capped_at_reference"}
        assert math.isfinite(row["speedup_at_matched_error"])
    assert result["reference_cached"] is False

    assert {r["linear_solver"] for r in rows} == {"mumps"}  # "auto" on a 2D mesh

    # a second run reuses the reference and the truncated solves; --set reaches the solver
    again = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "convergence.py"), str(case), "--quick"]
        + ["--work", str(tmp_path / "work"), "--radii", *map(str, radii[:2])]
        + ["--set", "solver.linear_solver=gamg"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    cached = json.loads(again.stdout)
    assert cached["reference_cached"] and all(t["cached"] for t in cached["truncated"])
    assert cached["reference_wall_time_s"] == result["reference_wall_time_s"]
    assert {r["linear_solver"] for r in cached["rows"]} == {"gamg"}
    # the coupled rows are solved again, with another preconditioner: equal to the solver's
    # tolerance, not bit for bit
    assert [r["strain_error_rel"] for r in cached["rows"]] == pytest.approx(errors[:2], rel=1e-4)
