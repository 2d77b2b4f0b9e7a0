"""Hessian-vector products of a network potential's weighted mean energy, without autograd.

For ``E = Σ_i w_i ε̄_i`` (``ε̄`` the member mean, what the potential returns) at fixed
positions, a Newton–Krylov solver asks for many products ``H V``. Per product, with the
moment descriptor's compiled kernels (:mod:`atomistic.mlip.moment_autograd`):

==========================================  ===============================================
step                                        code
==========================================  ===============================================
pair tangents ``δr_e = V_j − V_i``          :func:`atomistic.pair_ops.pair_vectors`
``δG = (∂G/∂r) δr``                         ``LinearisedMoments.jvp`` (``MomentState.jvp``
                                            past :data:`LINEARISED_MAX_BYTES`)
``δΛ = (∂²E/∂G²) δG``                       :class:`_NetworkCurvature` (forward over the
                                            written-out backward of the networks)
``∂(δΛ·G)/∂r + (∂²(Λ·G)/∂r²) δr``           ``LinearisedMoments.hvp`` (one pass; else
                                            ``MomentState.hvp``)
``(H V)_a = Σ_{e: j_e=a} − Σ_{e: i_e=a}``   :func:`atomistic.pair_ops.pair_scatter`
==========================================  ===============================================

``Λ = ∂E/∂G``, the networks' pre-activations and the moments linearised at ``Λ``
(:mod:`atomistic.mlip.moment_linearised`: each list entry's moment Jacobian and the Hessian
of ``Λ·I`` in its pair vector) are computed once per state; the atoms of weight 0 (the
coupled solver's pad) add nothing to a product and are left out of it. For one
network layer ``z_{k+1} = act(z_k) W_{k+1} + b``, with ``d_k = ∂y/∂z_k``:

    δz_{k+1} = (act'(z_k) δz_k) W_{k+1}
    δd_k     = act''(z_k) δz_k d̃_k + act'(z_k) (δd_{k+1} W_{k+1}ᵀ)

(``d̃_k = d_{k+1} W_{k+1}ᵀ``). With ``float32`` pairs on the CPU (the coupled solver's
default ``hessian_precision``) the kernels run in ``float64`` and the networks in ``float32``.
Where the kernels do not apply (CUDA, ACSF) the operator is autograd's double backward, as
for any potential.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from atomistic.neighbours import Graph
from atomistic.pair_ops import pair_scatter, pair_vectors

#: :class:`~atomistic.mlip.network.NetworkPotential` and its ``ElementNetworks`` (not imported:
#: the network module imports this one)
NetworkPotential = Any
ElementNetworks = Any

__all__ = ["LINEARISED_MAX_BYTES", "hessian_operator"]

#: the most memory the per-state linearisation of the moments may keep (bytes); a larger
#: state runs the descriptor's second-derivative kernels in every product instead
LINEARISED_MAX_BYTES = 1 << 30


def _act_derivatives(name: str, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``act'(z)`` and ``act''(z)`` of ``"silu"`` or ``"tanh"``."""
    if name == "tanh":
        t = torch.tanh(z)
        d1 = 1.0 - t * t
        return d1, -2.0 * t * d1
    s = torch.sigmoid(z)
    ds = s * (1.0 - s)
    return s + z * ds, ds * (2.0 + z * (1.0 - 2.0 * s))


class _NetworkCurvature:
    """``δx ↦ Σ_m c (∂²y_m/∂x²) δx`` ``(n, D)`` for the atoms of one element (``c`` per atom)."""

    def __init__(self, networks: ElementNetworks, x: torch.Tensor, a: int, c: torch.Tensor):
        self.w = [w[:, a] for w in networks.weights]  # (M, in, out)
        w0 = self.w[0]
        n_members, n_in, width = w0.shape
        z = (x @ w0.transpose(0, 1).reshape(n_in, n_members * width)).view(-1, n_members, width)
        z = z.transpose(0, 1) + networks.biases[0][:, a][:, None, :]
        pre = [z]
        for w, b in zip(self.w[1:-1], networks.biases[1:-1], strict=True):
            z = torch.baddbmm(b[:, a, None, :], networks._act(z), w)
            pre.append(z)
        derivs = [_act_derivatives(networks.activation, z) for z in pre]
        self.d1 = [d[0] for d in derivs]
        self.d2 = [d[1] for d in derivs]
        # backward of the atom-weighted outputs: upstream[k] = ∂(c·y)/∂act(z_k)
        upstream = [c[None, :, None] * self.w[-1][:, None, :, 0]]
        for k in range(len(pre) - 1, 0, -1):
            dz = self.d1[k] * upstream[0]
            upstream.insert(0, torch.bmm(dz, self.w[k].transpose(1, 2)))
        self.upstream = upstream

    def __call__(self, dx: torch.Tensor) -> torch.Tensor:
        w0 = self.w[0]
        n_members, n_in, width = w0.shape
        dz = (dx @ w0.transpose(0, 1).reshape(n_in, n_members * width)).view(-1, n_members, width)
        tangents = [dz.transpose(0, 1)]
        for k in range(1, len(self.d1)):
            tangents.append(torch.bmm(self.d1[k - 1] * tangents[-1], self.w[k]))
        dd = self.d2[-1] * tangents[-1] * self.upstream[-1]
        for k in range(len(self.d1) - 2, -1, -1):
            back = torch.bmm(dd, self.w[k + 1].transpose(1, 2))
            dd = self.d2[k] * tangents[k] * self.upstream[k] + self.d1[k] * back
        # Σ_m δd_m W0_mᵀ: one (n, M·h) @ (M·h, D) matmul
        flat = dd.transpose(0, 1).reshape(dx.shape[0], n_members * width)
        return flat @ w0.transpose(1, 2).reshape(n_members * width, n_in)


