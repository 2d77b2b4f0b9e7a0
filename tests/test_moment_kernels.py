"""Compiled moment-tensor kernels against the torch path and finite differences: features,
first and second derivatives, every member's forces, the networks' written-out backward."""

import numpy as np
import pytest
import torch

from atomistic import Committee, MomentSpec, NeighbourList, build_graph, crystal
from atomistic.mlip.committee import member_forces
from atomistic.mlip.moments import MomentDescriptor
from atomistic.mlip.network import ElementNetworks

ELEMENTS = ("Cu", "Ni")


def spec(kind="polynomial", max_l=3, uniform=False):
    """Two elements; ``uniform``: one G2 width on evenly spaced shifts (the recurrence)."""
    return MomentSpec(
        cutoff=4.2,
        angular_cutoff=3.6,
        radial_eta=(3.0,) if uniform else (2.0, 3.0, 4.0),
        radial_shift=(1.8, 2.3, 2.8, 3.3, 3.8) if uniform else (2.0, 2.7, 3.4),
        angular_eta=(1.5, 2.5),
        angular_shift=(2.3, 3.1),
        max_l=max_l,
        cutoff_function=kind,
    )


def graph_of(size=(2, 2, 2), seed=0, dtype=torch.float64, skin=0.0):
    """A rattled two-element fcc cell (``size=(1, 1, 1)``: atoms see their own images);
    ``skin``: the list also holds the pairs up to that far beyond the cutoff."""
    atoms = crystal("fcc", element="Cu", a=3.6, size=size)
    rng = np.random.default_rng(seed)
    atoms.positions += rng.normal(scale=0.12, size=atoms.positions.shape)
    species = torch.tensor(rng.integers(0, 2, len(atoms)))
    return build_graph(
        positions=torch.tensor(atoms.positions, dtype=dtype),
        cell=torch.tensor(atoms.cell.array, dtype=dtype),
        species=species,
        neighbours=NeighbourList(cutoff=4.2, skin=skin),
    )


def derivatives(descriptor, graph, compiled, lam, w):
    """``G``, ``∂(Λ·G)/∂r``, ``(∂G/∂r) w`` (as ``∂/∂Λ``) and ``(∂²(Λ·G)/∂r²) w``."""
    descriptor.compiled = compiled
    vec = graph.vectors.detach().requires_grad_(True)
    lam = lam.clone().requires_grad_(True)
    g = descriptor(graph.with_vectors(vec))
    (vjp,) = torch.autograd.grad((g * lam).sum(), vec, create_graph=True)
    hvp, jvp = torch.autograd.grad((vjp * w).sum(), (vec, lam))
    return g.detach(), vjp.detach(), jvp, hvp


@pytest.mark.parametrize(
    ("kind", "max_l", "uniform"),
    [("polynomial", 3, False), ("cosine", 2, False), ("polynomial", 4, True)],
)
@pytest.mark.parametrize("size", [(2, 2, 2), (1, 1, 1)])
def test_compiled_equals_torch_to_second_order(kind, max_l, uniform, size):
    descriptor = MomentDescriptor(spec(kind, max_l, uniform), len(ELEMENTS))
    assert (descriptor.compiled_state(graph_of()) is not None) and uniform == (
        descriptor._plan.radial_ratio.size > 0
    )
    graph = graph_of(size)
    assert descriptor.compiled_state(graph) is not None  # the compiled path is the one tested
    gen = torch.Generator().manual_seed(3)
    lam = torch.randn((graph.n_atoms, descriptor.n_features), generator=gen, dtype=torch.float64)
    w = torch.randn(graph.vectors.shape, generator=gen, dtype=torch.float64)
    fast = derivatives(descriptor, graph, True, lam, w)
    plain = derivatives(descriptor, graph, False, lam, w)
    for a, b in zip(fast, plain, strict=True):
        assert float(b.abs().max()) > 1e-3  # nothing trivially zero
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=0, atol=1e-12 * float(b.abs().max()))


