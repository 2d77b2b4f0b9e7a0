"""Cached descriptor Jacobians: training on forces without differentiating the descriptor.

A descriptor has no trainable weights, and the positions of a training frame are fixed. So
for a descriptor whose row ``i`` depends only on atom ``i``'s neighbour vectors (the moment
tensors, :meth:`atomistic.mlip.moments.MomentDescriptor.from_table`), the Jacobian
``J_i = ∂G_i/∂r_iz`` ``(D, Z, 3)`` is computed once per batch and reused every epoch:

==========================================  ================================================
quantity                                    code
==========================================  ================================================
``G_i``, ``J_i``                            :func:`descriptor_jacobian` (one backward
                                            pass per feature, once per batch)
``∂ε_m,i/∂G_i = s/σ_a · ∂NN_m/∂x``           autograd through the networks only
``g_m,iz = Σ_d ∂ε_m,i/∂G_id J_i[d, z]``     ``bmm`` ``(n, M, D) × (n, D, 3Z)``
``F_m,i = Σ_z g_m,iz − Σ_{(a,z)→i} g_m,az``  two ``index_add``
``V σ_m = Σ_{i,z} sym(r_iz ⊗ g_m,iz)``       per frame, as from edge gradients
==========================================  ================================================

The energies and forces equal those of autograd through the whole model (checked in
``tests/test_moments.py``); the double backward of training then runs through the networks
and one ``bmm``, not through the descriptor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TypeGuard

import torch

from atomistic.mlip.moments import NeighbourTable
from atomistic.neighbours import Graph

if TYPE_CHECKING:
    from atomistic.mlip.network import NetworkPotential

__all__ = [
    "DescriptorJacobian",
    "TableDescriptor",
    "descriptor_jacobian",
    "energies_and_forces",
    "supports_jacobian",
]


@dataclass(kw_only=True)
class DescriptorJacobian:
    """Descriptors and their per-atom Jacobians for fixed positions.

    Attributes:
        features: ``(n, D)`` raw (not normalised) descriptors.
        jacobian: ``(n, D, 3Z)`` ``∂G_i/∂r_iz`` (Å⁻¹ × descriptor units).
        vectors: ``(n, Z, 3)`` neighbour vectors ``r_iz`` (Å; padding beyond the cutoff).
        neighbour: ``(n, Z)`` atom index of each neighbour (the atom itself in padding).
    """

    features: torch.Tensor
    jacobian: torch.Tensor
    vectors: torch.Tensor
    neighbour: torch.Tensor


class TableDescriptor(Protocol):
    """A descriptor whose row ``i`` is computed from atom ``i``'s padded neighbour vectors."""

    def neighbour_table(self, graph: Graph, radius: float | None = None) -> NeighbourTable:
        """The full neighbour list within ``radius`` (default ``r_cut``), padded per atom."""
        ...

    def from_table(self, table: NeighbourTable) -> torch.Tensor:
        """Descriptors ``(n, D)`` from the table."""
        ...


def supports_jacobian(
    descriptor: torch.nn.Module | TableDescriptor,
) -> TypeGuard[TableDescriptor]:
    """True when ``descriptor`` has the per-atom table path (``neighbour_table``/``from_table``)."""
    return hasattr(descriptor, "neighbour_table") and hasattr(descriptor, "from_table")


def descriptor_jacobian(
    descriptor: torch.nn.Module | TableDescriptor, graph: Graph
) -> DescriptorJacobian:
    """Descriptors of ``graph`` and their per-atom Jacobians (no graph kept).

    Raises:
        TypeError: the descriptor has no per-atom table path (ACSF).
    """
    if not supports_jacobian(descriptor):
        raise TypeError(f"{type(descriptor).__name__} has no per-atom Jacobian path")
    with torch.enable_grad():
        table = descriptor.neighbour_table(graph.with_vectors(graph.vectors.detach()))
        vec = table.vectors.detach().requires_grad_(True)
        table.vectors = vec
        g = descriptor.from_table(table)
        n, d = g.shape
        z = vec.shape[1]
        if z == 0 or n == 0:
            jac = g.new_zeros((n, d, 3 * z))
        else:
            # one backward pass per feature: several times faster on the CPU than a
            # vmapped (is_grads_batched) pass, which falls back to a loop for index ops
            cols = [
                torch.autograd.grad(g[:, k].sum(), vec, retain_graph=k < d - 1)[0]
                for k in range(d)  # features, not atoms
            ]
            jac = torch.stack(cols)
            jac = jac.reshape(d, n, 3 * z).transpose(0, 1).contiguous()  # (n, D, 3Z)
    return DescriptorJacobian(
        features=g.detach(), jacobian=jac, vectors=vec.detach(), neighbour=table.neighbour
    )


def energies_and_forces(
    potential: NetworkPotential,
    cache: DescriptorJacobian,
    species: torch.Tensor,
    *,
    create_graph: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Member site energies, forces and neighbour-vector gradients from a cached Jacobian.

    Args:
        potential: a :class:`~atomistic.mlip.network.NetworkPotential` (``M`` members).
        cache: from :func:`descriptor_jacobian` with the potential's descriptor.
        species: ``(n,)`` element index of each atom.
        create_graph: keep the graph of the forces (to train on them).

    Returns:
        ``energies`` ``(M, n)`` eV, ``forces`` ``(M, n, 3)`` eV/Å and ``∂E_m/∂r_iz``
        ``(M, n, Z, 3)`` eV/Å.
    """
    mean, std = potential.descriptor_mean[species], potential.descriptor_std[species]
    x = ((cache.features - mean) / std).requires_grad_(True)
    with torch.enable_grad():
        y = potential.networks(x, species)  # (M, n)
        n_members = y.shape[0]
        grads = [
            torch.autograd.grad(y[m].sum(), x, create_graph=create_graph, retain_graph=True)[0]
            for m in range(n_members)  # members, not atoms
        ]
    d_e = torch.stack(grads, dim=1) * (potential.energy_scale / std)[:, None, :]  # (n, M, D)
    n, z = cache.neighbour.shape
    g = torch.bmm(d_e, cache.jacobian).view(n, n_members, z, 3).permute(1, 0, 2, 3)
    forces = g.sum(2).index_add(
        1, cache.neighbour.reshape(-1), g.reshape(n_members, -1, 3), alpha=-1.0
    )
    energies = potential.energy_shift[species] + potential.energy_scale * y
    if not create_graph:
        energies = energies.detach()
    return energies, forces, g
