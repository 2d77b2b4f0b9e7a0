"""The compiled (numba) EAM path against the torch path, LAMMPS and finite differences.

Energies, forces and per-atom virials against LAMMPS (1e-8 eV/atom, 1e-6 eV/Å); the weighted
pair gradient, its Hessian-vector product and the derivative of that product in the weights
against the torch path's double backward and against central differences; which path runs
(CPU float64 compiled; float32, ``compiled = False`` and ``MULTISCALE_TORCH_ONLY=1`` torch).
"""

import numpy as np
import pytest
import torch
from ase.build import bulk
from test_eam import _lammps_site_energies_and_virials

from atomistic.calculator import Calculator
from atomistic.mlip.oracles import LammpsCalculator
from atomistic.neighbours import NeighbourList, build_graph
from atomistic.pair_ops import pair_scatter
from atomistic.potentials import eam_kernels
from atomistic.potentials.eam import EAM
from atomistic.potentials.protocol import evaluate, species_indices

FILES = [
    ("Cu_mishin1.eam.alloy", "eam/alloy", ["Cu"]),
    ("AlCu.eam.alloy", "eam/alloy", ["Cu", "Al"]),
    ("CuZr_mm.eam.fs", "eam/fs", ["Cu", "Zr"]),
]


def _atoms(rng, elements, *, a=3.7, periodic=True, scale=1.0):
    atoms = bulk("Cu", "fcc", a=a * scale).repeat((3, 3, 3))  # primitive cell: triclinic
    atoms.set_chemical_symbols(rng.choice(elements, size=len(atoms)).tolist())
    del atoms[[3, 11]]
    atoms.set_cell(atoms.cell.array @ (np.eye(3) + 0.02 * rng.standard_normal((3, 3))), True)
    atoms.positions += rng.normal(scale=0.08 * scale, size=atoms.positions.shape)
    atoms.pbc = periodic
    return atoms


@pytest.fixture
def calls(monkeypatch):
    """Counts the calls of the compiled path (autograd site energies or fused forces)."""
    n = [0]

    def counting(inner):
        def counted(*args, **kwargs):
            n[0] += 1
            return inner(*args, **kwargs)

        return counted

    for name in ("site_energies", "energy_forces"):
        monkeypatch.setattr(eam_kernels, name, counting(getattr(eam_kernels, name)))
    return n


def _graph(eam, atoms, positions):
    species = species_indices(atoms.get_chemical_symbols(), eam.elements)
    return build_graph(
        positions=positions,
        cell=torch.as_tensor(atoms.cell.array, dtype=positions.dtype),
        species=species,
        neighbours=NeighbourList(cutoff=eam.cutoff, skin=0.5),
        pbc=atoms.pbc,
    )


@pytest.mark.parametrize("file, style, elements", FILES)
def test_compiled_matches_lammps(potentials_dir, rng, calls, file, style, elements):
    f = potentials_dir / file
    atoms = _atoms(rng, elements)
    ref = atoms.copy()
    ref.calc = LammpsCalculator(style, f, elements)
    atoms.calc = Calculator(EAM.from_file(f), device="cpu")
    de = abs(atoms.get_potential_energy() - ref.get_potential_energy()) / len(atoms)
    assert calls[0] > 0
    assert de < 1e-8
    assert np.abs(atoms.get_forces() - ref.get_forces()).max() < 1e-6
    e_ref, w_ref = _lammps_site_energies_and_virials(atoms, style, f, elements)
    w = atoms.get_stresses() * atoms.get_volume()
    assert np.abs(atoms.get_potential_energies() - e_ref).max() < 1e-8
    assert np.abs(w - w_ref).max() < 1e-6


@pytest.mark.parametrize("scale", [0.8, 1.0, 2.1])  # beyond ρ_max, around a0, near r_cut
@pytest.mark.parametrize("periodic", [True, False])
def test_compiled_matches_torch_path(potentials_dir, rng, calls, scale, periodic):
    eam = EAM.from_file(potentials_dir / "CuZr_mm.eam.fs")
    atoms = _atoms(rng, ["Cu", "Zr"], periodic=periodic, scale=scale)
    out, used = {}, []
    for compiled in (True, False):
        eam.compiled = compiled
        atoms.calc = Calculator(eam, device="cpu")
        out[compiled] = (atoms.get_potential_energies(), atoms.get_forces(), atoms.get_stresses())
        used.append(calls[0])
    assert used[0] > 0 and used[1] == used[0]
    for a, b in zip(out[True], out[False], strict=True):
        assert np.abs(a - b).max() < 1e-10 * max(1.0, np.abs(b).max())


