"""The optional MACE adapter (``atomistic.potentials.mace``): equal to mace-torch's own evaluation.

Models are tiny MACEs with random weights built here (no downloads). Tests that need
mace-torch skip without it; the error path without it runs everywhere.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms
from conftest import central_difference_forces, strain_derivative_stress

from atomistic import (
    Calculator,
    NeighbourList,
    PotentialFileError,
    UnknownElementError,
    build_graph,
    crystal,
    evaluate,
    load_potential,
)
from atomistic.potentials.protocol import interaction_range
from multiscale.config import load_case
from multiscale.errors import CaseError

ROOT = Path(__file__).resolve().parents[1]
R_MAX = 4.5

VACANCY_CASE = """
[case]
kind = "vacancy-formation"

[lattice]
structure = "fcc"
element = "Cu"
a = 3.61
size = [2, 2, 2]

[potential]
kind = "mace"
file = "{file}"
"""


def tiny_mace(
    *,
    numbers=(29,),
    e0=(-3.5,),
    interaction="RealAgnosticResidualInteractionBlock",
    scale_shift=True,
    seed=0,
):
    """A MACE with random weights: 8x0e + 8x1o, r_max 4.5 Å, 2 interactions, float64."""
    modules = pytest.importorskip("mace.modules")
    from e3nn import o3  # after mace: it makes e3nn's constants loadable under torch >= 2.6

    torch.manual_seed(seed)
    config = dict(
        r_max=R_MAX,
        num_bessel=4,
        num_polynomial_cutoff=5,
        max_ell=2,
        interaction_cls=modules.interaction_classes[interaction],
        interaction_cls_first=modules.interaction_classes[interaction],
        num_interactions=2,
        num_elements=len(numbers),
        hidden_irreps=o3.Irreps("8x0e + 8x1o"),
        MLP_irreps=o3.Irreps("8x0e"),
        atomic_energies=np.array(e0),
        avg_num_neighbors=6.0,
        atomic_numbers=list(numbers),
        correlation=2,
        gate=torch.nn.functional.silu,
        radial_MLP=[16, 16],
    )
    if scale_shift:
        model = modules.ScaleShiftMACE(atomic_inter_scale=2.0, atomic_inter_shift=-0.1, **config)
    else:
        model = modules.MACE(**config)
    return model.double()


@pytest.fixture(scope="module")
def cu_model():
    return tiny_mace()


@pytest.fixture(scope="module")
def cu_file(cu_model, tmp_path_factory):
    from atomistic.potentials.mace import MACEPotential

    return MACEPotential(cu_model).save(tmp_path_factory.mktemp("mace") / "cu.model")


def rattled(size=(2, 2, 2), seed=0, scale=0.1, symbols=("Cu",)):
    atoms = crystal("fcc", element="Cu", a=3.61, size=size)
    rng = np.random.default_rng(seed)
    atoms.positions += rng.normal(scale=scale, size=atoms.positions.shape)
    atoms.symbols = rng.choice(list(symbols), size=len(atoms)).tolist()
    return atoms


def cluster(seed=0, symbols=("Cu",)):
    """A rattled non-periodic fcc cluster of 43 atoms (radius 5 Å), no cell."""
    atoms = crystal("fcc", element="Cu", a=3.61, size=(4, 4, 4))
    centre = atoms.positions[np.argmin(np.linalg.norm(atoms.positions - 7.22, axis=1))]
    keep = np.linalg.norm(atoms.positions - centre, axis=1) < 5.0
    out = Atoms(["Cu"] * int(keep.sum()), positions=atoms.positions[keep] - centre)
    rng = np.random.default_rng(seed)
    out.positions += rng.normal(scale=0.1, size=out.positions.shape)
    out.symbols = rng.choice(list(symbols), size=len(out)).tolist()
    return out


def mace_reference(model, atoms, *, stress):
    """Energy, site energies, forces (and stress) from mace-torch's own ASE calculator."""
    from mace.calculators import MACECalculator

    atoms = atoms.copy()
    atoms.calc = MACECalculator(models=model, device="cpu", default_dtype="float64")
    out = {
        "energy": atoms.get_potential_energy(),
        "energies": atoms.calc.results["energies"],
        "forces": atoms.get_forces(),
    }
    if stress:
        out["stress"] = atoms.get_stress()
    return out


