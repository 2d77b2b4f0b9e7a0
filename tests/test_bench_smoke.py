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
