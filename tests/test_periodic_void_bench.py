"""``bench/periodic_void.py``: the project's torch EAM against LAMMPS with the same file.

Both calculators are the same potential, so every difference the bench reports must vanish;
the energy decomposition along the oracle's path must add up to the direct difference.
"""

import json
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_same_potential_gives_no_difference(tmp_path):
    from atomistic.potentials import find_potential_file

    eam = find_potential_file("Cu_mishin1.eam.alloy")
    out = tmp_path / "void.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "periodic_void.py"), str(eam)]
        + ["--oracle", "lammps:Cu_mishin1.eam.alloy", "--size", "4", "--radius", "3.0"]
        + ["--fmax", "1e-4", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result == json.loads(proc.stdout)
    rel = result["relaxation_energy_eV"]
    assert rel["oracle"] < -0.01  # the void relaxes under 2 % tension
    assert rel["potential"] == pytest.approx(rel["oracle"], abs=1e-6)
    a = result["lattice_constant_A"]
    assert a["potential"] == pytest.approx(a["oracle"], abs=1e-9)
    path = result["oracle_path"]
    assert abs(path["difference_eV"]) < 1e-8 and abs(path["trapezoid_eV"]) < 1e-8
    assert sum(s["n_atoms"] for s in path["shells"]) == result["n_atoms"]
    assert max(result["force_error_surface_meV_per_A"].values()) < 1e-6