CONFIGS = {
    "periodic-32": lambda s: rattled(symbols=s),
    "periodic-4-self-images": lambda s: rattled(size=(1, 1, 1), symbols=s),
    "cluster-43": lambda s: cluster(symbols=s),
}


@pytest.mark.parametrize("alloy", [False, True], ids=["Cu", "NiCu"])
@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_equals_mace_calculator(config, alloy, cu_model):
    from atomistic.potentials.mace import MACEPotential

    # the alloy model lists Ni before Cu: the species mapping must follow MACE's order
    model = (
        tiny_mace(numbers=(28, 29), e0=(-2.0, -3.5), scale_shift=False, seed=1)
        if alloy
        else cu_model
    )
    atoms = CONFIGS[config](("Cu", "Ni") if alloy else ("Cu",))
    periodic = atoms.pbc.all()
    ref = mace_reference(model, atoms, stress=periodic)
    atoms.calc = Calculator(MACEPotential(model), device="cpu")
    assert atoms.get_potential_energy() == pytest.approx(ref["energy"], abs=1e-10)
    np.testing.assert_allclose(atoms.get_potential_energies(), ref["energies"], atol=1e-10)
    np.testing.assert_allclose(atoms.get_forces(), ref["forces"], atol=1e-10)
    assert np.abs(ref["forces"]).max() > 1e-3  # the comparison is not between zeros
    if periodic:
        np.testing.assert_allclose(atoms.get_stress(), ref["stress"], atol=1e-10)


def test_forces_and_stress_are_derivatives_of_the_energy(cu_model):
    from atomistic.potentials.mace import MACEPotential

    atoms = rattled(size=(1, 1, 1), seed=3)
    atoms.calc = Calculator(MACEPotential(cu_model), device="cpu")
    forces, stress = atoms.get_forces(), atoms.get_stress()
    np.testing.assert_allclose(forces, central_difference_forces(atoms, h=1e-5), atol=1e-8)
    np.testing.assert_allclose(stress, strain_derivative_stress(atoms), atol=1e-8)
    assert atoms.get_potential_energies().sum() == pytest.approx(
        atoms.get_potential_energy(), abs=1e-10
    )
    np.testing.assert_allclose(atoms.get_stresses().sum(0), stress, atol=1e-12)


def test_pairs_past_r_max_are_dropped():
    """The project's lists carry a skin; an attention block would weigh those pairs."""
    from atomistic.potentials.mace import MACEPotential

    model = tiny_mace(interaction="RealAgnosticAttResidualInteractionBlock", seed=2)
    potential = MACEPotential(model)
    atoms = rattled(seed=4)
    energies = []
    for skin in (0.0, 1.5):
        graph = build_graph(
            positions=torch.tensor(atoms.positions),
            cell=torch.tensor(atoms.cell.array),
            species=torch.zeros(len(atoms), dtype=torch.int64),
            neighbours=NeighbourList(cutoff=potential.cutoff, skin=skin),
        )
        energies.append(evaluate(potential, graph)["energies"])
    assert energies[0].shape == (len(atoms),)
    torch.testing.assert_close(energies[1], energies[0], rtol=1e-12, atol=1e-12)
    ref = mace_reference(model, atoms, stress=False)
    np.testing.assert_allclose(energies[0].numpy(), ref["energies"], rtol=1e-10, atol=1e-8)


def test_receptive_field_is_layers_times_r_max(cu_model):
    """ε_0 moves with atoms between r_max and 2 r_max, not with atoms past 2 r_max."""
    from atomistic.potentials.mace import MACEPotential

    potential = MACEPotential(cu_model)
    assert potential.site_local is False
    assert potential.cutoff == R_MAX
    assert potential.receptive_field == interaction_range(potential) == 2 * R_MAX
    atoms = crystal("fcc", element="Cu", a=3.61, size=(4, 4, 4))  # periodic, 14.4 Å box
    atoms.rattle(0.05, seed=5)
    x = torch.tensor(atoms.positions, requires_grad=True)
    graph = build_graph(
        positions=x,
        cell=torch.tensor(atoms.cell.array),
        species=torch.zeros(len(atoms), dtype=torch.int64),
        neighbours=NeighbourList(cutoff=potential.cutoff),
    )
    (g,) = torch.autograd.grad(potential(graph)[0], x)
    moved = g.norm(dim=1).numpy()
    d = atoms.get_distances(0, range(len(atoms)), mic=True)
    assert moved[(d > R_MAX) & (d < 2 * R_MAX)].max() > 1e-8
    assert moved[d > 2 * R_MAX].max() == 0.0


