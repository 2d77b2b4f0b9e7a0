"""Benchmarks run in a quick smoke mode, so they cannot rot (timings are not asserted)."""

import json
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_throughput_benchmark_smoke(tmp_path):
    out = tmp_path / "rows.json"
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "throughput.py"),
            "--sizes",
            "256",
            "--seconds",
            "0.2",
            "--json",
            str(out),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    rows = json.loads(out.read_text())["rows"]
    codes = {(r["code"], r["device"]) for r in rows}
    assert ("lammps", "cpu") in codes and ("multiscale-torch", "cpu") in codes
    assert all(r["atom_steps_per_s"] > 0 and r["n_atoms"] == 256 for r in rows)


def test_time_to_solution_benchmark_smoke(tmp_path):
    """A small dislocation: LAMMPS on the domain, then the coupled run against it."""
    out = tmp_path / "tts.json"
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "time_to_solution.py"),
            str(ROOT / "cases" / "edge-dislocation-cu"),
            "--size",
            "40",
            "--scales",
            "1",
            "--set",
            "geometry.core_radius=14",
            "--work",
            str(tmp_path / "work"),
            "--out",
            str(out),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    (case,) = json.loads(out.read_text())["cases"]
    (row,) = case["rows"]
    assert row["lammps"]["engine"] == "lammps" and row["lammps"]["status"] == "converged"
    assert row["coupled"]["status"] == "converged"
    assert 0 < row["coupled"]["strain_error_rel"] < 1
    assert row["speedup"] > 0 and row["lammps"]["peak_memory_GB"] > 0
    # CPU time beside wall time (a shared machine inflates the latter), and the peer's effort
    assert row["lammps"]["cpu_time_s"] > 0 and row["coupled"]["cpu_time_s"] > 0
    assert row["speedup_cpu"] > 0 and row["lammps"]["force_evaluations"] > 0
    assert row["lammps"]["minimizer_stops"]
