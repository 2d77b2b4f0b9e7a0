"""Moment-tensor descriptors: the triplet identity, float32, saving, cached Jacobians (forces,
invariance and smoothness are checked for both descriptors in test_mlip.py)."""

import itertools

import numpy as np
import pytest
import torch
from ase import Atoms

from atomistic import (
    Committee,
    MomentSpec,
    NeighbourList,
    build_graph,
    crystal,
    evaluate,
    load_potential,
    save_potential,
)
from atomistic.mlip.moments import MomentDescriptor, monomial_exponents

SPEC = MomentSpec(
    cutoff=4.0, angular_cutoff=3.5, radial_shift=(2.0, 2.5, 3.0, 3.5), angular_shift=(2.2, 3.0)
)


def graph_of(atoms, elements, cutoff, dtype=torch.float64):
    lookup = {e: k for k, e in enumerate(elements)}
    return build_graph(
        positions=torch.tensor(atoms.positions, dtype=dtype),
        cell=torch.tensor(atoms.cell.array, dtype=dtype),
        species=torch.tensor([lookup[s] for s in atoms.get_chemical_symbols()]),
        neighbours=NeighbourList(cutoff=cutoff),
        pbc=atoms.pbc,
    )


def randomise(model, seed=1):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.descriptor_mean.copy_(torch.rand(model.descriptor_mean.shape, generator=gen))
        model.descriptor_std.copy_(1 + torch.rand(model.descriptor_std.shape, generator=gen))
        model.energy_scale.fill_(0.3)
    return model


def rattled(elements=("Cu",), size=(2, 2, 2), seed=0, scale=0.1):
    atoms = crystal("fcc", element="Cu", a=3.6, size=size)
    rng = np.random.default_rng(seed)
    atoms.positions += rng.normal(scale=scale, size=atoms.positions.shape)
    atoms.symbols = rng.choice(list(elements), size=len(atoms)).tolist()
    return atoms


def polynomial_cutoff(r, r_c):
    x = min(r / r_c, 1.0)
    return 1.0 - 10 * x**3 + 15 * x**4 - 6 * x**5


@pytest.mark.parametrize("max_l", [2, 4])
def test_invariants_equal_explicit_triplet_sum(max_l):
    # I[l, (b,n), (b',n')] = Σ_{j∈b, k∈b'} R_n(r_ij) R_n'(r_ik) cos^l θ_jik, j = k included,
    # summed here atom by atom over explicit neighbour pairs (independent of the tensors)
    spec = MomentSpec(
        cutoff=4.0,
        angular_cutoff=3.6,
        radial_shift=(2.5,),
        angular_eta=(1.5, 0.7),
        angular_shift=(2.2, 3.1),
        max_l=max_l,
    )
    elements = ("Cu", "Ni")
    rng = np.random.default_rng(7)
    pos = rng.uniform(0, 4.5, size=(9, 3))
    keep = [0]
    for k in range(1, len(pos)):  # no pair closer than 1.6 Å
        if np.min(np.linalg.norm(pos[keep] - pos[k], axis=1)) > 1.6:
            keep.append(k)
    atoms = Atoms(
        [elements[k % 2] for k in range(len(keep))], positions=pos[keep], pbc=False, cell=[20] * 3
    )
    assert len(atoms) >= 6
    desc = MomentDescriptor(spec, len(elements))
    got = desc(graph_of(atoms, elements, spec.cutoff)).numpy()
    n_el, n_ang = len(elements), len(spec.angular_shift)
    k_ch = n_el * n_ang
    species = [elements.index(s) for s in atoms.get_chemical_symbols()]
    eta, mu = np.array(spec.angular_eta), np.array(spec.angular_shift)
    for i in range(len(atoms)):
        expect = np.zeros((max_l + 1, k_ch, k_ch))
        neighbours = []
        for j in range(len(atoms)):
            d = atoms.positions[j] - atoms.positions[i]
            r = np.linalg.norm(d)
            if j != i and r < spec.r_angular:
                radial = np.exp(-eta * (r - mu) ** 2) * polynomial_cutoff(r, spec.r_angular)
                neighbours.append((species[j], radial, d / r))
        for (bj, rj, uj), (bk, rk, uk) in itertools.product(neighbours, repeat=2):
            cos = float(uj @ uk)
            for n, m in itertools.product(range(n_ang), repeat=2):
                for l in range(max_l + 1):
                    expect[l, bj * n_ang + n, bk * n_ang + m] += rj[n] * rk[m] * cos**l
        rows, cols = np.triu_indices(k_ch)
        want = np.concatenate([expect[l][rows, cols] for l in range(max_l + 1)])
        assert np.abs(want).max() > 1e-2
        np.testing.assert_allclose(got[i, n_el * spec.n_radial :], want, rtol=1e-12, atol=1e-13)


def test_monomial_weights_reproduce_powers_of_the_dot_product():
    rng = np.random.default_rng(2)
    u, w = rng.normal(size=(2, 50, 3))
    desc = MomentDescriptor(MomentSpec(max_l=5), 1)
    mu, mw = (desc._monomials(torch.tensor(x)).numpy() for x in (u, w))
    exps = monomial_exponents(5)
    for l in range(6):
        cols = [k for k, e in enumerate(exps) if e[0] == l]
        assert len(cols) == (l + 1) * (l + 2) // 2
        np.testing.assert_allclose((mu[:, cols] * mw[:, cols]).sum(1), (u * w).sum(1) ** l)