def test_compiled_hessian_vector_product_matches_finite_differences():
    descriptor = MomentDescriptor(spec(), len(ELEMENTS))
    graph = graph_of()
    gen = torch.Generator().manual_seed(4)
    lam = torch.randn((graph.n_atoms, descriptor.n_features), generator=gen, dtype=torch.float64)
    w = torch.randn(graph.vectors.shape, generator=gen, dtype=torch.float64)

    def gradient(vec):
        vec = vec.detach().requires_grad_(True)
        (g,) = torch.autograd.grad((descriptor(graph.with_vectors(vec)) * lam).sum(), vec)
        return g

    _, _, _, hvp = derivatives(descriptor, graph, True, lam, w)
    h = 1e-5
    fd = (gradient(graph.vectors + h * w) - gradient(graph.vectors - h * w)) / (2 * h)
    np.testing.assert_allclose(hvp.numpy(), fd.numpy(), atol=1e-6 * float(fd.abs().max()))


def test_compiled_path_only_for_cpu_float64_and_no_third_derivative():
    descriptor = MomentDescriptor(spec(), len(ELEMENTS))
    assert descriptor.compiled_state(graph_of(dtype=torch.float32)) is None
    graph = graph_of()
    vec = graph.vectors.detach().requires_grad_(True)
    g = descriptor(graph.with_vectors(vec))
    (d1,) = torch.autograd.grad(g.sum(), vec, create_graph=True)
    (d2,) = torch.autograd.grad((d1**2).sum(), vec, create_graph=True)
    with pytest.raises(RuntimeError):
        torch.autograd.grad(d2.sum(), vec)