def test_float32_follows_float64(cu_model):
    from atomistic.potentials.mace import MACEPotential

    atoms = rattled(seed=6)
    results = {}
    for dtype in (torch.float64, torch.float32):
        atoms.calc = Calculator(MACEPotential(cu_model), device="cpu", dtype=dtype)
        results[dtype] = (atoms.get_potential_energy(), atoms.get_forces())
    e64, f64 = results[torch.float64]
    e32, f32 = results[torch.float32]
    assert e32 == pytest.approx(e64, rel=1e-6)
    np.testing.assert_allclose(f32, f64, atol=1e-5)


def test_unknown_element_is_named(cu_model):
    from atomistic.potentials.mace import MACEPotential

    atoms = rattled(size=(1, 1, 1))
    atoms.symbols[0] = "Ag"
    atoms.calc = Calculator(MACEPotential(cu_model), device="cpu")
    with pytest.raises(UnknownElementError, match="Ag"):
        atoms.get_potential_energy()


def test_save_load_roundtrip(cu_model, cu_file):
    from atomistic.potentials.mace import MACEPotential

    loaded = load_potential(cu_file)
    assert isinstance(loaded, MACEPotential) and loaded.source == str(cu_file)
    assert loaded.elements == ("Cu",) and loaded.cutoff == R_MAX
    atoms = rattled(seed=7)
    energies = []
    for potential in (MACEPotential(cu_model), loaded):
        atoms.calc = Calculator(potential, device="cpu")
        energies.append(atoms.get_potential_energies())
    np.testing.assert_array_equal(energies[1], energies[0])
    from mace.calculators import MACECalculator  # mace-torch reads the saved file too

    atoms.calc = MACECalculator(model_paths=str(cu_file), device="cpu", default_dtype="float64")
    assert atoms.get_potential_energy() == pytest.approx(energies[0].sum(), abs=1e-10)


def test_head_must_be_one_of_the_model(cu_model):
    from atomistic.potentials.mace import MACEPotential

    assert MACEPotential(cu_model).head == "Default"
    with pytest.raises(ValueError, match="head 'nope' unknown; allowed: Default"):
        MACEPotential(cu_model, head="nope")
    with pytest.raises(TypeError, match="not a MACE energy model"):
        MACEPotential(torch.nn.Linear(2, 2))


def test_bad_files_are_one_line_errors(cu_file, tmp_path):
    missing = tmp_path / "missing.model"
    with pytest.raises(FileNotFoundError, match="missing.model") as err:
        load_potential(missing)
    assert "\n" not in str(err.value)
    junk = tmp_path / "junk.model"
    junk.write_text("not a model\n")
    with pytest.raises(PotentialFileError, match="junk.model: cannot be read as a MACE model"):
        load_potential(junk)
    # a .pt is read with weights_only=True: a pickled MACE module is refused, not run
    pt = tmp_path / "mace.pt"
    pt.write_bytes(cu_file.read_bytes())
    with pytest.raises(PotentialFileError, match="mace.pt: cannot be read"):
        load_potential(pt)


def write_case(folder: Path, file: str, kind: str = "mace") -> Path:
    folder.mkdir(exist_ok=True)
    text = VACANCY_CASE.format(file=file).replace('kind = "mace"', f'kind = "{kind}"')
    (folder / "case.toml").write_text(text)
    return folder


def test_case_kind_mace_loads(cu_file, tmp_path):
    from atomistic.potentials.mace import MACEPotential
    from multiscale.kinds.shared import load_case_potential as case_potential

    case = load_case(write_case(tmp_path / "case", str(cu_file)))
    potential, path = case_potential(case)
    assert isinstance(potential, MACEPotential) and path == cu_file.resolve()