def _derivatives(eam, atoms, x0, w, v):
    """``E_w``, ``∂E_w/∂x``, ``H_w v`` and ``∂(v·∂E_w/∂x)/∂w`` by double backward."""
    x = torch.as_tensor(x0).clone().requires_grad_(True)
    wt = torch.as_tensor(w).clone().requires_grad_(True)
    energy = (wt * eam(_graph(eam, atoms, x))).sum()
    (g,) = torch.autograd.grad(energy, x, create_graph=True)
    hv, dw = torch.autograd.grad((g * torch.as_tensor(v)).sum(), (x, wt))
    return float(energy.detach()), g.detach().numpy(), hv.numpy(), dw.numpy()


@pytest.mark.parametrize("file, style, elements", FILES)
@pytest.mark.parametrize("periodic", [True, False])
def test_hessian_vector_product(potentials_dir, rng, calls, file, style, elements, periodic):
    eam = EAM.from_file(potentials_dir / file)
    atoms = _atoms(rng, elements, periodic=periodic)
    n = len(atoms)
    w = rng.uniform(0.0, 1.0, n)
    w[:5] = 0.0  # pad atoms of a coupled problem
    v = rng.standard_normal((n, 3))
    x0 = atoms.positions.copy()
    e, g, hv, dw = _derivatives(eam, atoms, x0, w, v)
    assert calls[0] == 1
    eam.compiled = False
    e_t, g_t, hv_t, dw_t = _derivatives(eam, atoms, x0, w, v)
    assert abs(e - e_t) < 1e-10 * abs(e_t)
    assert np.abs(g - g_t).max() < 1e-10 * np.abs(g_t).max()
    assert np.abs(hv - hv_t).max() < 1e-10 * np.abs(hv_t).max()
    assert np.abs(dw - dw_t).max() < 1e-10 * np.abs(dw_t).max()
    # against central differences of the compiled gradient and site energies; the tables are
    # C¹, so a pair that crosses a knot within ±h adds an O(h) error (2e-5 relative at
    # h = 1e-5 Å with CuZr_mm's fine grid)
    eam.compiled = True
    h = 1e-6

    def at(x):
        xt = torch.as_tensor(x).requires_grad_(True)
        eps = eam(_graph(eam, atoms, xt))
        (gx,) = torch.autograd.grad((torch.as_tensor(w) * eps).sum(), xt)
        return eps.detach().numpy(), gx.numpy()

    (ep, gp), (em, gm) = at(x0 + h * v), at(x0 - h * v)
    assert np.abs((gp - gm) / (2 * h) - hv).max() < 1e-5 * np.abs(hv).max()
    assert np.abs((ep - em) / (2 * h) - dw).max() < 1e-6 * np.abs(dw).max()
    step = 1e-5 * np.eye(n * 3)[7].reshape(n, 3)
    (ep, _), (em, _) = at(x0 + step), at(x0 - step)
    assert abs((w @ (ep - em)) / 2e-5 - g.reshape(-1)[7]) < 1e-6 * np.abs(g).max()


def test_third_derivative_raises(potentials_dir, rng):
    eam = EAM.from_file(potentials_dir / "Cu_mishin1.eam.alloy")
    atoms = _atoms(rng, ["Cu"])
    x = torch.as_tensor(atoms.positions).requires_grad_(True)
    (g,) = torch.autograd.grad(eam(_graph(eam, atoms, x)).sum(), x, create_graph=True)
    (hv,) = torch.autograd.grad(g.sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="no third derivatives"):
        torch.autograd.grad(hv.sum(), x)


