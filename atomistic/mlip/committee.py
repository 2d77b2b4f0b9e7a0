"""A committee of network potentials: the mean as the potential, the spread as uncertainty.

All ``M`` members share one descriptor (same hyper-parameters and normalisation) and run
as one batched stack (:class:`atomistic.mlip.network.ElementNetworks`). With member forces
``F_m,i``:

==============================================  ===========================================
quantity                                        code
==============================================  ===========================================
``ε_i = (1/M) Σ_m ε_m,i``  (the potential)      ``Committee.__call__`` → ``(n,)``
``F̄_i = (1/M) Σ_m F_m,i``                       ``member_forces(...)[1].mean(0)``
``s_i = sqrt((1/M) Σ_m |F_m,i − F̄_i|²)``        :func:`force_spread` (eV/Å, ``(n,)``)
``u_i = c · s_i``  (calibrated spread)           :meth:`Committee.forces_uncertainty`
``c = sqrt(Σ_i |F̄_i − F_i^ref|² / Σ_i s_i²)``   :func:`fit_calibration` (held-out atoms)
==============================================  ===========================================

``|·|`` is the Euclidean norm of the 3-vector, so with ``c`` fitted on a set of atoms,
``RMS_i(u_i) = RMS_i(|F̄_i − F_i^ref|)`` on that set exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from atomistic.mlip.network import MLIP, DescriptorSpec, NetworkPotential
from atomistic.neighbours import Graph
from atomistic.pair_ops import pair_forces, pair_scatter

__all__ = [
    "Committee",
    "fit_calibration",
    "force_spread",
    "forces_from_edge_gradients",
    "member_forces",
]


def forces_from_edge_gradients(graph: Graph, g: torch.Tensor) -> torch.Tensor:
    """``F_i = Σ_{e: i→·} g_e − Σ_{e: ·→i} g_e`` for edge gradients ``g`` ``(..., E, 3)``.

    Returns:
        ``(..., n, 3)`` forces in eV/Å (differentiable in ``g``).
    """
    if g.ndim == 3 and g.dtype == torch.float64 and g.device.type == "cpu":
        f = pair_forces(g, graph.i, graph.j, graph.n_atoms)  # every member in one pass
        if f is not None:
            return f
        # compiled scatter per member: index_add with alpha=-1 is several times slower
        return torch.stack([-pair_scatter(gm, graph.i, graph.j, graph.n_atoms) for gm in g])
    shape = (*g.shape[:-2], graph.n_atoms, 3)
    f = torch.zeros(shape, dtype=g.dtype, device=g.device)
    dim = g.dim() - 2
    return f.index_add(dim, graph.i, g).index_add(dim, graph.j, g, alpha=-1.0)


def member_forces(
    potential: NetworkPotential,
    graph: Graph,
    *,
    create_graph: bool = False,
    batched: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Site energies, forces and edge gradients of every member of a network stack.

    Args:
        potential: an :class:`MLIP` or a :class:`Committee` (``M`` members).
        graph: atoms and pairs; if ``graph.vectors`` already requires grad it is used as the
            leaf (training), else a detached copy is.
        create_graph: keep the graph of the forces (to train on them).
        batched: one vmapped backward pass (``is_grads_batched``) instead of ``M`` passes.

    Returns:
        ``energies`` ``(M, n)`` eV, ``forces`` ``(M, n, 3)`` eV/Å and edge gradients
        ``∂E_m/∂r_e`` ``(M, E, 3)`` eV/Å.
    """
    vectors = graph.vectors
    if not vectors.requires_grad:
        vectors = vectors.detach().requires_grad_(True)
        graph = graph.with_vectors(vectors)
    compiled = getattr(potential.descriptor, "compiled_state", None)
    state = compiled(graph) if compiled is not None else None
    if state is not None:
        return _member_forces_compiled(potential, graph, state, create_graph=create_graph)
    energies = potential.member_energies(graph)
    totals = energies.sum(1)
    n_members = totals.shape[0]
    if batched and n_members > 1:
        eye = torch.eye(n_members, dtype=totals.dtype, device=totals.device)
        (g,) = torch.autograd.grad(
            totals, vectors, grad_outputs=eye, is_grads_batched=True, create_graph=create_graph
        )
    else:
        grads = [
            torch.autograd.grad(
                totals[m],
                vectors,
                retain_graph=create_graph or m < n_members - 1,
                create_graph=create_graph,
            )[0]
            for m in range(n_members)  # members, not atoms
        ]
        g = torch.stack(grads)
    return energies, forces_from_edge_gradients(graph, g), g