@pytest.mark.parametrize(
    ("kind", "file", "words"),
    [
        ("mace", "nowhere.model", ["potential.file", "nowhere.model", "not found"]),
        ("mace", "junk.model", ["potential.file", "junk.model", 'potential.kind = "mace"']),
        ("macee", "junk.model", ["potential.kind", '"macee"', '"mace"', '"mlip"']),
    ],
)
def test_bad_case_input_is_one_line(tmp_path, kind, file, words):
    if kind == "mace" and file == "junk.model":
        pytest.importorskip("mace.modules")  # without it, the error is about mace-torch
    (tmp_path / "case").mkdir()
    (tmp_path / "case" / "junk.model").write_text("not a model\n")
    from multiscale.kinds.shared import load_case_potential as case_potential

    with pytest.raises(CaseError) as err:
        case_potential(load_case(write_case(tmp_path / "case", file, kind)))
    message = str(err.value)
    assert "\n" not in message and "case.toml" in message, message
    for word in words:
        assert word in message, message


def test_without_mace_torch_the_error_names_the_extra(tmp_path, monkeypatch):
    """Runs with or without mace-torch: its import is made to fail."""
    from atomistic.potentials.mace import MACEPotential
    from multiscale.kinds.shared import load_case_potential as case_potential

    monkeypatch.setitem(sys.modules, "mace.modules", None)
    (tmp_path / "case").mkdir()
    (tmp_path / "case" / "m.model").write_bytes(b"")
    with pytest.raises(ModuleNotFoundError, match=r"pip install multiscale\[mace\]"):
        MACEPotential.from_file(tmp_path / "case" / "m.model")
    with pytest.raises(CaseError, match=r"potential.kind = \"mace\".*multiscale\[mace\]") as err:
        case_potential(load_case(write_case(tmp_path / "case", "m.model")))
    assert "\n" not in str(err.value)


def test_importing_atomistic_does_not_import_mace():
    code = (
        "import sys\n"
        "import atomistic, atomistic.potentials.mace, multiscale.kinds.shared\n"
        "print('mace' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_coupled_patch_test_with_mace(cu_file, tmp_path):
    """Ghost-force-corrected patch test at round-off; the pad covers the receptive field.

    With a message-passing potential the pad must be ``layers × r_max`` thick for atoms with
    ``β > 0`` to see a bulk environment: their site energies then equal the bulk value
    exactly (with a pad of ``r_max`` they differ by about 1e-6 eV for this model).
    """
    import ase.io

    from atomistic.potentials.mace import MACEPotential

    out = tmp_path / "out"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "multiscale",
            "run",
            ROOT / "cases" / "patch-test",
            "--output",
            out,
            "--set",
            'potential.kind="mace"',
            "--set",
            f"potential.file={json.dumps(str(cu_file))}",
            "--set",
            "lattice.a=3.61",  # the random model has no equilibrium
            "--set",
            "coupling.kappa=1.0",  # nor a positive shear modulus
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "converged" and summary["newton_iterations"] == [0]
    assert summary["max_force_eV_per_A"] < 1e-8
    assert summary["ghost_force_eV_per_A"] > 1e-3
    resolved = (out / "case.resolved.toml").read_text()
    assert "2 r_cut = 18" in resolved and "r_cut = 9" in resolved, resolved

    potential = MACEPotential.from_file(cu_file)
    atoms = ase.io.read(out / "atoms" / "coupled.extxyz", index=-1)
    atoms.positions = atoms.arrays["reference_position"]
    atoms.calc = Calculator(potential, device="cpu")
    bulk = crystal("fcc", element="Cu", a=3.61, size=(1, 1, 1))
    bulk.calc = Calculator(potential, device="cpu")
    blended = atoms.arrays["beta"] > 0
    deviation = atoms.get_potential_energies()[blended] - bulk.get_potential_energies()[0]
    assert np.abs(deviation).max() < 1e-10


def test_pad_thinner_than_the_receptive_field_is_refused(cu_file):
    from multiscale.kinds.coupled.setup import resolve_setup

    overrides = [
        'potential.kind="mace"',
        f"potential.file={json.dumps(str(cu_file))}",
        "lattice.a=3.61",
        "coupling.kappa=1.0",
        f"geometry.pad_width={R_MAX}",  # enough for a site-local potential of this cutoff
    ]
    case = load_case(ROOT / "cases" / "patch-test", overrides=overrides)
    with pytest.raises(CaseError, match=r"geometry.pad_width = 4.5 .* range r_cut = 9.0000 Å"):
        resolve_setup(case)