def test_torch_path_where_compiled_does_not_apply(potentials_dir, rng, calls, monkeypatch):
    eam = EAM.from_file(potentials_dir / "Cu_mishin1.eam.alloy")
    atoms = _atoms(rng, ["Cu"])
    x = torch.as_tensor(atoms.positions)
    e64 = eam(_graph(eam, atoms, x)).sum()
    assert calls[0] == 1
    eam32 = EAM.from_file(eam.source).to(dtype=torch.float32)
    e32 = eam32(_graph(eam32, atoms, x.float())).sum()
    assert calls[0] == 1
    assert abs(float(e32) - float(e64)) < 1e-5 * abs(float(e64))
    for name in ("MULTISCALE_TORCH_ONLY", "MULTISCALE_EAM_TORCH"):  # the new name and the old
        monkeypatch.setenv(name, "1")
        assert abs(float(eam(_graph(eam, atoms, x)).sum()) - float(e64)) < 1e-10 * abs(float(e64))
        assert calls[0] == 1
        monkeypatch.setenv(name, "0")
    eam(_graph(eam, atoms, x))
    assert calls[0] == 2


def test_threads_give_the_same_numbers(potentials_dir, rng):
    eam = EAM.from_file(potentials_dir / "CuZr_mm.eam.fs")
    atoms = _atoms(rng, ["Cu", "Zr"])
    threads = torch.get_num_threads()
    out = []
    try:
        for t in (1, 2):
            torch.set_num_threads(t)
            atoms.calc = Calculator(eam, device="cpu")
            out.append((atoms.get_potential_energies(), atoms.get_forces()))
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(*out, strict=True):
        assert np.abs(a - b).max() < 1e-12 * max(1.0, np.abs(b).max())


@pytest.mark.parametrize("file, style, elements", FILES)
@pytest.mark.parametrize("periodic", [True, False])
def test_fused_energy_forces_match_autograd(potentials_dir, rng, file, style, elements, periodic):
    """``evaluate`` (fused kernel, from positions or from given vectors) against autograd on
    the compiled site energies, with and without per-atom virials."""
    eam = EAM.from_file(potentials_dir / file)
    atoms = _atoms(rng, elements, periodic=periodic)
    x = torch.as_tensor(atoms.positions)
    graph = _graph(eam, atoms, x)
    assert graph.source is not None and graph._vectors is None  # vectors not computed yet
    fused = evaluate(eam, graph, forces=True, virial=True, per_atom_virial=True)
    assert graph._vectors is None  # the kernel read positions and shifts
    given = evaluate(eam, graph.with_vectors(graph.vectors), forces=True, per_atom_virial=True)
    vectors = graph.vectors.detach().requires_grad_(True)
    energies = eam(graph.with_vectors(vectors))
    (g,) = torch.autograd.grad(energies.sum(), vectors)
    forces = -pair_scatter(g, graph.i, graph.j, graph.n_atoms)
    half = 0.25 * (vectors.detach()[:, :, None] * g[:, None, :])
    half = half + half.transpose(1, 2)
    virials = torch.zeros((graph.n_atoms, 3, 3), dtype=g.dtype)
    virials.index_add_(0, graph.i, half).index_add_(0, graph.j, half)
    for out in (fused, given):
        assert torch.allclose(out["energies"], energies.detach(), rtol=0, atol=1e-12)
        assert torch.allclose(out["forces"], forces, rtol=0, atol=1e-12)
        assert torch.allclose(out["virials"], virials, rtol=0, atol=1e-11)
    assert torch.allclose(fused["virial"], virials.sum(0), rtol=0, atol=1e-10)


@pytest.mark.parametrize("file, style, elements", FILES)
@pytest.mark.parametrize("periodic", [True, False])
def test_compiled_hessian_operator_matches_torch(
    potentials_dir, rng, file, style, elements, periodic
):
    """The compiled ``hessian_operator`` against the torch one (which ``test_eam`` checks
    against autograd), with weights in [0, 1] and some zeros, on one and two threads."""
    eam = EAM.from_file(potentials_dir / file)
    atoms = _atoms(rng, elements, periodic=periodic)
    graph = _graph(eam, atoms, torch.as_tensor(atoms.positions))
    w = torch.as_tensor(rng.uniform(0.0, 1.0, len(atoms)))
    w[:4] = 0.0
    eam.compiled = False
    expected_op = eam.hessian_operator(graph, w)
    eam.compiled = True
    op = eam.hessian_operator(graph, w)
    threads = torch.get_num_threads()
    try:
        for t in (1, 2):
            torch.set_num_threads(t)
            v = torch.as_tensor(rng.normal(size=(len(atoms), 3)))
            expected = expected_op(v)
            assert torch.abs(op(v) - expected).max() < 1e-11 * torch.abs(expected).max()
    finally:
        torch.set_num_threads(threads)


