"""``cases/adaptive-expand`` as shipped, for two iterations: the atoms grow along the glide plane.

The dislocation's core starts at 14 Å, too small for its partials. Two expansions must each
solve to the case's tolerance (before the coupled Newton solve held the nearly free FE nodes
of a grown core, shifted its Hessian on negative curvature and let Cauchy–Born evaluate a
cell sheared by a Burgers vector, the first expansion already stopped the loop with
``not converged``), and the core must grow along the glide plane (x) and not across it (y).
Each expansion refines its new handshake and pad to the case's ``h_min`` (without it, cells of
7–8 Å held them at iteration 2, on a ``h_min`` of 2.56 Å). Against the case's fully atomistic
reference (LAMMPS), the true error falls and the estimate stays within a factor 3 of it.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from ase.io import read
from dolfinx.io import XDMFFile
from matplotlib.tri import Triangulation
from mpi4py import MPI

from atomistic.regions import REGION_CORE, REGION_HANDSHAKE, REGION_PAD
from multiscale.config import load_case
from multiscale.kinds.coupled.setup import resolve_setup

ROOT = Path(__file__).resolve().parents[1]
CASE = ROOT / "cases" / "adaptive-expand"


def longest_cell_holding_blended_atoms(folder: Path, k: int) -> float:
    """The longest edge (Å) of the cells of iteration ``k``'s mesh that hold handshake or pad
    sites."""
    with XDMFFile(MPI.COMM_SELF, str(folder / f"indicators_{k:02d}.xdmf"), "r") as f:
        mesh = f.read_mesh(name="mesh")
    xy, cells = mesh.geometry.x[:, :2], mesh.geometry.dofmaps[0]
    atoms = read(folder / f"atoms_{k:02d}.extxyz")
    shell = np.isin(atoms.arrays["region"], (REGION_HANDSHAKE, REGION_PAD))
    p = atoms.arrays["reference_position"][shell]
    hit = Triangulation(xy[:, 0], xy[:, 1], cells).get_trifinder()(p[:, 0], p[:, 1])
    corners = xy[cells[np.unique(hit[hit >= 0])]]
    edges = [
        np.linalg.norm(corners[:, a] - corners[:, b], axis=1) for a, b in ((0, 1), (1, 2), (0, 2))
    ]
    return float(np.max(edges))


def test_the_core_grows_along_the_glide_plane_and_every_solve_converges(tmp_path):
    out = tmp_path / "out"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    ref = [sys.executable, "-m", "multiscale", "reference", str(CASE), "--output", str(out)]
    done = subprocess.run(ref, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    cmd = [sys.executable, "-m", "multiscale", "run", str(CASE), "--output", str(out)]
    cmd += ["--set", "adaptivity.max_iterations=2"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    loop = summary["adaptivity"]
    assert loop["stop"] == "budget: max_iterations"
    assert [row["action"] for row in loop["history"]] == ["expand", "expand", "stop"]
    # the true error falls; the estimate stays within the issue's [0.3, 3] of it (it need
    # not fall as fast: at iteration 2 the partials are pushed against the grown core's
    # end, which the projected error sees)
    errors = [row["strain_error_rel"] for row in loop["history"]]
    assert errors[2] < 0.6 * errors[0]
    for row in loop["history"]:
        assert 0.3 <= row["effectivity"] <= 3.0, row
    extents = []
    for k in (0, 2):
        atoms = read(out / "adaptive" / f"atoms_{k:02d}.extxyz")
        core = atoms.arrays["reference_position"][atoms.arrays["region"] == REGION_CORE]
        extents.append(np.ptp(core[:, :2], axis=0))
    (x0, y0), (x2, y2) = extents
    assert x2 > x0 + 20.0  # along the glide plane
    assert y2 < y0 + 1.0  # not across it
    h_min = resolve_setup(load_case(CASE)).mesh.h_min
    assert longest_cell_holding_blended_atoms(out / "adaptive", 2) <= 1.5 * h_min + 1e-9