def test_isolated_atom_and_float32():
    model = randomise(Committee(elements=("Cu",), descriptor=SPEC, hidden=(16,)))
    lone = Atoms("Cu", positions=[[0, 0, 0]], pbc=False, cell=[10] * 3)
    out = evaluate(model, graph_of(lone, ("Cu",), SPEC.cutoff))
    assert torch.isfinite(out["energies"]).all() and float(out["forces"].abs().max()) == 0.0
    atoms = rattled()
    ref = evaluate(model, graph_of(atoms, ("Cu",), SPEC.cutoff))
    model32 = model.to(torch.float32)
    out = evaluate(model32, graph_of(atoms, ("Cu",), SPEC.cutoff, torch.float32))
    np.testing.assert_allclose(out["forces"].double(), ref["forces"], atol=1e-4)


def test_save_load_round_trip_keeps_the_descriptor(tmp_path):
    committee = randomise(Committee(elements=("Cu", "Ni"), descriptor=SPEC, hidden=(8,)))
    path = save_potential(committee, tmp_path / "m.pt")
    loaded = load_potential(path)
    assert loaded.spec == SPEC and isinstance(loaded.descriptor, MomentDescriptor)
    graph = graph_of(rattled(("Cu", "Ni")), ("Cu", "Ni"), SPEC.cutoff)
    assert torch.equal(evaluate(committee, graph)["forces"], evaluate(loaded, graph)["forces"])
    single = committee.member(1)
    assert single.spec == SPEC


def test_spec_rejects_bad_values():
    with pytest.raises(ValueError, match="angular_cutoff"):
        MomentSpec(cutoff=4.0, angular_cutoff=4.5)
    with pytest.raises(ValueError, match="angular_eta"):
        MomentSpec(angular_eta=(1.0, 2.0), angular_shift=(2.0, 3.0, 4.0))
    with pytest.raises(ValueError, match="max_l"):
        MomentSpec(max_l=-1)
    assert MomentSpec().n_features(1) == 8 + 4 * 6
    assert MomentSpec.from_dict(MomentSpec().to_dict()) == MomentSpec()


def test_cached_jacobian_training_terms_equal_autograd_through_the_model():
    from atomistic.mlip.batches import make_batch
    from atomistic.mlip.jacobian import descriptor_jacobian
    from atomistic.mlip.training import TrainingConfig, _member_terms, batch_loss

    elements = ("Cu", "Ni")
    frames = []
    for seed in range(3):
        atoms = rattled(elements, size=(2, 1, 1), seed=seed)
        atoms.info["energy"] = -10.0 * seed
        atoms.info["stress"] = np.linspace(-0.01, 0.01, 6)
        atoms.arrays["forces"] = np.random.default_rng(seed).normal(size=(len(atoms), 3))
        frames.append(atoms)
    committee = randomise(Committee(elements=elements, descriptor=SPEC, hidden=(8,), n_members=3))
    batch = make_batch(frames, [0, 1, 2], elements=elements, cutoff=SPEC.cutoff)
    config = TrainingConfig(stress_noise=0.01)
    plain = _member_terms(committee, batch, create_graph=False, batched=False)
    loss = batch_loss(committee, batch, config=config)
    (grad,) = torch.autograd.grad(loss, committee.networks.weights[0])
    batch.cache = descriptor_jacobian(committee.descriptor, batch.graph)
    cached = _member_terms(committee, batch, create_graph=False, batched=False)
    for key in ("energy", "forces", "stress", "forces_all"):
        torch.testing.assert_close(cached[key], plain[key], rtol=1e-10, atol=1e-12)
    loss_c = batch_loss(committee, batch, config=config)
    (grad_c,) = torch.autograd.grad(loss_c, committee.networks.weights[0])
    torch.testing.assert_close(loss_c, loss, rtol=1e-12, atol=0)
    torch.testing.assert_close(grad_c, grad, rtol=1e-9, atol=1e-12)


def test_train_config_selects_the_descriptor(tmp_path):
    from atomistic import ACSFSpec
    from multiscale.config.train import load_train_config
    from multiscale.errors import CaseError

    (tmp_path / "d.extxyz").write_text("")
    head = '[data]\nfiles = ["d.extxyz"]\n[model]\ncutoff = 4.0\n'
    cases = {
        "": MomentSpec(cutoff=4.0),
        'descriptor = "acsf"\nzeta = [1.0, 2.0]\n': ACSFSpec(cutoff=4.0, zeta=(1.0, 2.0)),
        "max_l = 2\nangular_shift = [2.0, 3.0]\nangular_eta = [1.0, 3.0]\n": MomentSpec(
            cutoff=4.0, max_l=2, angular_shift=(2.0, 3.0), angular_eta=(1.0, 3.0)
        ),
    }
    for k, (extra, spec) in enumerate(cases.items()):
        (tmp_path / f"t{k}.toml").write_text(head + extra)
        assert load_train_config(tmp_path / f"t{k}.toml").model.spec() == spec
    (tmp_path / "bad.toml").write_text(
        head + "angular_shift = [2.0, 3.0]\nangular_eta = [1, 2, 3]\n"
    )
    with pytest.raises(CaseError, match="angular_eta"):
        load_train_config(tmp_path / "bad.toml")


def test_library_defaults_are_the_train_config_defaults():
    """``MLIP``/``Committee`` without a descriptor build what ``[model]`` defaults to."""
    from atomistic import MLIP
    from multiscale.config.train import ModelSection

    section = ModelSection()
    assert section.spec() == MomentSpec()
    for model in (MLIP(elements=("Cu",)), Committee(elements=("Cu",), n_members=2)):
        assert model.spec == section.spec()
        assert model.hidden == section.hidden
        assert model.networks.activation == section.activation
