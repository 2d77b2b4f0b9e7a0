"""Dislocation cases: the schema, the Volterra field on the lattice, and the coupled edge
dislocation in Cu against its fully atomistic reference.

Independent answers: the anisotropic (Stroh) displacement gradient at lattice sites, against
which the lattice strain metric must agree once the branch-cut jump is removed; the fully
atomistic reference for where the Shockley partials sit; and the Shockley partials'
crystallography (stacking-fault slip 1/2, screw disregistry ±1/(2√3)).
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import cli as run_cli
from conftest import write_case

from atomistic.strain import site_gradients
from multiscale.config import load_case
from multiscale.kinds.coupled.setup import resolve_setup

ROOT = Path(__file__).resolve().parents[1]
EDGE = ROOT / "cases" / "edge-dislocation-cu"

SMALL_EDGE = """
[case]
kind = "coupled"
dimension = "2.5d"

[lattice]
structure = "fcc"
element = "Cu"
a = 3.614925
orientation = [[1, 1, 0], [-1, 1, 1], [1, -1, 2]]

[potential]
file = "Cu_mishin1.eam.alloy"

[geometry]
outer = "disk"
radius = {radius}
core_radius = {core}

[defect]
kind = "dislocation"
burgers = [0.5, 0.5, 0.0]

[boundary]
kind = "dislocation"