def test_lazy_vectors_and_in_place_changes(potentials_dir, rng):
    eam = EAM.from_file(potentials_dir / "Cu_mishin1.eam.alloy")
    atoms = _atoms(rng, ["Cu"])
    x = torch.as_tensor(atoms.positions).clone()
    graph = _graph(eam, atoms, x)
    x_grad = x.clone().requires_grad_(True)
    eager = _graph(eam, atoms, x_grad)
    assert eager.source is None  # positions that need grad: vectors computed at once
    assert torch.equal(graph.vectors, eager.vectors.detach())
    lazy = _graph(eam, atoms, x)
    x[0, 0] += 0.1
    with pytest.raises(RuntimeError, match="modified in place"):
        evaluate(eam, lazy)
    with pytest.raises(RuntimeError, match="modified in place"):
        lazy.vectors  # noqa: B018


@pytest.mark.parametrize("per_pair_shift", [True, False])
def test_pair_vectors_and_scatter_are_adjoint_and_differentiable(rng, per_pair_shift):
    from atomistic.pair_ops import pair_scatter, pair_vectors

    n, m = 7, 20
    i, j = (torch.as_tensor(rng.integers(0, n, m)) for _ in range(2))
    x = torch.as_tensor(rng.standard_normal((n, 3))).requires_grad_(True)
    s = torch.as_tensor(rng.standard_normal((m if per_pair_shift else 1, 3))).requires_grad_(True)
    g = torch.as_tensor(rng.standard_normal((m, 3))).requires_grad_(True)
    r = pair_vectors(x, s, i, j)
    assert r.grad_fn is not None and "Gather" in type(r.grad_fn).__name__  # the compiled path
    assert torch.allclose(r, x[j] - x[i] + s, rtol=0, atol=1e-15)
    f = pair_scatter(g, i, j, n)
    ref = torch.zeros((n, 3), dtype=torch.float64).index_add(0, j, g).index_add(0, i, -g)
    assert torch.allclose(f, ref, rtol=0, atol=1e-14)
    assert torch.autograd.gradcheck(lambda a, b: pair_vectors(a, b, i, j), (x, s))
    assert torch.autograd.gradgradcheck(lambda a, b: pair_vectors(a, b, i, j) ** 2, (x, s))
    assert torch.autograd.gradgradcheck(lambda a: pair_scatter(a, i, j, n) ** 2, (g,))


_CACHED_CALL = """
import sys
import numpy as np
from atomistic.potentials import eam_kernels as k
from atomistic.potentials.eam import EAM

t = EAM.from_file(sys.argv[2]).compiled_tables()
rho, species = np.array([0.01, 0.02]), np.zeros(2, dtype=np.int64)
if sys.argv[1] == "embedding":
    k._embedding(rho, species, t.frho, t.end_slope, t.inv_drho, t.rhomax)
else:
    i, j = np.array([0, 1]), np.array([1, 0])
    vec = np.array([[2.5, 0.0, 0.0], [-2.5, 0.0, 0.0]])
    out = k._hessian_setup(i, j, vec, species, t.pair, t.n_el, t.inv_dr, t.cutoff, t.frho,
                           t.end_slope, t.inv_drho, t.rhomax, np.ones(2), 2)
    assert np.all(np.isfinite(out[-1]))
"""


def test_a_cached_kernel_that_calls_parallel_code_runs_in_a_fresh_process(tmp_path, potentials_dir):
    # ``_hessian_setup`` (serial) calls ``_embedding`` (parallel). Compiled in a process that
    # had loaded ``_embedding`` from the disk cache, then itself loaded from the cache as the
    # first kernel of a new process, it crashed that process (numba's thread pool was never
    # started): a segmentation fault in a clean clone's test run.
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"), OMP_NUM_THREADS="1")
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    file = str(potentials_dir / "Cu_mishin1.eam.alloy")
    for step in ("embedding", "hessian_setup", "hessian_setup"):  # compile, compile, load
        done = subprocess.run(
            [sys.executable, "-c", _CACHED_CALL, step, file],
            env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, f"{step}: exit {done.returncode}\n{done.stderr[-2000:]}"
    assert list((tmp_path / "cache").rglob("*_hessian_setup*.nbc"))  # it did use the cache
