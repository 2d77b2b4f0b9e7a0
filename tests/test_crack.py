"""Crack cases: the schema, the K field's Griffith coefficient, the notched mesh, and a small
coupled mode-I crack in Cu against its fully atomistic reference and its K field.

Independent answers: Irwin's ``G = (1 − ν²) K²/E`` for an isotropic solid; the geometry of
the notch (no cell crosses the crack plane behind the tip, its faces free); the fully
atomistic reference of the same problem (LAMMPS); and the anisotropic (Stroh) K field,
which the coupled solution must approach away from the tip.
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
from mpi4py import MPI

from multiscale.config import load_case
from multiscale.kinds.coupled.setup import resolve_setup

SMALL_CRACK = """
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
radius = 70.0
core_radius = 16.0

[defect]
kind = "crack"

[boundary]
kind = "crack"
k_i = 0.6
k_i_start = 0.55

[solver]
fmax = 1e-5
"""


def cli(*args):
    return run_cli(*args, timeout=900)


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ('dimension = "2.5d"', 'dimension = "3d"', "defect.kind"),
        ('kind = "crack"\nk_i', 'kind = "homogeneous"\nk_i', "boundary.kind"),
        ('[defect]\nkind = "crack"', '[defect]\nkind = "none"', "boundary.kind"),
        ("k_i = 0.6\n", "", "boundary.k_i"),
        ("k_i_start = 0.55", "k_i_start = 0.6", "boundary.k_i_start"),
        ("k_i = 0.6", "k_i = -0.6", "boundary.k_i"),
        (
            'kind = "crack"\n\n[boundary]',
            'kind = "crack"\nburgers = [0.5, 0.5, 0.0]\n\n[boundary]',
            "defect.burgers",
        ),
        ("core_radius = 16.0", "core_radius = 16.0\n\n[coupling]\nkappa = 1.0", None),
    ],
)
def test_bad_crack_input_is_one_line(tmp_path, old, new, key):
    text = SMALL_CRACK
    if new.startswith('dimension = "3d"'):
        text = text.replace(
            'outer = "disk"\nradius = 70.0', 'outer = "box"\nsize = [140.0, 140.0, 140.0]'
        )
    assert old in text
    folder = write_case(tmp_path, text.replace(old, new))
    proc = cli("check", folder)
    if key is None:  # the control: a valid change passes
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("multiscale: error: "), proc.stderr
    assert key in lines[0], lines[0]


def test_energy_release_coefficient_is_irwins_for_an_isotropic_solid():
    from continuum.laws import isotropic_stiffness
    from coupling.crack import CrackTip

    E, nu = 0.8, 0.3  # eV/Å³
    crack = CrackTip(
        tip=np.array([1.0, 0.5]), C66=isotropic_stiffness(E=E, nu=nu), K_I=0.3, plane_spacing=2.0
    )
    assert crack.energy_release_coefficient() == pytest.approx((1 - nu**2) / E, rel=1e-9)
    gamma = 0.08  # eV/Å²
    assert crack.griffith(gamma) == pytest.approx(np.sqrt(2 * gamma * E / (1 - nu**2)), rel=1e-9)
    # linear in K, opening behind the tip only
    X = np.array([[-9.0, 0.5 + 1e-9, 0.0], [-9.0, 0.5 - 1e-9, 0.0]])
    u1, u2 = crack.displacement(X), crack.at(0.6).displacement(X)
    assert np.allclose(u2, 2 * u1, atol=1e-14)
    assert u1[0, 1] - u1[1, 1] > 0.1  # the faces open behind the tip
    ahead = crack.displacement(X + [20.0, 0.0, 0.0])
    assert np.allclose(ahead[0], ahead[1], atol=1e-7)  # and the field is continuous ahead


def test_setup_resolves_the_tip_and_the_k_field(tmp_path):
    from continuum.elastic_fields import MPA_SQRT_M_TO_EV_PER_A2_5, crack_stress

    setup = resolve_setup(load_case(write_case(tmp_path, SMALL_CRACK)))
    a = 3.614925
    crack, load = setup.crack, setup.loading
    # between the (010) planes and the [100] columns nearest the origin, a/4 from each
    assert np.allclose(crack.tip, [a / 4, a / 4], atol=1e-9)
    assert crack.plane_spacing == pytest.approx(a / 2)
    assert load.stress_intensity(0) == pytest.approx(0.55 * MPA_SQRT_M_TO_EV_PER_A2_5)
    assert load.stress_intensity(1) == pytest.approx(0.6 * MPA_SQRT_M_TO_EV_PER_A2_5)
    # σ_yy ahead of the tip is K/√(2πr) with the Cauchy–Born constants
    r = 30.0
    s = crack_stress(
        C66=crack.C66, K_I=crack.K_I, points=[[crack.tip[0] + r, crack.tip[1]]], tip=crack.tip
    )
    assert s[0, 1, 1] * np.sqrt(2 * np.pi * r) == pytest.approx(crack.K_I, rel=1e-9)
    # Griffith for Cu(100) with the published Mishin surface energy 1.345 J/m²: ≈ 0.586 MPa√m
    gamma = 1.345 / 16.0217663
    K_G = crack.griffith(gamma) / MPA_SQRT_M_TO_EV_PER_A2_5
    assert 0.5 < K_G < 0.7, K_G
    # the boundary field opens the faces behind the tip, not ahead
    u = setup.boundary_displacement(1)
    behind = u(np.array([[-40.0, crack.tip[1] + 1e-7, 0], [-40.0, crack.tip[1] - 1e-7, 0]]))
    ahead = u(np.array([[40.0, crack.tip[1] + 1e-7, 0], [40.0, crack.tip[1] - 1e-7, 0]]))
    assert behind[0, 1] - behind[1, 1] > 1.0 and abs(ahead[0, 1] - ahead[1, 1]) < 1e-6


def test_tip_position_reads_the_opening():
    from coupling.crack import crack_opening, tip_position

    s = 1.0
    x = np.arange(-10.0, 11.0, 1.0)
    above = np.column_stack([x, np.full_like(x, 0.5), np.zeros_like(x)])
    below = np.column_stack([x, np.full_like(x, -0.5), np.full_like(x, 0.5)])
    X = np.vstack([above, below])
    u = np.zeros_like(X)
    u[: len(x), 1] = np.where(x <= 3.0, 0.8, 0.2)  # opening 0.8 up to x = 3, 0.2 beyond
    xs, opening = crack_opening(np.array([0.0, 0.0]), s, X, u)
    np.testing.assert_allclose(xs, x)
    np.testing.assert_allclose(opening, np.where(x <= 3.0, 0.8, 0.2))
    assert tip_position(np.array([0.0, 0.0]), s, X, u) == 3.0  # default threshold s/2
    assert tip_position(np.array([0.0, 0.0]), s, X, u, threshold=0.9) is None


def test_notched_mesh_is_cut_along_the_crack_faces():
    from continuum import Disk, Rectangle, graded_mesh

    y0, half = 0.9, 0.2
    md = graded_mesh(
        comm=MPI.COMM_SELF,
        outer=Disk((0.0, 0.0), 60.0),
        hole=Disk((0.0, 0.0), 10.0),
        focus_radius=14.0,
        h_min=2.0,
        h_max=8.0,
        notch=Rectangle(lo=(-121.0, y0 - half), hi=(0.0, y0 + half)),
    )
    mesh = md.mesh
    x = mesh.geometry.x[mesh.geometry.dofmaps[0]]  # (cells, 3, 3)
    # no cell reaches across the crack plane behind the hole: every cell lies on one side
    behind = x[:, :, 0].max(axis=1) < -10.0
    above = x[:, :, 1] >= y0 + half - 1e-9
    below = x[:, :, 1] <= y0 - half + 1e-9
    assert behind.sum() > 20
    assert np.all(above[behind].all(axis=1) | below[behind].all(axis=1))
    # the notch faces are free (inner tag), the outer tag is on the circle only
    from dolfinx.mesh import entities_to_geometry

    def mids(tag):
        nodes = entities_to_geometry(mesh, 1, md.facet_tags.find(tag))
        return mesh.geometry.x[nodes].mean(axis=1)

    outer, inner = mids(md.outer_tag), mids(md.inner_tag)
    assert np.all(np.linalg.norm(outer[:, :2], axis=1) > 59.5)
    on_faces = np.abs(np.abs(inner[:, 1] - y0) - half) < 1e-9
    assert on_faces.sum() >= 2 * (60 - 10) / 8.0
    assert np.all(inner[on_faces, 0] < -9.0)
    with pytest.raises(Exception, match="notch needs a hole"):
        graded_mesh(
            comm=MPI.COMM_SELF,
            outer=Disk((0.0, 0.0), 60.0),
            focus_radius=14.0,
            h_min=2.0,
            h_max=8.0,
            notch=Rectangle(lo=(-121.0, y0 - half), hi=(0.0, y0 + half)),
        )


@pytest.fixture(scope="module")
def small_crack(tmp_path_factory):
    """A small coupled crack at K = 0.6 MPa√m and its fully atomistic reference (run once)."""
    folder = write_case(tmp_path_factory.mktemp("crack"), SMALL_CRACK)
    out = folder / "output"
    ref = cli("reference", folder)
    assert ref.returncode == 0, ref.stdout + ref.stderr
    run = cli("run", folder)
    assert run.returncode == 0, run.stdout + run.stderr
    return (
        json.loads((out / "summary.json").read_text()),
        json.loads((out / "reference" / "summary.json").read_text()),
    )


def test_small_crack_matches_the_atomistic_reference(small_crack):
    summary, reference = small_crack
    err = summary["reference_error"]
    assert "skipped" not in err, err
    # measured: strain error 6.1e-3, largest displacement error 0.048 Å (13 849-site
    # reference, K = 0.6 MPa√m ≈ 1.02 K_G); the crack tip sits on the same column in both
    assert err["strain_error_rel"] < 0.012, err
    assert err["max_displacement_error_A"] < 0.1, err
    assert summary["crack"]["tip_x_A"] == pytest.approx(reference["crack"]["tip_x_A"])
    step = summary["load_steps"][0]
    assert step["status"] == "converged" and step["correction_status"] == "converged"


def test_far_from_the_tip_the_coupled_crack_is_the_k_field(tmp_path):
    """Away from the tip the solution tends to the linear-elastic K field it started on."""
    from atomistic import Cylinder, finite_cluster
    from multiscale.kinds.coupled.solve import run_coupled

    class Quiet:
        def info(self, message):
            pass

        def log(self, message):
            pass

        def progress(self, *args, **kwargs):
            pass

    setup = resolve_setup(load_case(write_case(tmp_path, SMALL_CRACK)))
    run = run_coupled(setup, comm=MPI.COMM_WORLD, reporter=Quiet())
    assert run.converged
    sites = finite_cluster(
        "fcc",
        element="Cu",
        a=setup.lattice.a,
        periodic_axes=(2,),
        region=Cylinder(center=(0.0, 0.0, 0.0), radius=69.0, axis=2),
    )
    X = sites.positions
    u_c = run.system.displacement_at(
        X, far_field=setup.boundary_displacement(1), period=setup.lattice.period
    )
    u_K = setup.background(1).displacement(X)
    r = np.linalg.norm(X[:, :2] - setup.crack.tip, axis=1)
    rel = []
    for lo, hi in [(5.0, 16.0), (16.0, 36.0), (36.0, 50.0), (50.0, 69.0)]:
        ring = (r > lo) & (r < hi)
        d = np.linalg.norm(u_c[ring] - u_K[ring], axis=1).max()
        rel.append(d / np.linalg.norm(u_K[ring], axis=1).max())
    # measured 0.134, 0.050, 0.019, 0.011: the tip's nonlinear zone, then the K field
    assert all(b < a for a, b in zip(rel, rel[1:])), rel
    assert rel[0] > 0.05 and rel[-1] < 0.02, rel


def test_two_ranks_give_the_serial_answer(small_crack, tmp_path):
    """``mpiexec -n 2``: the same passes, energy and crack tip as the serial run."""
    mpiexec = Path(sys.executable).with_name("mpiexec")
    launcher = str(mpiexec) if mpiexec.exists() else shutil.which("mpiexec")
    if launcher is None:
        pytest.skip("no mpiexec")
    folder = write_case(tmp_path, SMALL_CRACK)
    run = subprocess.run(
        [launcher, "-n", "2", sys.executable, "-m", "multiscale", "run", folder],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    parallel = json.loads((folder / "output" / "summary.json").read_text())
    serial = small_crack[0]
    assert parallel["mpi_ranks"] == 2
    assert parallel["correction_passes"] == serial["correction_passes"]
    assert parallel["energy_eV"] == pytest.approx(serial["energy_eV"], abs=1e-6)
    assert parallel["crack"]["tip_x_A"] == pytest.approx(serial["crack"]["tip_x_A"])