def _autograd_operator(
    potential: torch.nn.Module, graph: Graph, weights: torch.Tensor
) -> Callable[[torch.Tensor], torch.Tensor]:
    """Double backward through the potential (positions are recovered from the pairs)."""
    vec = graph.vectors.detach().requires_grad_(True)
    with torch.enable_grad():
        energy = (weights * potential(graph.with_vectors(vec))).sum()
        (g,) = torch.autograd.grad(energy, vec, create_graph=True)
    zero = vec.new_zeros((1, 3))

    def apply(v: torch.Tensor) -> torch.Tensor:
        dr = pair_vectors(v.to(vec.dtype).contiguous(), zero, graph.i, graph.j)
        (h,) = torch.autograd.grad(g, vec, dr, retain_graph=True)
        return pair_scatter(h.contiguous(), graph.i, graph.j, graph.n_atoms)

    return apply


def hessian_operator(
    potential: NetworkPotential, graph: Graph, weights: torch.Tensor
) -> Callable[[torch.Tensor], torch.Tensor]:
    """``V (n, 3) ↦ (∂²E/∂x²) V`` of ``E = Σ_i w_i ε̄_i`` at the graph's positions (eV/Å²).

    Args:
        potential: an :class:`~atomistic.mlip.network.MLIP` or
            :class:`~atomistic.mlip.committee.Committee` (``ε̄`` the member mean).
        graph: the atoms and their pairs.
        weights: ``(n,)`` weights ``w_i`` of the site energies.
    """
    state = _compiled_state(potential, graph)
    if state is None:
        return _autograd_operator(potential, graph, weights)
    features, moments = state
    species, nets = graph.species, potential.networks
    dtype = potential.descriptor_std.dtype  # the networks' (float32 with hessian_precision)
    std = potential.descriptor_std[species]
    n_members, n_el = nets.weights[0].shape[:2]
    with torch.no_grad():
        x = (features.to(dtype) - potential.descriptor_mean[species]) / std
        # ∂E/∂x = c ∂ȳ/∂x with c = w s / M per atom; Λ = ∂E/∂G = c ∂ȳ/∂x / σ
        c = weights.to(dtype) * potential.energy_scale / n_members
        _, dy = nets.input_gradients(x, species)
        lam = c[:, None] * dy.sum(0) / std  # (n, D)
        blocks = []
        for a in range(n_el):  # elements only; atoms of weight 0 add nothing
            idx = ((species == a) & (c != 0)).nonzero()[:, 0]
            if idx.numel():
                blocks.append((idx, _NetworkCurvature(nets, x[idx], a, c[idx])))
    jvp, hvp = _moment_products(moments, lam.double().numpy(), (c != 0).numpy())
    zero = features.new_zeros((1, 3))

    def apply(v: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            dr = pair_vectors(v.double().contiguous(), zero, graph.i, graph.j).numpy()
            dx = torch.from_numpy(jvp(dr)).to(dtype) / std
            dlam = torch.zeros_like(dx)
            for idx, curvature in blocks:
                dlam[idx] = curvature(dx[idx])
            dlam = dlam / std
            h = hvp(dr, dlam.double().numpy())
            hv = pair_scatter(torch.from_numpy(h), graph.i, graph.j, graph.n_atoms)
            return hv.to(v.dtype)

    return apply


def _moment_products(
    moments: Any, lam: np.ndarray, rows: np.ndarray
) -> tuple[Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray, np.ndarray], np.ndarray]]:
    """``w ↦ (∂G/∂r) w`` and ``(w, δΛ) ↦ (∂²(Λ·G)/∂r²) w + ∂(δΛ·G)/∂r`` at one state.

    Linearised once (:class:`~atomistic.mlip.moment_linearised.LinearisedMoments`) unless that
    would keep more than :data:`LINEARISED_MAX_BYTES`; then each product runs the state's own
    kernels. ``lam`` ``(n, D)`` and every ``δΛ`` vanish outside ``rows`` ``(n,)``.
    """
    from atomistic.mlip.moment_linearised import LinearisedMoments

    if LinearisedMoments.nbytes(moments) <= LINEARISED_MAX_BYTES:
        linear = LinearisedMoments(moments, lam, rows)
        return linear.jvp, linear.hvp
    lam_b = lam[None]

    def jvp(w: np.ndarray) -> np.ndarray:
        out: np.ndarray = moments.jvp(w[None], keep=True)[0]
        return out

    def hvp(w: np.ndarray, dlam: np.ndarray) -> np.ndarray:
        out: np.ndarray = moments.hvp(lam_b, w[None], dlam[None], kept=True)
        return out

    return jvp, hvp


def _compiled_state(potential: NetworkPotential, graph: Graph) -> tuple[torch.Tensor, Any] | None:
    """The compiled descriptor at the graph's pairs, or None where the kernels do not apply.

    CPU ``float32`` pairs (``solver.hessian_precision = "float32"``) are evaluated in
    ``float64`` by the kernels; the networks run in the potential's own dtype.
    """
    compiled = getattr(potential.descriptor, "compiled_state", None)
    if compiled is None:
        return None
    vec = graph.vectors.detach()
    if vec.device.type == "cpu" and vec.dtype == torch.float32:
        graph = graph.with_vectors(vec.double())
    with torch.no_grad():
        state: tuple[torch.Tensor, Any] | None = compiled(graph)
    return state
