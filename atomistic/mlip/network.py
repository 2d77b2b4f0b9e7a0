"""A Behler–Parrinello neural-network potential: descriptors and one MLP per element.

The descriptor is moment tensors (:mod:`atomistic.mlip.moments`, three-body information in
O(pairs); the default, as in ``multiscale train``) or ACSF (:mod:`atomistic.mlip.acsf`, G2/G4,
O(triplets)), chosen by the type of the ``descriptor`` spec.

Site energy of atom ``i`` of element ``a`` (member ``m`` of a stack of ``M`` networks):

    x_i = (G_i − μ_a) / σ_a                   normalised descriptor
    ε_i = e_a + s · NN_{m,a}(x_i)             e_a: per-element reference energy (eV), s: scale

==========================  =================================================================
symbol                      code
==========================  =================================================================
``μ_a, σ_a`` ``(n_el, D)``  buffers ``descriptor_mean``, ``descriptor_std`` (fitted to data)
``e_a`` ``(n_el,)``         buffer ``energy_shift`` (least squares of E against composition)
``s`` (eV)                  buffer ``energy_scale`` (RMS force component of the data)
``NN_{m,a}``                :class:`ElementNetworks`: weights ``(M, n_el, in, out)``, SiLU
==========================  =================================================================

The ``M`` networks of one element run in one batched matmul (``baddbmm``), never a loop over
members; the only Python loop is over elements. A single model (:class:`MLIP`) is a stack of
one; :class:`atomistic.mlip.committee.Committee` is a stack of several sharing the descriptor.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from atomistic.mlip.acsf import ACSF, ACSFSpec
from atomistic.mlip.hessian import hessian_operator
from atomistic.mlip.moments import MomentDescriptor, MomentSpec
from atomistic.mlip.radial import RadialDescriptor
from atomistic.neighbours import Graph

__all__ = [
    "ACTIVATIONS",
    "MLIP",
    "DescriptorSpec",
    "ElementNetworks",
    "NetworkPotential",
    "architecture_from_dict",
    "descriptor_spec_from_dict",
]

#: The descriptor hyper-parameters a network potential accepts.
DescriptorSpec = ACSFSpec | MomentSpec


def descriptor_spec_from_dict(data: dict[str, Any]) -> DescriptorSpec:
    """Inverse of ``spec.to_dict()``: ``kind = "moments"``, else ACSF (whose dict has no kind)."""
    if data.get("kind") == MomentSpec.kind:
        return MomentSpec.from_dict(data)
    return ACSFSpec.from_dict(data)


def architecture_from_dict(data: dict[str, Any]) -> dict[str, Any]:
    """:meth:`NetworkPotential.architecture` from :meth:`NetworkPotential.hyperparameters`."""
    return {
        "elements": tuple(data["elements"]),
        "descriptor": descriptor_spec_from_dict(data["descriptor"]),
        "hidden": tuple(data["hidden"]),
        "activation": data["activation"],
    }


def _make_descriptor(spec: DescriptorSpec, n_elements: int) -> RadialDescriptor:
    if isinstance(spec, MomentSpec):
        return MomentDescriptor(spec, n_elements)
    return ACSF(spec, n_elements)


#: The activation functions of the hidden layers, by name.
ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "silu": torch.nn.functional.silu,
    "tanh": torch.tanh,
}

#: Atoms per block of the networks' input gradients without autograd
#: (:meth:`ElementNetworks.input_gradients`): a block's ``(M, block, width)`` arrays stay near
#: one core's cache from one element-wise pass to the next; whole-system arrays go to memory.
NETWORK_BLOCK = 1024


class ElementNetworks(torch.nn.Module):
    """``M`` stacked multilayer perceptrons per element, evaluated together.

    Args:
        n_members: stack size ``M``.
        n_elements: number of elements.
        n_inputs: input length ``D``.
        hidden: widths of the hidden layers.
        activation: ``"silu"`` or ``"tanh"``.
        seeds: one initialisation seed per member (default ``0 … M−1``).
    """

    def __init__(
        self,
        *,
        n_members: int,
        n_elements: int,
        n_inputs: int,
        hidden: tuple[int, ...],
        activation: str = "silu",
        seeds: tuple[int, ...] | None = None,
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"activation {activation!r} unknown; allowed: {', '.join(ACTIVATIONS)}"
            )
        seeds = tuple(range(n_members)) if seeds is None else tuple(seeds)
        if len(seeds) != n_members:
            raise ValueError(f"need {n_members} seeds, got {len(seeds)}")
        self.activation = activation
        self._act = ACTIVATIONS[activation]
        sizes = [n_inputs, *hidden, 1]
        weights: list[torch.nn.Parameter] = []
        biases: list[torch.nn.Parameter] = []
        for a, b in zip(sizes[:-1], sizes[1:], strict=True):
            w = torch.empty((n_members, n_elements, a, b), dtype=torch.float64)
            for m, seed in enumerate(seeds):
                gen = torch.Generator().manual_seed(int(seed) * 1000 + len(weights))
                w[m] = torch.randn((n_elements, a, b), generator=gen, dtype=torch.float64)
            weights.append(torch.nn.Parameter(w / math.sqrt(a)))
            biases.append(
                torch.nn.Parameter(torch.zeros((n_members, n_elements, b), dtype=torch.float64))
            )
        self.weights = torch.nn.ParameterList(weights)
        self.biases = torch.nn.ParameterList(biases)

    @property
    def n_members(self) -> int:
        """Stack size ``M``."""
        return self.weights[0].shape[0]

    def forward(self, x: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        """Outputs ``(M, n)`` for inputs ``x`` ``(n, D)`` of elements ``species`` ``(n,)``."""
        n_members, n_el = self.weights[0].shape[:2]
        if n_el == 1:
            return self._element(x, 0)
        out = x.new_zeros((n_members, x.shape[0]))
        for a in range(n_el):  # loop over elements only
            idx = (species == a).nonzero()[:, 0]
            if idx.numel():
                out = out.index_copy(1, idx, self._element(x.index_select(0, idx), a))
        return out

    def input_gradients(
        self, x: torch.Tensor, species: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Outputs ``(M, n)`` and each member's input gradient ``∂y_m/∂x`` ``(M, n, D)``.

        The backward pass is written out (``z = h W + b``, ``h' = act(z)``:
        ``∂y/∂z_k = act'(z_k) ⊙ (∂y/∂z_{k+1} W_{k+1}ᵀ)``), once for all members, so every
        member's gradient costs one pass, not ``M``. Torch operations only: differentiable
        (to train on forces) like autograd's gradient, to which it is equal.
        """
        n_members, n_el = self.weights[0].shape[:2]
        if n_el == 1:
            return self._element_gradients(x, 0)
        out = x.new_zeros((n_members, x.shape[0]))
        grad = x.new_zeros((n_members, *x.shape))
        for a in range(n_el):  # loop over elements only
            idx = (species == a).nonzero()[:, 0]
            if idx.numel():
                y, g = self._element_gradients(x.index_select(0, idx), a)
                out = out.index_copy(1, idx, y)
                grad = grad.index_copy(1, idx, g)
        return out, grad

    def _element_gradients(self, x: torch.Tensor, a: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.activation == "silu" and not torch.is_grad_enabled():
            if x.shape[0] <= NETWORK_BLOCK:
                return self._silu_gradients(x, a)
            parts = [
                self._silu_gradients(x[s : s + NETWORK_BLOCK], a)
                for s in range(0, x.shape[0], NETWORK_BLOCK)  # blocks of atoms, not atoms
            ]
            return torch.cat([y for y, _ in parts], 1), torch.cat([g for _, g in parts], 1)
        w0, b0 = self.weights[0][:, a], self.biases[0][:, a]
        # the shared input broadcast over the members: no copy, and z comes out (M, n, h)
        z = torch.baddbmm(b0[:, None, :], x.expand(w0.shape[0], -1, -1), w0)
        slopes = []  # act'(z) of each hidden layer
        for w, b in zip(self.weights[1:], self.biases[1:], strict=True):
            h, slope = self._act(z), self._act_derivative(z)
            slopes.append(slope)
            z = torch.baddbmm(b[:, a, None, :], h, w[:, a])
        y = z[..., 0]
        # ∂y/∂z of the last hidden layer: the output weights, broadcast over atoms
        dz = slopes[-1] * self.weights[-1][:, a, None, :, 0]
        for k in range(len(slopes) - 2, -1, -1):
            back = torch.bmm(dz, self.weights[k + 1][:, a].transpose(1, 2))
            dz = slopes[k] * back
        return y, torch.bmm(dz, w0.transpose(1, 2))

    def _silu_gradients(self, x: torch.Tensor, a: int) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`_element_gradients` of SiLU networks without autograd, for one block of atoms.

        Each layer's ``z`` is kept and the backward pass applies ``SiLU'(z)`` to the incoming
        cotangent in one fused pass (``aten.silu_backward``, which recomputes the sigmoid)
        instead of storing every slope: about a third of the element-wise passes over
        ``(M, n, width)`` arrays, which on one CPU core cost more than the matrix products.
        The caller passes at most :data:`NETWORK_BLOCK` atoms, so that those arrays stay in
        the core's cache between the passes.
        """
        w0, b0 = self.weights[0][:, a], self.biases[0][:, a]
        # the shared input broadcast over the members: no copy, and z comes out (M, n, h)
        z = torch.baddbmm(b0[:, None, :], x.expand(w0.shape[0], -1, -1), w0)
        pre = []  # z of each hidden layer
        for w, b in zip(self.weights[1:], self.biases[1:], strict=True):
            pre.append(z)
            z = torch.baddbmm(b[:, a, None, :], torch.nn.functional.silu(z), w[:, a])
        y = z[..., 0]
        out = self.weights[-1][:, a, None, :, 0].expand_as(pre[-1])  # ∂y/∂h of the last layer
        dz = torch.ops.aten.silu_backward(out, pre[-1])
        for k in range(len(pre) - 2, -1, -1):
            back = torch.bmm(dz, self.weights[k + 1][:, a].transpose(1, 2))
            dz = torch.ops.aten.silu_backward(back, pre[k])
        return y, torch.bmm(dz, w0.transpose(1, 2))

    def _act_derivative(self, z: torch.Tensor) -> torch.Tensor:
        if self.activation == "tanh":
            return 1.0 - torch.tanh(z) ** 2
        s = torch.sigmoid(z)
        return s * (1.0 + z * (1.0 - s))

    def _element(self, x: torch.Tensor, a: int) -> torch.Tensor:
        w0, b0 = self.weights[0][:, a], self.biases[0][:, a]  # (M, D, h), (M, h)
        n_members, n_in, width = w0.shape
        # shared input: one (n, D) @ (D, M·h) matmul for all members
        h = (x @ w0.transpose(0, 1).reshape(n_in, n_members * width)).view(-1, n_members, width)
        h = h.transpose(0, 1) + b0[:, None, :]
        for w, b in zip(self.weights[1:], self.biases[1:], strict=True):
            h = torch.baddbmm(b[:, a, None, :], self._act(h), w[:, a])
        return h[..., 0]


class NetworkPotential(torch.nn.Module):
    """Descriptor, normalisation and ``M`` stacked element networks; see the module docstring.

    Args:
        elements: chemical symbols, in the order of ``Graph.species``.
        descriptor: :class:`MomentSpec` or :class:`ACSFSpec` (``cutoff`` is the potential's
            cutoff; default ``MomentSpec()``, the default of ``multiscale train``).
        hidden: hidden-layer widths.
        activation: ``"silu"`` or ``"tanh"``.
        n_members: stack size ``M``.
        seeds: initialisation seed per member.
    """

    #: both descriptors of atom ``i`` are sums over the pairs that contain ``i``
    site_local = True

    descriptor_mean: torch.Tensor
    descriptor_std: torch.Tensor
    energy_shift: torch.Tensor
    energy_scale: torch.Tensor
    #: set by :func:`~atomistic.mlip.serialization.load_network`: the file's metadata and path
    metadata: dict[str, Any]
    source: str

    def __init__(
        self,
        *,
        elements: tuple[str, ...] | list[str],
        descriptor: DescriptorSpec | None = None,
        hidden: tuple[int, ...] = (32, 32),
        activation: str = "silu",
        n_members: int = 1,
        seeds: tuple[int, ...] | None = None,
    ) -> None:
        super().__init__()
        if not elements:
            raise ValueError("a network potential needs at least one element")
        self.elements = tuple(elements)
        self.spec = descriptor if descriptor is not None else MomentSpec()
        self.cutoff = float(self.spec.cutoff)
        self.hidden = tuple(int(h) for h in hidden)
        n_el = len(self.elements)
        self.descriptor = _make_descriptor(self.spec, n_el)
        n_features = self.descriptor.n_features
        self.networks = ElementNetworks(
            n_members=n_members,
            n_elements=n_el,
            n_inputs=n_features,
            hidden=self.hidden,
            activation=activation,
            seeds=seeds,
        )
        f64 = torch.float64
        self.register_buffer("descriptor_mean", torch.zeros((n_el, n_features), dtype=f64))
        self.register_buffer("descriptor_std", torch.ones((n_el, n_features), dtype=f64))
        self.register_buffer("energy_shift", torch.zeros(n_el, dtype=f64))
        self.register_buffer("energy_scale", torch.ones((), dtype=f64))

    @property
    def n_members(self) -> int:
        """Number of stacked networks ``M``."""
        return self.networks.n_members

    def architecture(self) -> dict[str, Any]:
        """The constructor arguments every stack size shares: elements, descriptor, layers."""
        return {
            "elements": self.elements,
            "descriptor": self.spec,
            "hidden": self.hidden,
            "activation": self.networks.activation,
        }

    def hyperparameters(self) -> dict[str, Any]:
        """What is needed to rebuild the module before loading its state dict (plain values)."""
        return {
            "elements": list(self.elements),
            "descriptor": self.spec.to_dict(),
            "hidden": list(self.hidden),
            "activation": self.networks.activation,
            "n_members": self.n_members,
        }

    def normalised_descriptors(self, graph: Graph) -> torch.Tensor:
        """``x = (G − μ_a)/σ_a``, ``(n, D)``."""
        g = self.descriptor(graph)
        s = graph.species
        return (g - self.descriptor_mean[s]) / self.descriptor_std[s]

    def member_energies(self, graph: Graph) -> torch.Tensor:
        """Site energies of every member, ``(M, n)`` in eV."""
        return self.energies_from_descriptors(self.descriptor(graph), graph.species)

    def energies_and_descriptor_gradients(
        self, g: torch.Tensor, species: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Site energies ``(M, n)`` (eV) and ``Λ_m = ∂E_m/∂G`` ``(M, n, D)`` from raw ``g``.

        One written-out backward pass through the networks for all members
        (:meth:`ElementNetworks.input_gradients`); differentiable in ``g`` and the weights.
        """
        if len(self.elements) == 1:  # one row of statistics, broadcast: no (n, D) gathers
            std, mean, shift = self.descriptor_std[0], self.descriptor_mean[0], self.energy_shift[0]
        else:
            std = self.descriptor_std[species]
            mean, shift = self.descriptor_mean[species], self.energy_shift[species]
        x = (g - mean) / std
        y, dy = self.networks.input_gradients(x, species)
        energies = shift + self.energy_scale * y
        return energies, dy * (self.energy_scale / std)

    def energy_forces(
        self, graph: Graph, *, per_atom_virial: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None] | None:
        """Mean site energies, forces and per-atom virials without autograd, or None.

        With the compiled moment descriptor only (CPU ``float64``; else None, and
        :func:`~atomistic.potentials.protocol.evaluate` takes autograd's gradient of the
        mean site energies): one written-out backward pass through the networks gives every
        member's ``Λ_m``, and one pass over the pairs maps their mean to the pair gradients.
        The same numbers as autograd's, to round-off. Detached.

        Returns:
            ``(n,)`` member-mean site energies (eV), ``(n, 3)`` forces (eV/Å) and, if asked,
            ``(n, 3, 3)`` per-atom virials (eV).
        """
        from atomistic.pair_ops import pair_scatter
        from atomistic.potentials.protocol import per_atom_virials

        compiled = getattr(self.descriptor, "compiled_state", None)
        if compiled is None:
            return None
        with torch.no_grad():
            graph = graph.with_vectors(graph.vectors.detach())
            state = compiled(graph)
            if state is None:
                return None
            features, moments = state
            energies, lam = self.energies_and_descriptor_gradients(features, graph.species)
            g = torch.from_numpy(moments.vjp(lam.mean(0, keepdim=True).numpy())[0])
            forces = pair_scatter(g, graph.i, graph.j, graph.n_atoms).neg_()
            virials = per_atom_virials(graph, g) if per_atom_virial else None
        return energies.mean(0), forces, virials

    def energies_from_descriptors(self, g: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        """Site energies of every member ``(M, n)`` (eV) from raw descriptors ``g`` ``(n, D)``."""
        x = (g - self.descriptor_mean[species]) / self.descriptor_std[species]
        y = self.networks(x, species)
        return self.energy_shift[species] + self.energy_scale * y

    def weighted_energy_gradient(
        self, graph: Graph, weights: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``E = Σ_i w_i ε̄_i`` (eV) and ``∂E/∂r_e`` ``(E, 3)`` (eV/Å), without autograd.

        With the compiled moment descriptor only (else None: take autograd's gradient of
        ``(weights * self(graph)).sum()``). The networks run on the atoms of nonzero weight
        only, and one written-out backward pass gives every member's ``∂y_m/∂x``
        (:meth:`energies_and_descriptor_gradients`); one pass over the pairs maps their
        weighted mean ``Λ`` to the pair gradient. Detached (not differentiable).

        Args:
            graph: the atoms and their pairs.
            weights: ``(n,)`` weights ``w_i`` of the site energies.
        """
        compiled = getattr(self.descriptor, "compiled_state", None)
        if compiled is None:
            return None
        with torch.no_grad():
            state = compiled(graph.with_vectors(graph.vectors.detach()))
            if state is None:
                return None
            features, moments = state
            idx = (weights != 0).nonzero()[:, 0]
            energies, lam = self.energies_and_descriptor_gradients(
                features.index_select(0, idx), graph.species.index_select(0, idx)
            )
            c = weights.index_select(0, idx).to(features.dtype) / self.n_members
            energy = (c * energies.sum(0)).sum()
            lam_all = features.new_zeros((1, *features.shape))
            lam_all[0, idx] = c[:, None] * lam.sum(0)
            g = torch.from_numpy(moments.vjp(lam_all.numpy())[0])
        return energy, g

    def hessian_operator(
        self, graph: Graph, weights: torch.Tensor
    ) -> Callable[[torch.Tensor], torch.Tensor]:
        """``V (n, 3) -> (∂²E/∂x²) V`` of ``E = Σ_i w_i ε̄_i`` (``ε̄`` the member mean).

        For Newton–Krylov solvers (:class:`coupling.blended_atoms.BlendedAtoms`): what does
        not depend on ``V`` is computed here once; see :mod:`atomistic.mlip.hessian`.
        """
        return hessian_operator(self, graph, weights)

    @torch.no_grad()
    def set_statistics(
        self,
        *,
        descriptor_mean: torch.Tensor,
        descriptor_std: torch.Tensor,
        energy_shift: torch.Tensor,
        energy_scale: float,
    ) -> None:
        """Store fitted normalisation (see :func:`atomistic.mlip.training.fit_statistics`)."""
        self.descriptor_mean.copy_(descriptor_mean)
        self.descriptor_std.copy_(descriptor_std)
        self.energy_shift.copy_(energy_shift)
        self.energy_scale.fill_(float(energy_scale))


class MLIP(NetworkPotential):
    """A single Behler–Parrinello network potential (one member).

    Calling it on a graph returns the site energies ``(n,)`` in eV, so it works with
    :func:`atomistic.evaluate`, :class:`atomistic.Calculator` and Cauchy–Born.

    Args:
        elements: chemical symbols, in the order of ``Graph.species``.
        descriptor: :class:`MomentSpec` (default ``MomentSpec()``) or :class:`ACSFSpec`.
        hidden: hidden-layer widths.
        activation: ``"silu"`` or ``"tanh"``.
        seed: initialisation seed.
    """

    def __init__(
        self,
        *,
        elements: tuple[str, ...] | list[str],
        descriptor: DescriptorSpec | None = None,
        hidden: tuple[int, ...] = (32, 32),
        activation: str = "silu",
        seed: int = 0,
    ) -> None:
        super().__init__(
            elements=elements,
            descriptor=descriptor,
            hidden=hidden,
            activation=activation,
            n_members=1,
            seeds=(seed,),
        )

    def forward(self, graph: Graph) -> torch.Tensor:
        """Site energies ``(n,)`` in eV."""
        return self.member_energies(graph)[0]