@pytest.mark.parametrize("activation", ["silu", "tanh"])
def test_written_out_network_backward_equals_autograd(activation):
    nets = ElementNetworks(
        n_members=3, n_elements=2, n_inputs=5, hidden=(7, 6, 4), activation=activation
    )
    with torch.no_grad():
        for b in nets.biases:
            b.normal_()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn((11, 5), generator=gen, dtype=torch.float64, requires_grad=True)
    species = torch.tensor([0, 1, 1, 0, 1, 0, 0, 1, 1, 1, 0])
    y, dy = nets.input_gradients(x, species)
    ref = nets(x, species)
    auto = torch.stack(
        [torch.autograd.grad(ref[m].sum(), x, retain_graph=True)[0] for m in range(3)]
    )
    np.testing.assert_allclose(y.detach().numpy(), ref.detach().numpy(), rtol=1e-13, atol=1e-16)
    np.testing.assert_allclose(dy.detach().numpy(), auto.numpy(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("activation", ["silu", "tanh"])
def test_network_backward_without_autograd_in_blocks_equals_autograd(activation):
    """Without autograd the networks run in blocks of atoms: every block's rows must be right."""
    from atomistic.mlip.network import NETWORK_BLOCK

    nets = ElementNetworks(
        n_members=3, n_elements=2, n_inputs=5, hidden=(7, 6), activation=activation
    )
    with torch.no_grad():
        for b in nets.biases:
            b.normal_()
    n = 5 * NETWORK_BLOCK + 37  # two whole blocks and a short one per element, at least
    gen = torch.Generator().manual_seed(1)
    x = torch.randn((n, 5), generator=gen, dtype=torch.float64)
    species = torch.randint(0, 2, (n,), generator=gen)
    assert int((species == 0).sum()) > 2 * NETWORK_BLOCK < int((species == 1).sum())
    with torch.no_grad():
        y, dy = nets.input_gradients(x, species)
    xg = x.clone().requires_grad_(True)
    ref = nets(xg, species)
    auto = torch.stack(
        [torch.autograd.grad(ref[m].sum(), xg, retain_graph=True)[0] for m in range(3)]
    )
    np.testing.assert_allclose(y.numpy(), ref.detach().numpy(), rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(dy.numpy(), auto.numpy(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("create_graph", [False, True])
def test_member_forces_compiled_equal_plain(create_graph):
    model = Committee(elements=ELEMENTS, descriptor=spec(), hidden=(8, 8), n_members=3)
    with torch.no_grad():
        model.descriptor_std.fill_(0.7)
        model.energy_scale.fill_(0.4)
    graph = graph_of(skin=0.6)  # pairs beyond r_cut, as a list reused between steps has
    assert float(graph.vectors.norm(dim=1).max()) > model.descriptor.spec.cutoff
    out = {}
    for compiled in (True, False):
        model.descriptor.compiled = compiled
        e, f, g = member_forces(model, graph, create_graph=create_graph)
        grads = None
        if create_graph:
            # the output bias does not enter the forces
            params = list(model.parameters())[:-1]
            grads = torch.autograd.grad((f**2).sum(), params)
        out[compiled] = (e, f, g, grads)
    (e1, f1, g1, p1), (e0, f0, g0, p0) = out[True], out[False]
    assert f1.requires_grad == create_graph
    for a, b in ((e1, e0), (f1, f0), (g1, g0)):
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), atol=1e-12)
    if create_graph:
        for a, b in zip(p1, p0, strict=True):
            np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-10 * float(b.abs().max()))


@pytest.mark.parametrize("requires_grad", [False, True])
def test_forces_of_many_pair_gradients_equal_index_add(requires_grad):
    """Every member's forces from its pair gradients: one compiled pass (no autograd), or
    one differentiable scatter per member; both ``F_i = Σ_{i→·} g − Σ_{·→i} g``."""
    from atomistic.mlip.committee import forces_from_edge_gradients

    graph = graph_of(skin=0.6)
    gen = torch.Generator().manual_seed(2)
    g = torch.randn((3, graph.i.shape[0], 3), generator=gen, dtype=torch.float64)
    g.requires_grad_(requires_grad)
    f = forces_from_edge_gradients(graph, g)
    assert f.requires_grad == requires_grad
    ref = torch.zeros((3, graph.n_atoms, 3), dtype=torch.float64)
    ref = ref.index_add(1, graph.i, g.detach()).index_add(1, graph.j, -g.detach())
    np.testing.assert_allclose(f.detach().numpy(), ref.numpy(), atol=1e-13)


@pytest.mark.parametrize("n_members", [1, 3])
def test_evaluate_without_autograd_equals_autograd(n_members):
    """``evaluate`` of a network potential takes the compiled path (no autograd): the mean's
    energies, forces and virials must be autograd's on the plain torch path."""
    from atomistic import MLIP
    from atomistic.potentials.protocol import evaluate

    if n_members == 1:
        model = MLIP(elements=ELEMENTS, descriptor=spec(), hidden=(8, 8))
    else:
        model = Committee(elements=ELEMENTS, descriptor=spec(), hidden=(8, 8), n_members=3)
    with torch.no_grad():
        model.descriptor_std.fill_(0.7)
        model.energy_scale.fill_(0.4)
    graph = graph_of(skin=0.6)
    assert model.energy_forces(graph) is not None  # the compiled path applies
    fast = evaluate(model, graph, virial=True, per_atom_virial=True)
    model.descriptor.compiled = False
    assert model.energy_forces(graph) is None
    vec = graph.vectors.detach().requires_grad_(True)
    energies = model(graph.with_vectors(vec))
    (g,) = torch.autograd.grad(energies.sum(), vec)
    forces = torch.zeros((graph.n_atoms, 3), dtype=g.dtype)
    forces.index_add_(0, graph.i, g).index_add_(0, graph.j, -g)  # r_e = x_j - x_i
    virial = vec.detach().T @ g
    assert float(forces.abs().max()) > 1e-2
    np.testing.assert_allclose(fast["energies"].numpy(), energies.detach().numpy(), atol=1e-13)
    np.testing.assert_allclose(fast["forces"].numpy(), forces.numpy(), atol=1e-12)
    np.testing.assert_allclose(
        fast["virial"].numpy(), (0.5 * (virial + virial.T)).numpy(), atol=1e-11
    )
    np.testing.assert_allclose(fast["virials"].sum(0).numpy(), fast["virial"].numpy(), atol=1e-11)


@pytest.mark.parametrize("activation", ["silu", "tanh"])
def test_hessian_operator_equals_autograd_double_backward(activation):
    from atomistic.mlip.hessian import _autograd_operator

    model = Committee(
        elements=ELEMENTS, descriptor=spec(), hidden=(8, 6), n_members=2, activation=activation
    )
    with torch.no_grad():
        model.descriptor_std.fill_(0.7)
        model.energy_scale.fill_(0.4)
    graph = graph_of()
    gen = torch.Generator().manual_seed(5)
    weights = torch.rand(graph.n_atoms, generator=gen, dtype=torch.float64)
    v = torch.randn((graph.n_atoms, 3), generator=gen, dtype=torch.float64)
    fast = model.hessian_operator(graph, weights)(v)
    plain = _autograd_operator(model, graph, weights)(v)
    assert float(plain.abs().max()) > 1e-2
    np.testing.assert_allclose(fast.numpy(), plain.numpy(), atol=1e-12 * float(plain.abs().max()))


def test_float32_hessian_operator_runs_the_kernels_in_float64():
    import copy

    from atomistic.mlip.hessian import _autograd_operator, _compiled_state

    model = Committee(elements=ELEMENTS, descriptor=spec(), hidden=(8, 6), n_members=2)
    graph, graph32 = graph_of(), graph_of(dtype=torch.float32)
    model32 = copy.deepcopy(model).to(torch.float32)
    assert _compiled_state(model32, graph32) is not None
    gen = torch.Generator().manual_seed(6)
    weights = torch.rand(graph.n_atoms, generator=gen, dtype=torch.float64)
    v = torch.randn((graph.n_atoms, 3), generator=gen, dtype=torch.float64)
    exact = _autograd_operator(model, graph, weights)(v)
    fast = model32.hessian_operator(graph32, weights.float())(v.float())
    assert fast.dtype == torch.float32
    scale = float(exact.abs().max())
    np.testing.assert_allclose(fast.double().numpy(), exact.numpy(), atol=1e-5 * scale)


@pytest.mark.parametrize(
    ("kind", "max_l", "uniform"),
    [("polynomial", 3, False), ("cosine", 2, False), ("polynomial", 4, True)],
)
@pytest.mark.parametrize("size", [(2, 2, 2), (1, 1, 1)])
def test_linearised_moments_equal_the_state_kernels(kind, max_l, uniform, size):
    from atomistic.mlip.moment_linearised import LinearisedMoments

    descriptor = MomentDescriptor(spec(kind, max_l, uniform), len(ELEMENTS))
    graph = graph_of(size)
    _, state = descriptor.compiled_state(graph)
    rng = np.random.default_rng(7)
    n, d = graph.n_atoms, descriptor.n_features
    rows = rng.random(n) < 0.7
    lam, dlam = (rng.normal(size=(n, d)) * rows[:, None] for _ in range(2))
    w = rng.normal(size=graph.vectors.shape)
    linear = LinearisedMoments(state, lam, rows)
    for _ in range(2):  # a second product at the same state reuses the linearisation
        w = rng.normal(size=w.shape)
        jvp = state.jvp(w[None], keep=True)[0]
        hvp = state.hvp(lam[None], w[None], dlam[None], kept=True)
        fast_jvp = linear.jvp(w)
        fast_hvp = linear.hvp(w, dlam)
        assert not fast_jvp[~rows].any()
        assert float(np.abs(hvp).max()) > 1e-2
        scale = float(np.abs(jvp[rows]).max())
        np.testing.assert_allclose(fast_jvp[rows], jvp[rows], atol=1e-12 * scale)
        np.testing.assert_allclose(fast_hvp, hvp, atol=1e-12 * float(np.abs(hvp).max()))


@pytest.mark.parametrize("linearised", [True, False])
def test_hessian_operator_with_unweighted_atoms_equals_autograd(monkeypatch, linearised):
    from atomistic.mlip import hessian

    if not linearised:
        monkeypatch.setattr(hessian, "LINEARISED_MAX_BYTES", 0)
    model = Committee(elements=ELEMENTS, descriptor=spec(), hidden=(8, 6), n_members=2)
    with torch.no_grad():
        model.descriptor_std.fill_(0.7)
    graph = graph_of()
    gen = torch.Generator().manual_seed(8)
    weights = torch.rand(graph.n_atoms, generator=gen, dtype=torch.float64)
    weights[::3] = 0.0  # a pad: weight 0, its positions still enter its neighbours' energies
    v = torch.randn((graph.n_atoms, 3), generator=gen, dtype=torch.float64)
    fast = model.hessian_operator(graph, weights)(v)
    plain = hessian._autograd_operator(model, graph, weights)(v)
    assert float(plain[::3].abs().max()) > 1e-3
    np.testing.assert_allclose(fast.numpy(), plain.numpy(), atol=1e-12 * float(plain.abs().max()))


def test_weighted_energy_gradient_equals_autograd(monkeypatch):
    """Blended energy and gradient without autograd (networks on the weighted atoms only)."""
    from coupling.blended_atoms import BlendedAtoms

    model = Committee(elements=ELEMENTS, descriptor=spec(), hidden=(8, 6), n_members=3)
    with torch.no_grad():
        model.descriptor_std.fill_(0.7)
        model.energy_shift.fill_(-3.5)
    graph = graph_of()
    n = graph.n_atoms
    rng = np.random.default_rng(10)
    atoms = crystal("fcc", element="Cu", a=3.6, size=(2, 2, 2))
    beta = np.where(rng.random(n) < 0.7, rng.random(n), 0.0)
    blended = BlendedAtoms(
        potential=model,
        reference_positions=atoms.positions,
        symbols=[ELEMENTS[s] for s in graph.species],
        beta=beta,
        cell=atoms.cell.array,
        pbc=(True, True, True),
        device="cpu",
    )
    u = rng.normal(scale=0.1, size=(n, 3))
    x = blended._positions(u, grad=False)
    assert model.weighted_energy_gradient(blended._graph(x), blended.beta) is not None
    fast = blended.energy_gradient(u)
    monkeypatch.setattr(Committee, "weighted_energy_gradient", lambda *args: None)
    plain = blended.energy_gradient(u)
    assert abs(fast[0] - plain[0]) <= 1e-12 * abs(plain[0])
    assert float(np.abs(plain[1][beta == 0]).max()) > 1e-3  # pads feel their neighbours
    np.testing.assert_allclose(fast[1], plain[1], atol=1e-12 * float(np.abs(plain[1]).max()))


def test_blended_hessian_vector_follows_the_atoms():
    """A product at a new state uses that state, never the linearisation of the last one."""
    from coupling.blended_atoms import BlendedAtoms

    model = Committee(elements=("Cu",), descriptor=spec(), hidden=(8, 6), n_members=2)
    atoms = crystal("fcc", element="Cu", a=3.6, size=(2, 2, 2))
    n = len(atoms)
    rng = np.random.default_rng(9)
    beta = np.where(rng.random(n) < 0.75, rng.random(n), 0.0)

    def blended():
        return BlendedAtoms(
            potential=model,
            reference_positions=atoms.positions,
            symbols=["Cu"] * n,
            beta=beta,
            cell=atoms.cell.array,
            pbc=(True, True, True),
            device="cpu",
        )

    reused = blended()
    v = rng.normal(size=(n, 3))
    for _ in range(3):
        u = rng.normal(scale=0.1, size=(n, 3))
        hv = reused.hessian_vector(u, v)
        np.testing.assert_array_equal(reused.hessian_vector(u, v), hv)
        np.testing.assert_allclose(hv, blended().hessian_vector(u, v), rtol=0, atol=1e-12)
        h = 1e-5
        fd = (reused.energy_gradient(u + h * v)[1] - reused.energy_gradient(u - h * v)[1]) / (2 * h)
        np.testing.assert_allclose(hv, fd, atol=1e-6 * float(np.abs(fd).max()))
