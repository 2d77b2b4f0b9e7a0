"""The fully atomistic reference relaxed by LAMMPS (``reference.engine = "lammps"``).

Two independent minimisers of the same energy (LAMMPS cg/FIRE with its own EAM code, and the
project's torch EAM with scipy's L-BFGS-B) must land on the same relaxed state from the same
start, with the same held shell. Each stops once the largest per-atom force norm on a free
atom is below ``fmax``; two such states differ by about ``fmax / k`` per atom, ``k`` the
stiffness (eV/Å²) of the softest relaxation mode: at ``fmax = 1e-6`` eV/Å the void's
displacements differ by 8e-7 Å and the edge dislocation's by 3e-5 Å (partials that glide on a
stacking fault are soft: at ``fmax = 1e-5`` the gap is 1.2e-4 Å), so 1e-4 Å bounds both with
margin, while a wrong shell, start or constraint (a held atom moving, a defect applied
differently) exceeds it by orders. Energies at a stationary point differ to second order,
``fmax² / k``, below 1e-10 eV here; what is left is round-off: measured relative gaps of 4e-11,
1.4e-10 and 3e-9 in the relaxation energies (0.09, 2.2 and 0.017 eV: Cu void, edge, and a
void in Stillinger–Weber Si), with LAMMPS's energies summed from its per-atom energies (its
running total ``pe`` gave 6e-8 on the Cu void).
"""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk
from conftest import cli

from atomistic.calculator import Calculator
from atomistic.mlip.oracles import LammpsCalculator, lammps_equivalent
from atomistic.potentials import load_potential
from atomistic.relax import minimize_and_finish
from multiscale.config import load_case
from multiscale.kinds.coupled.reference import run_reference
from multiscale.kinds.coupled.setup import Domain, resolve_setup
from multiscale.progress import Reporter

ROOT = Path(__file__).resolve().parents[1]

HEADER = """
[case]
kind = "coupled"
dimension = "{dimension}"

[lattice]
{lattice}

[potential]
kind = "{kind}"
file = "{file}"
"""

# A 4 Å void in a ball. The case must pass the coupled checks (the core holds the void by
# 2 r_cut, the atoms and an element fit the domain), which need a 35 Å ball; the reference
# itself needs none of that, so the tests shrink the domain to a 14 Å ball afterwards
# (about 5 600 sites, 950 of them free).
VOID_3D = """
[geometry]
outer = "ball"
radius = 35.0
core_radius = 15.1

[defect]
kind = "void"
radius = 4.0

[boundary]
strain = [[0.02, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
"""

# An edge dislocation in a 33 Å disk, one lattice period thick: 1 281 free + 1 018 held.
EDGE_25D = """
[geometry]
outer = "disk"
radius = 33.0
core_radius = 13.0

[defect]
kind = "dislocation"
burgers = [0.5, 0.5, 0.0]

[boundary]
kind = "dislocation"
"""

CU = 'structure = "fcc"\nelement = "Cu"\na = 3.614925'
CU_EDGE = (
    'structure = "fcc"\nelement = "Cu"\na = 3.614925\n'
    "orientation = [[1, 1, 0], [-1, 1, 1], [1, -1, 2]]"
)

# Stillinger-Weber (pair_style sw): a 3 Å void in diamond Si, a 25 Å ball (7 188 sites).
SI_VOID_3D = """
[geometry]
outer = "ball"
radius = 25.0
core_radius = 10.6

[defect]
kind = "void"
radius = 3.0

[boundary]
strain = [[0.01, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
"""


def write_case(folder: Path, body: str, *, dimension: str, lattice: str = CU, **potential):
    potential = {"kind": "eam", "file": "Cu_mishin1.eam.alloy", **potential}
    folder.mkdir(parents=True, exist_ok=True)
    header = HEADER.format(dimension=dimension, lattice=lattice, **potential)
    (folder / "case.toml").write_text(header + body)
    return folder