def _member_forces_compiled(
    potential: NetworkPotential,
    graph: Graph,
    state: tuple[torch.Tensor, Any],
    *,
    create_graph: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`member_forces` with the compiled descriptor (one network pass, one pair pass).

    One written-out backward pass through the networks gives every ``Λ_m = ∂E_m/∂G``
    ``(M, n, D)``, and one pass over the pairs maps them all to edge gradients
    (differentiable, as the plain path). ``batched`` changes nothing here: both are one pass.
    """
    from atomistic.mlip.moment_autograd import pair_gradients

    features, moments = state
    with torch.set_grad_enabled(create_graph):
        energies, lam = potential.energies_and_descriptor_gradients(features, graph.species)
        g = pair_gradients(graph.vectors, lam, moments)
        return energies, forces_from_edge_gradients(graph, g), g


def force_spread(forces: torch.Tensor) -> torch.Tensor:
    """Uncalibrated spread ``s_i = sqrt(mean_m |F_m,i − F̄_i|²)`` ``(n,)`` of ``(M, n, 3)``."""
    deviation = forces - forces.mean(0, keepdim=True)
    return torch.sqrt((deviation**2).sum(-1).mean(0))


def fit_calibration(spread: torch.Tensor, error: torch.Tensor) -> float:
    """``c`` with ``RMS(c·spread) = RMS(error)`` (both per-atom norms, eV/Å, ``(n,)``).

    Raises:
        ValueError: no atoms, or a zero spread everywhere.
    """
    if spread.numel() == 0:
        raise ValueError("calibration needs at least one labelled atom")
    s2 = float((spread.double() ** 2).sum())
    if s2 <= 0.0:
        raise ValueError("calibration needs a nonzero committee spread")
    return (float((error.double() ** 2).sum()) / s2) ** 0.5


class Committee(NetworkPotential):
    """``M`` network potentials whose mean is the potential; see the module docstring.

    Calling it on a graph returns the mean site energies ``(n,)`` (eV), so a committee is a
    drop-in potential (Cauchy–Born, relaxation and the Calculator use the mean).

    Args:
        elements: chemical symbols, in the order of ``Graph.species``.
        descriptor: :class:`~atomistic.mlip.moments.MomentSpec` (default ``MomentSpec()``)
            or :class:`~atomistic.mlip.acsf.ACSFSpec`, shared by all members.
        hidden: hidden-layer widths.
        activation: ``"silu"`` or ``"tanh"``.
        n_members: ``M`` (default 4).
        seeds: initialisation seed per member (default ``0 … M−1``).
        calibration: the factor ``c`` of the calibrated spread.
    """

    calibration_factor: torch.Tensor

    def __init__(
        self,
        *,
        elements: tuple[str, ...] | list[str],
        descriptor: DescriptorSpec | None = None,
        hidden: tuple[int, ...] = (32, 32),
        activation: str = "silu",
        n_members: int = 4,
        seeds: tuple[int, ...] | None = None,
        calibration: float = 1.0,
    ) -> None:
        if n_members < 2:
            raise ValueError(f"a committee needs at least 2 members, got {n_members}")
        super().__init__(
            elements=elements,
            descriptor=descriptor,
            hidden=hidden,
            activation=activation,
            n_members=n_members,
            seeds=seeds,
        )
        self.register_buffer(
            "calibration_factor", torch.tensor(float(calibration), dtype=torch.float64)
        )

    @property
    def calibration(self) -> float:
        """The factor ``c``: calibrated spread = ``c`` × raw spread."""
        return float(self.calibration_factor)

    @calibration.setter
    def calibration(self, value: float) -> None:
        self.calibration_factor.fill_(float(value))

    def forward(self, graph: Graph) -> torch.Tensor:
        """Mean site energies ``(n,)`` in eV."""
        return self.member_energies(graph).mean(0)

    def member_energies_and_forces(
        self, graph: Graph, *, create_graph: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Member site energies ``(M, n)`` (eV) and forces ``(M, n, 3)`` (eV/Å)."""
        energies, forces, _ = member_forces(self, graph, create_graph=create_graph)
        return energies, forces

    def forces_uncertainty(self, graph: Graph) -> torch.Tensor:
        """Calibrated force spread ``c·s_i`` ``(n,)`` in eV/Å (detached)."""
        _, forces = self.member_energies_and_forces(graph)
        return self.calibration * force_spread(forces.detach())

    def member(self, k: int) -> MLIP:
        """Member ``k`` as a stand-alone :class:`MLIP` (a copy)."""
        model = MLIP(**self.architecture())
        state = {
            name: value[k : k + 1] if name.startswith("networks.") else value
            for name, value in self.state_dict().items()
            if name != "calibration_factor"
        }
        model.load_state_dict(state)
        ref = next(self.parameters())
        return model.to(device=ref.device, dtype=ref.dtype)

    @classmethod
    def from_members(
        cls, members: Sequence[NetworkPotential], *, calibration: float = 1.0
    ) -> Committee:
        """Stack network potentials with the same hyper-parameters and normalisation.

        Raises:
            ValueError: the members differ in elements, descriptor, layers or normalisation.
        """
        first = members[0]
        if any(m.architecture() != first.architecture() for m in members[1:]):
            raise ValueError("committee members must share elements, descriptor and layers")
        n_members = sum(m.n_members for m in members)
        out = cls(**first.architecture(), n_members=n_members, calibration=calibration)
        states = [m.state_dict() for m in members]
        merged = {}
        for name, value in states[0].items():
            if name.startswith("networks."):
                merged[name] = torch.cat([s[name] for s in states])
            else:
                if any(not torch.equal(s[name], value) for s in states[1:]):
                    raise ValueError(f"committee members differ in {name}")
                merged[name] = value
        merged["calibration_factor"] = out.calibration_factor
        out.load_state_dict(merged)
        return out.to(dtype=next(first.parameters()).dtype)
