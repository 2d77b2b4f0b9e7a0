"""The Behler–Parrinello network potential and the committee: physics and plumbing."""

import numpy as np
import pytest
import torch
from ase import Atoms
from conftest import central_difference_forces

from atomistic import (
    EAM,
    MLIP,
    ACSFSpec,
    Calculator,
    Committee,
    MomentSpec,
    NeighbourList,
    build_graph,
    crystal,
    evaluate,
    force_spread,
    load_potential,
    save_potential,
)
from atomistic.mlip.acsf import triplets
from atomistic.mlip.committee import member_forces

SPEC = ACSFSpec(cutoff=4.0, angular_cutoff=3.5, radial_shift=(2.0, 2.5, 3.0, 3.5))
#: both descriptors, for the tests every network potential must pass
SPECS = {
    "acsf": SPEC,
    "moments": MomentSpec(
        cutoff=4.0, angular_cutoff=3.5, radial_shift=(2.0, 2.5, 3.0, 3.5), angular_shift=(2.2, 3.0)
    ),
}


def randomise(model, seed=1, scale=0.3):
    """Non-trivial normalisation so that every buffer matters."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.descriptor_mean.copy_(torch.rand(model.descriptor_mean.shape, generator=gen))
        model.descriptor_std.copy_(1 + torch.rand(model.descriptor_std.shape, generator=gen))
        model.energy_shift.copy_(-3 + torch.rand(model.energy_shift.shape, generator=gen))
        model.energy_scale.fill_(scale)
    return model


def rattled(elements=("Cu",), size=(2, 2, 2), seed=0, scale=0.1):
    atoms = crystal("fcc", element="Cu", a=3.6, size=size)
    rng = np.random.default_rng(seed)
    atoms.positions += rng.normal(scale=scale, size=atoms.positions.shape)
    atoms.symbols = rng.choice(list(elements), size=len(atoms)).tolist()
    return atoms


def graph_of(atoms, model, dtype=torch.float64):
    lookup = {e: k for k, e in enumerate(model.elements)}
    species = torch.tensor([lookup[s] for s in atoms.get_chemical_symbols()])
    return build_graph(
        positions=torch.tensor(atoms.positions, dtype=dtype),
        cell=torch.tensor(atoms.cell.array, dtype=dtype),
        species=species,
        neighbours=NeighbourList(cutoff=model.cutoff),
        pbc=atoms.pbc,
    )


@pytest.mark.parametrize("descriptor", SPECS)
@pytest.mark.parametrize("kind", ["mlip", "committee"])
def test_forces_are_minus_energy_gradient(kind, descriptor):
    elements, spec = ("Cu", "Ni"), SPECS[descriptor]
    if kind == "mlip":
        model = MLIP(elements=elements, descriptor=spec, hidden=(8, 8))
    else:
        model = Committee(elements=elements, descriptor=spec, hidden=(8,), n_members=3)
    atoms = rattled(elements, size=(2, 1, 1))
    atoms.calc = Calculator(randomise(model), "cpu")
    f = atoms.get_forces()
    assert np.abs(f).max() > 1e-2  # forces are not trivially zero
    np.testing.assert_allclose(f, central_difference_forces(atoms, h=1e-5), atol=1e-7)


@pytest.mark.parametrize("descriptor", SPECS)
def test_invariance_rotation_translation_permutation(descriptor):
    model = randomise(MLIP(elements=("Cu", "Ni"), descriptor=SPECS[descriptor], hidden=(8,)))
    atoms = rattled(("Cu", "Ni"), size=(2, 2, 1))
    out = evaluate(model, graph_of(atoms, model))
    q, _ = np.linalg.qr(np.random.default_rng(3).normal(size=(3, 3)))
    moved = atoms.copy()
    moved.positions = atoms.positions @ q.T + np.array([0.3, -1.2, 4.0])
    moved.cell = atoms.cell.array @ q.T
    out2 = evaluate(model, graph_of(moved, model))
    torch.testing.assert_close(out2["energies"], out["energies"], rtol=0, atol=1e-11)
    np.testing.assert_allclose(out2["forces"].numpy(), out["forces"].numpy() @ q.T, atol=1e-11)
    perm = np.random.default_rng(4).permutation(len(atoms))
    out3 = evaluate(model, graph_of(atoms[perm], model))
    torch.testing.assert_close(out3["energies"], out["energies"][perm], rtol=0, atol=1e-11)
    torch.testing.assert_close(out3["forces"], out["forces"][perm], rtol=0, atol=1e-11)


def test_multi_element_site_energies_depend_on_neighbour_species():
    model = randomise(MLIP(elements=("Cu", "Au"), descriptor=SPEC, hidden=(8,)))
    atoms = rattled(("Cu",), size=(2, 1, 1))
    e_cu = evaluate(model, graph_of(atoms, model))["energies"]
    swapped = atoms.copy()
    swapped.symbols[5] = "Au"
    e_mix = evaluate(model, graph_of(swapped, model))["energies"]
    # the Au atom gets another network; its neighbours see another species channel
    assert abs(float(e_mix[5] - e_cu[5])) > 1e-3
    d = atoms.get_distances(5, range(len(atoms)), mic=True)
    neighbour = int(np.argsort(d)[1])
    assert abs(float(e_mix[neighbour] - e_cu[neighbour])) > 1e-6


@pytest.mark.parametrize("descriptor", SPECS)
def test_energy_smooth_as_neighbour_crosses_cutoffs(descriptor):
    spec = SPECS[descriptor]
    model = randomise(MLIP(elements=("Cu",), descriptor=spec, hidden=(8,)))

    def energy(r):
        # a trimer: the third atom crosses the angular and then the radial cutoff
        atoms = Atoms("Cu3", positions=[[0, 0, 0], [2.5, 0, 0], [0, r, 0]], pbc=False)
        atoms.center(vacuum=6.0)
        out = evaluate(model, graph_of(atoms, model))
        return float(out["energy"]), out["forces"][2].numpy()

    for r_c in (spec.r_angular, spec.cutoff):
        below, above = energy(r_c - 1e-6), energy(r_c + 1e-6)
        assert abs(below[0] - above[0]) < 1e-9
        assert np.abs(below[1] - above[1]).max() < 1e-6  # forces continuous (C¹ or better)
    assert np.abs(energy(spec.cutoff - 1e-6)[1]).max() < 1e-6  # and zero at r_cut


def test_committee_batched_equals_member_by_member():
    committee = randomise(Committee(elements=("Cu", "Ni"), descriptor=SPEC, hidden=(8, 8)))
    graph = graph_of(rattled(("Cu", "Ni")), committee)
    energies, forces, _ = member_forces(committee, graph)
    energies_b, forces_b, _ = member_forces(committee, graph, batched=True)
    torch.testing.assert_close(forces_b, forces, rtol=0, atol=1e-12)
    for k in range(committee.n_members):
        out = evaluate(committee.member(k), graph)
        torch.testing.assert_close(energies[k], out["energies"], rtol=0, atol=1e-12)
        torch.testing.assert_close(forces[k], out["forces"], rtol=0, atol=1e-12)
    mean = evaluate(committee, graph)
    torch.testing.assert_close(mean["forces"], forces.mean(0), rtol=0, atol=1e-12)
    again = Committee.from_members([committee.member(k) for k in range(committee.n_members)])
    torch.testing.assert_close(again.member_energies(graph), energies.detach(), rtol=0, atol=0)
    # members differ (different seeds)
    assert float((forces[0] - forces[1]).abs().max()) > 1e-3


def test_float32_close_to_float64():
    model = randomise(Committee(elements=("Cu",), descriptor=SPEC, hidden=(16,)))
    atoms = rattled()
    ref = evaluate(model, graph_of(atoms, model))
    model32 = model.to(torch.float32)
    out = evaluate(model32, graph_of(atoms, model32, torch.float32))
    assert out["forces"].dtype == torch.float32
    np.testing.assert_allclose(out["energies"].double(), ref["energies"], atol=1e-4)
    np.testing.assert_allclose(out["forces"].double(), ref["forces"], atol=1e-4)


def test_save_load_round_trip(tmp_path, potentials_dir):
    committee = randomise(Committee(elements=("Cu", "Ni"), descriptor=SPEC, hidden=(8,)))
    committee.calibration = 1.7
    single = randomise(MLIP(elements=("Cu",), descriptor=SPEC, hidden=(4, 4)), seed=5)
    atoms = rattled(("Cu",))
    for model in (committee, single):
        path = save_potential(model, tmp_path / "p.pt", metadata={"note": "x", "rmse": [1.0]})
        loaded = load_potential(path)
        assert type(loaded) is type(model)
        assert loaded.metadata == {"note": "x", "rmse": [1.0]}
        graph = graph_of(atoms, model)
        a, b = evaluate(model, graph), evaluate(loaded, graph)
        assert torch.equal(a["energies"], b["energies"]) and torch.equal(a["forces"], b["forces"])
    assert load_potential(tmp_path / "p.pt").elements == ("Cu",)
    assert committee.calibration == 1.7
    assert load_potential(potentials_dir / "Cu_mishin1.eam.alloy").elements == ("Cu",)
    with pytest.raises(ValueError, match="suffix unknown"):
        load_potential(tmp_path / "p.xyz")


def test_calculator_forces_uncertainty():
    committee = randomise(Committee(elements=("Cu",), descriptor=SPEC, hidden=(8,)))
    committee.calibration = 2.5
    atoms = rattled()
    atoms.calc = Calculator(committee, "cpu")
    u = atoms.calc.get_property("forces_uncertainty", atoms)
    assert u.shape == (len(atoms),) and np.all(u > 0)
    _, forces, _ = member_forces(committee, graph_of(atoms, committee))
    np.testing.assert_allclose(u, 2.5 * force_spread(forces.detach()).numpy(), rtol=1e-12)
    spread = np.sqrt(((forces - forces.mean(0)) ** 2).sum(-1).mean(0).detach().numpy())
    np.testing.assert_allclose(u, 2.5 * spread, rtol=1e-12)
    # mean forces and stress agree with the generic path on the mean potential
    ref = Calculator(committee, "cpu")
    np.testing.assert_allclose(atoms.get_forces(), ref.get_forces(atoms), atol=1e-12)
    np.testing.assert_allclose(atoms.get_stress(), ref.get_stress(atoms), atol=1e-12)
    eam = Calculator(EAM.from_file("Cu_mishin1.eam.alloy"), "cpu")
    eam.get_forces(atoms)
    assert "forces_uncertainty" not in eam.results


def test_committee_forces_uncertainty_is_the_calibrated_member_spread():
    # u_i = c · sqrt(mean_m |F_m,i − F̄_i|²) with each member's forces from its own
    # stand-alone potential (the plain Calculator path), not from the committee's pass
    committee = randomise(
        Committee(elements=("Cu", "Ni"), descriptor=SPEC, hidden=(8,), n_members=3)
    )
    committee.calibration = 1.9
    atoms = rattled(("Cu", "Ni"))
    F = np.stack([Calculator(committee.member(k), "cpu").get_forces(atoms) for k in range(3)])
    spread = np.sqrt(((F - F.mean(0)) ** 2).sum(-1).mean(0))
    assert spread.min() > 1e-3  # members differ on every atom
    u = committee.forces_uncertainty(graph_of(atoms, committee))
    np.testing.assert_allclose(u.numpy(), 1.9 * spread, rtol=1e-10)
    u_calc = Calculator(committee, "cpu").get_property("forces_uncertainty", atoms)
    np.testing.assert_allclose(u_calc, 1.9 * spread, rtol=1e-10)


def test_triplet_counts_fcc():
    # the triplet counts quoted in ACSFSpec: 18 neighbours within 4 Å, 42 within 5 Å in fcc Cu
    # (the counts quoted in MomentSpec), so 18·17/2 and 42·41/2 pairs of them per atom
    atoms = crystal("fcc", element="Cu", a=3.615, size=(4, 4, 4))
    for r_a, per_atom in ((4.0, 153), (5.0, 861)):
        model = MLIP(elements=("Cu",), descriptor=ACSFSpec(cutoff=r_a))
        g = graph_of(atoms, model)
        centre, _ = torch.sort(torch.cat([g.i, g.j]))
        first, second = triplets(centre, g.n_atoms)
        assert first.numel() == per_atom * len(atoms)
        assert bool((centre[first] == centre[second]).all())


def test_case_file_kind_mlip(tmp_path):
    from atomistic.potentials import POTENTIAL_KINDS

    path = save_potential(MLIP(elements=("Cu",), descriptor=SPEC, hidden=(4,)), tmp_path / "m.pt")
    assert POTENTIAL_KINDS["mlip"].load(path).cutoff == SPEC.cutoff