def references(setup, tmp_path):
    """The reference of ``setup`` with each engine, from the same sites and start."""
    out = {}
    for engine in ("torch", "lammps"):
        options = dataclasses.replace(setup.reference, engine=engine)
        with Reporter(tmp_path / f"{engine}.log") as reporter:
            out[engine] = run_reference(
                dataclasses.replace(setup, reference=options), reporter=reporter
            )
    return out["torch"], out["lammps"]


@pytest.fixture(scope="module")
def void_references(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("void-lammps")
    case = load_case(write_case(tmp / "case", VOID_3D, dimension="3d"))
    setup = resolve_setup(case)
    setup = dataclasses.replace(
        setup,
        domain=Domain(outer="ball", half_size=None, radius=14.0),
        reference=dataclasses.replace(setup.reference, fmax=1e-6),
    )
    return setup, *references(setup, tmp)


@pytest.fixture(scope="module")
def edge_references(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("edge-lammps")
    folder = write_case(tmp / "case", EDGE_25D, dimension="2.5d", lattice=CU_EDGE)
    case = load_case(folder, overrides=["reference.fmax=1e-6"])
    setup = resolve_setup(case)
    return setup, *references(setup, tmp)


@pytest.fixture(scope="module")
def si_references(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("si-lammps")
    si = 'structure = "diamond"\nelement = "Si"'
    folder = write_case(
        tmp / "case", SI_VOID_3D, dimension="3d", lattice=si, kind="sw", file="Si.sw"
    )
    setup = resolve_setup(load_case(folder, overrides=["reference.fmax=1e-6"]))
    return setup, *references(setup, tmp)


def agreement(setup, torch_ref, lammps_ref):
    """Max displacement difference of free atoms (Å) and relative relaxation-energy gap."""
    a, b = torch_ref.atoms, lammps_ref.atoms
    np.testing.assert_array_equal(a.arrays["reference_position"], b.arrays["reference_position"])
    np.testing.assert_array_equal(torch_ref.free, lammps_ref.free)
    free = lammps_ref.free
    du = np.linalg.norm(a.arrays["displacement"] - b.arrays["displacement"], axis=1)
    # the held shell sits on the boundary field in both, bit for bit
    assert du[~free].max() == 0.0
    gap = abs(lammps_ref.relaxation_energy - torch_ref.relaxation_energy)
    return float(du[free].max()), gap / abs(torch_ref.relaxation_energy)


@pytest.mark.parametrize("which", ["void_references", "edge_references", "si_references"])
def test_lammps_reference_equals_the_torch_reference(which, request):
    setup, torch_ref, lammps_ref = request.getfixturevalue(which)
    assert torch_ref.engine == "torch" and lammps_ref.engine == "lammps"
    assert lammps_ref.method == "cg/fire" and lammps_ref.steps[0]["minimizer_iterations"] > 10
    assert torch_ref.converged and lammps_ref.converged
    du, energy_rel = agreement(setup, torch_ref, lammps_ref)
    # measured: void 8.4e-7 Å and 4.1e-11; edge 2.7e-5 Å and 1.4e-10; Si 4.1e-7 Å and 3.2e-9
    assert du < 1e-4, du
    assert energy_rel < 1e-7, energy_rel
    assert abs(lammps_ref.relaxation_energy) > 0.01  # a defect that relaxes, not a no-op
    # LAMMPS's criterion is ours: the torch forces at its solution are below fmax too
    check = lammps_ref.atoms.copy()
    check.calc = Calculator(setup.potential.module, device="cpu")
    forces = check.get_forces()[lammps_ref.free]
    assert np.linalg.norm(forces, axis=1).max() <= setup.reference.fmax * (1 + 1e-6)


def test_lammps_equivalent_names_the_pair_style(potentials_dir):
    cu = load_potential(potentials_dir / "Cu_mishin1.eam.alloy")
    assert lammps_equivalent(cu, potentials_dir / "Cu_mishin1.eam.alloy").pair_style == "eam/alloy"
    fe = load_potential(potentials_dir / "Fe_mm.eam.fs")
    assert lammps_equivalent(fe, potentials_dir / "Fe_mm.eam.fs").pair_style == "eam/fs"
    si = load_potential(potentials_dir / "Si.sw")
    calc = lammps_equivalent(si, potentials_dir / "Si.sw")
    assert calc.pair_style == "sw" and calc.elements == ["Si"]
    committee = ROOT / "cases" / "potentials" / "cu-committee.pt"
    with pytest.raises(ValueError, match="LAMMPS has no pair style for a Committee"):
        lammps_equivalent(load_potential(committee), committee)


class _StopsEarly(LammpsCalculator):
    """LAMMPS that gives up after three iterations of each style, as a failed line search
    would."""

    def minimize(self, atoms, **kwargs):
        return super().minimize(atoms, **{**kwargs, "maxiter": 3})


def test_a_lammps_stop_above_fmax_is_finished_by_torch(potentials_dir):
    atoms = bulk("Cu", "fcc", a=3.615, cubic=True).repeat((3, 3, 3))
    atoms.pbc = False
    del atoms[40]
    centre = atoms.positions.mean(axis=0)
    held = np.linalg.norm(atoms.positions - centre, axis=1) > 4.0
    file = potentials_dir / "Cu_mishin1.eam.alloy"
    lammps = _StopsEarly("eam/alloy", file, ["Cu"])
    finish = Calculator(load_potential(file), device="cpu")
    result, record = minimize_and_finish(
        atoms, lammps, fmax=1e-6, fixed=held, max_steps=1000, finish=finish
    )
    assert record["minimizer_styles"] == ["cg", "fire"]
    assert record["minimizer_iterations"] == 6
    assert record["minimizer_stops"] == ["max iterations", "max iterations"]
    assert record["minimizer_force_evaluations"] >= 6
    assert record["minimizer_max_force_eV_per_A"] > 1e-6
    assert record["finish_force_evaluations"] > 0
    steps = record["minimizer_force_evaluations"] + record["finish_force_evaluations"]
    assert result.converged and result.steps == steps
    np.testing.assert_array_equal(result.atoms.positions[held], atoms.positions[held])
    # what it reports is LAMMPS's, at the final positions
    again = result.atoms.copy()
    again.calc = LammpsCalculator("eam/alloy", file, ["Cu"])
    assert again.get_potential_energy() == result.energy
    free_forces = again.get_forces()[~held]
    assert np.linalg.norm(free_forces, axis=1).max() == pytest.approx(result.max_force)
    # and LAMMPS left alone reaches the same state
    direct = LammpsCalculator("eam/alloy", file, ["Cu"]).minimize(
        atoms, ftol=1e-6, norm="max", fixed=held
    )
    assert np.abs(direct.positions - result.atoms.positions).max() < 1e-5


# -- the command line -------------------------------------------------------------------------


def test_engine_option_is_recorded_and_refused_for_a_network(tmp_path):
    folder = write_case(tmp_path / "edge", EDGE_25D, dimension="2.5d", lattice=CU_EDGE)
    run = cli("reference", folder, "--engine", "lammps", "--set", "reference.fmax=1e-4")
    assert run.returncode == 0, run.stdout + run.stderr
    reference = folder / "output" / "reference"
    summary = json.loads((reference / "summary.json").read_text())
    assert summary["engine"] == "lammps" and summary["method"] == "cg/fire"
    assert summary["load_steps"][0]["finish_force_evaluations"] == 0
    assert "engine lammps (lammps eam/alloy cg/fire)" in (reference / "log.txt").read_text()
    resolved = (reference / "case.resolved.toml").read_text()
    assert 'engine = "lammps"' in resolved

    committee = ROOT / "cases" / "potentials" / "cu-committee.pt"
    folder = write_case(
        tmp_path / "mlip",
        EDGE_25D,
        dimension="2.5d",
        lattice=CU_EDGE,
        kind="mlip",
        file=str(committee),
    )
    run = cli("reference", folder, "--engine", "lammps")
    assert run.returncode == 2, run.stdout + run.stderr
    message = run.stderr.strip().splitlines()
    assert len(message) == 1, run.stderr
    assert "--engine lammps" in message[0] and 'allowed: "torch"' in message[0]
    assert 'potential.kind = "mlip"' in message[0]
    assert not (folder / "output").exists()