[solver]
fmax = 1e-5
"""


def cli(*args):
    return run_cli(*args, timeout=900)


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ('dimension = "2.5d"', 'dimension = "3d"', "defect.kind"),
        ('kind = "dislocation"\n\n[solver]', 'kind = "homogeneous"\n\n[solver]', "boundary.kind"),
        ("burgers = [0.5, 0.5, 0.0]", "burgers = [0.5, 0.0, 0.0]", "defect.burgers"),
        ("burgers = [0.5, 0.5, 0.0]", "", "defect.burgers"),
    ],
)
def test_bad_dislocation_input_is_one_line(tmp_path, old, new, key):
    text = SMALL_EDGE.format(radius=80.0, core=30.0)
    if new.startswith('dimension = "3d"'):
        text = text.replace(
            'outer = "disk"\nradius = 80.0', 'outer = "box"\nsize = [160.0, 160.0, 160.0]'
        )
    assert old in text
    folder = write_case(tmp_path, text.replace(old, new))
    proc = cli("check", folder)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("multiscale: error: "), proc.stderr
    assert key in lines[0], lines[0]


def test_setup_resolves_burgers_and_centre(tmp_path):
    folder = write_case(tmp_path, SMALL_EDGE.format(radius=80.0, core=30.0))
    setup = resolve_setup(load_case(folder))
    a = 3.614925
    disl = setup.dislocation
    assert np.allclose(disl.burgers, [a / np.sqrt(2), 0.0, 0.0], atol=1e-12)
    # between the (-111) planes (spacing a/√3) and the columns along [110] (spacing b/2)
    assert np.allclose(disl.center, [a / np.sqrt(2) / 4, a / np.sqrt(3) / 2], atol=1e-9)
    assert disl.plane_spacing == pytest.approx(a / np.sqrt(3))
    # the boundary field is the Volterra field: it jumps by b across the cut, x < c_x
    u = setup.boundary_displacement(1)
    above, below = (
        np.array([[-40.0, disl.center[1] + 1e-7, 0]]),
        np.array([[-40.0, disl.center[1] - 1e-7, 0]]),
    )
    assert np.allclose(u(above) - u(below), disl.burgers, atol=1e-6)


def test_lattice_strain_of_the_volterra_field_matches_stroh(tmp_path):
    """The least-squares site gradient of u_d on the lattice, jump removed, is ∇u_d."""
    from atomistic import Cylinder, finite_cluster

    folder = write_case(tmp_path, SMALL_EDGE.format(radius=80.0, core=30.0))
    setup = resolve_setup(load_case(folder))
    disl = setup.dislocation
    atoms = finite_cluster(
        "fcc",
        element="Cu",
        a=setup.lattice.a,
        orientation=setup.lattice.orientation,
        periodic_axes=(2,),
        region=Cylinder(center=(0.0, 0.0, 0.0), radius=60.0, axis=2),
    )
    X = atoms.positions
    u = disl.displacement(X)
    cell, pbc = np.diag([1.0, 1.0, setup.lattice.period]), (False, False, True)
    cutoff = 1.1 * setup.lattice.r_nn
    G = site_gradients(X, u, cutoff=cutoff, cell=cell, pbc=pbc, jump=disl.jump)
    G_naive = site_gradients(X, u, cutoff=cutoff, cell=cell, pbc=pbc)
    exact = disl.gradient(X)
    r = np.linalg.norm(X[:, :2] - disl.center, axis=1)
    ring = (r > 20.0) & (r < 50.0)
    err = np.linalg.norm(G[ring] - exact[ring], axis=(1, 2)) / np.linalg.norm(
        exact[ring], axis=(1, 2)
    )
    # the fit of a 1/r field over a shell of radius r_nn is second-order accurate: ~(r_nn/r)²
    assert err.max() < 0.05, err.max()
    near_cut = ring & (np.abs(X[:, 1] - disl.center[1]) < setup.lattice.r_nn) & (X[:, 0] < 0)
    naive = np.linalg.norm(G_naive[near_cut] - exact[near_cut], axis=(1, 2))
    assert naive.min() > 0.1  # without removing the jump, sites by the cut are nonsense


@pytest.fixture(scope="module")
def small_edge(tmp_path_factory):
    """A small coupled edge dislocation and its fully atomistic reference (run once)."""
    folder = write_case(tmp_path_factory.mktemp("edge"), SMALL_EDGE.format(radius=80.0, core=40.0))
    out = folder / "output"
    ref = cli("reference", folder)
    assert ref.returncode == 0, ref.stdout + ref.stderr
    run = cli("run", folder)
    assert run.returncode == 0, run.stdout + run.stderr
    return (
        json.loads((out / "summary.json").read_text()),
        json.loads((out / "reference" / "summary.json").read_text()),
        out / "reference",
    )


@pytest.fixture(scope="module")
def single_pass_edge(small_edge, tmp_path_factory):
    """The same case with the correction of the defect-free lattice alone (one pass)."""
    folder = write_case(tmp_path_factory.mktemp("edge1"), SMALL_EDGE.format(radius=80.0, core=40.0))
    out = folder / "single"
    out.mkdir()
    (out / "reference").symlink_to(small_edge[2])
    run = cli("run", folder, "--set", "coupling.correction_passes=1", "--output", out)
    assert run.returncode == 0, run.stdout + run.stderr
    return json.loads((out / "summary.json").read_text())


def test_edge_dislocation_dissociates_into_shockley_partials(small_edge):
    summary, reference, _ = small_edge
    for s in (summary, reference):
        d = s["dislocation"]
        # a stacking fault between two partials of equal edge component ...
        assert d["fault_slip"] == pytest.approx(0.5, abs=0.05)
        # ... with the screw disregistry of a/6<112> Shockley partials, ±1/(2√3)
        assert abs(d["fault_screw_disregistry"]) == pytest.approx(1 / (2 * np.sqrt(3)), abs=0.03)
        # both partials inside the atomistic core, well apart
        left, right = d["partial_positions_A"]
        assert -40.0 < left < right < 40.0
        assert d["separation_A"] > 15.0
        assert d["slip_at_ends"][0] > 0.9 and d["slip_at_ends"][1] < 0.1


def test_edge_dislocation_matches_the_atomistic_reference(small_edge):
    summary, reference, _ = small_edge
    err = summary["reference_error"]
    assert "skipped" not in err, err
    # where the partials sit, against the fully atomistic solution of the same problem
    # (measured: 0.087 Å, strain error 6.1e-3, energy 2.5e-4 relative, 6 correction passes)
    assert err["partial_positions_error_A"] < 0.25, err
    assert err["strain_error_rel"] < 0.012, err
    assert err["energy_error_rel"] < 1e-3, err
    step = summary["load_steps"][0]
    changes = step["correction_changes_eV_per_A"]
    assert step["correction_passes"] == 1 + len(changes) > 2
    assert changes[-1] < 1e-3 < changes[0] and changes[-1] < changes[-2]
    assert step["correction_status"] == "converged"


def test_the_case_as_written_converges_its_passes_and_matches_lammps(tmp_path):
    """The case as written (core 40 Å in a 200 Å disk) against its LAMMPS reference.

    With every pass solved to ``solver.fmax`` the recomputed correction drove the pair along
    its glide plane (the change grew from pass 3 to 4) and the run kept the first pass: the
    pair 1.06 Å off, strain error 5.1e-2. With the passes before the last solved inexactly
    they converge (measured: 5 recomputations, 3.2e-2 … 3.7e-4 eV/Å; strain error 1.05e-2,
    the partials 0.24 Å off).
    """
    out = tmp_path / "out"
    ref = cli("reference", EDGE, "--engine", "lammps", "--output", out)
    assert ref.returncode == 0, ref.stdout + ref.stderr
    run = cli("run", EDGE, "--output", out)
    assert run.returncode == 0, run.stdout + run.stderr
    summary = json.loads((out / "summary.json").read_text())
    step = summary["load_steps"][0]
    assert summary["status"] == "converged"
    assert step["correction_status"] == "converged", step
    changes = step["correction_changes_eV_per_A"]
    assert changes[-1] < 1e-3 < changes[0]
    err = summary["reference_error"]
    assert "skipped" not in err, err
    assert err["partial_positions_error_A"] < 0.4, err
    assert err["strain_error_rel"] < 0.015, err


def test_recomputing_the_correction_at_the_solution_beats_one_pass(small_edge, single_pass_edge):
    """One pass (the defect-free lattice's ghost forces) leaves the dislocation field's own
    ghost forces in the handshake; recomputing the correction at the solution removes them.
    Measured against the fully atomistic reference: strain error 1.70e-2 -> 6.1e-3, energy
    error 8.8e-3 -> 2.5e-4 relative."""
    once = single_pass_edge["reference_error"]
    fixed_point = small_edge[0]["reference_error"]
    assert single_pass_edge["correction_passes"] == [1]
    assert fixed_point["strain_error_rel"] < 0.5 * once["strain_error_rel"], (fixed_point, once)
    assert fixed_point["energy_error_rel"] < 0.1 * once["energy_error_rel"], (fixed_point, once)


def test_two_ranks_give_the_serial_answer_with_correction_passes(small_edge, tmp_path):
    """``mpiexec -n 2``: the same passes, energy and partials as the serial run (the
    recomputed correction gathers the atoms and interpolates the FE field on every rank)."""
    mpiexec = Path(sys.executable).with_name("mpiexec")
    launcher = str(mpiexec) if mpiexec.exists() else shutil.which("mpiexec")
    if launcher is None:
        pytest.skip("no mpiexec")
    folder = write_case(tmp_path, SMALL_EDGE.format(radius=80.0, core=40.0))
    run = subprocess.run(
        [launcher, "-n", "2", sys.executable, "-m", "multiscale", "run", folder],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    parallel = json.loads((folder / "output" / "summary.json").read_text())
    serial = small_edge[0]
    assert parallel["mpi_ranks"] == 2
    assert parallel["correction_passes"] == serial["correction_passes"]
    assert parallel["energy_eV"] == pytest.approx(serial["energy_eV"], abs=1e-6)
    np.testing.assert_allclose(
        parallel["dislocation"]["partial_positions_A"],
        serial["dislocation"]["partial_positions_A"],
        atol=1e-4,
    )
