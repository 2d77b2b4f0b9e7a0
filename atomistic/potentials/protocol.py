"""The potential protocol and what follows from site energies.

A potential is a ``torch.nn.Module`` that maps a :class:`~atomistic.neighbours.Graph` to
per-atom site energies ``ε_i`` (shape ``(n,)``, eV). It must give zero weight to pairs longer
than its ``cutoff`` (lists carry a skin). Everything else is derived here:

==========================  ==================================================
quantity                    code
==========================  ==================================================
``E = Σ_i ε_i``             ``energies.sum()``
``g_e = ∂E/∂r_e``           one autograd pass to the pair vectors
``F_i = Σ_{e: i→·} g_e − Σ_{e: ·→i} g_e``  ``−pair_scatter(g)``
``V σ = Σ_e sym(r_e ⊗ g_e)``  ``vectors.T @ g``
``W_i = ½ Σ_{e∋i} sym(r_e ⊗ g_e)``   per-atom virial (eV), ``Σ_i W_i = V σ``
==========================  ==================================================

The stress follows ASE's sign: positive in tension, ``σ = (1/V) ∂E/∂ε``.

A potential may offer ``energy_forces(graph, per_atom_virial=...)`` returning site energies,
forces and per-atom virials (or None where it does not apply); :func:`evaluate` then uses it
instead of autograd (the compiled EAM; a network potential with the compiled moment
descriptor on the CPU, whose members' mean takes one written-out pass).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, Self, runtime_checkable

import torch

from atomistic.neighbours import Graph
from atomistic.pair_ops import pair_scatter

__all__ = [
    "Potential",
    "PotentialFileError",
    "UnknownElementError",
    "evaluate",
    "interaction_range",
    "species_indices",
]


class UnknownElementError(ValueError):
    """An atom's element is not described by the potential."""


class PotentialFileError(ValueError):
    """A potential file cannot be read (unknown suffix or kind, wrong format or version)."""


@runtime_checkable
class Potential(Protocol):
    """What every potential provides.

    Attributes:
        cutoff: interaction range ``r_cut`` in Å.
        elements: chemical symbols, in the order used by ``Graph.species``.

    Optional attribute ``site_local`` (default False): True when ``ε_i`` depends only on the
    pairs that contain atom ``i`` (pair potentials, EAM, Stillinger–Weber, descriptor-based
    networks); callers may then drop the pairs between atoms whose site energies they do not
    need. A message-passing model, where ``ε_i`` sees its neighbours' pairs, must leave it
    False.

    A potential is a ``torch.nn.Module``: :meth:`to` is the module's, with which the
    calculators and Cauchy–Born move its buffers and parameters to their device and dtype.
    """

    cutoff: float
    elements: tuple[str, ...]

    def __call__(self, graph: Graph) -> torch.Tensor:  # pragma: no cover - protocol
        """Return the site energies ``(n,)`` in eV."""
        ...

    def to(  # pragma: no cover - protocol
        self, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> Self:
        """Return the potential with its tensors on ``device`` and in ``dtype``."""
        ...


def species_indices(
    symbols: Sequence[str], elements: Sequence[str], *, source: str = "potential"
) -> torch.Tensor:
    """Map chemical symbols to indices in ``elements``.

    Args:
        symbols: one chemical symbol per atom.
        elements: the potential's symbols, in the order of ``Graph.species``.
        source: the potential's name in messages.

    Returns:
        ``(n,)`` int64 indices into ``elements``.

    Raises:
        UnknownElementError: a symbol is not in ``elements``; the message names ``source``.
    """
    lookup = {e: k for k, e in enumerate(elements)}
    missing = sorted({s for s in symbols if s not in lookup})
    if missing:
        raise UnknownElementError(
            f"{source}: element(s) {', '.join(missing)} not described; it has {', '.join(elements)}"
        )
    return torch.tensor([lookup[s] for s in symbols], dtype=torch.int64)


def interaction_range(potential: Potential) -> float:
    """How far in Å an atom's site energy reaches: ``receptive_field``, else ``cutoff``.

    Neighbour lists use ``cutoff``; geometry that must give atoms a full environment (the
    pad of a coupled problem, shells of held atoms) uses this range.
    """
    return float(getattr(potential, "receptive_field", potential.cutoff))


def _sym(m: torch.Tensor) -> torch.Tensor:
    return 0.5 * (m + m.transpose(-1, -2))


def evaluate(
    potential: Potential,
    graph: Graph,
    *,
    forces: bool = True,
    virial: bool = False,
    per_atom_virial: bool = False,
) -> dict[str, torch.Tensor]:
    """Energy, site energies, forces and virials from one forward and one backward pass.

    Args:
        potential: a :class:`Potential`.
        graph: the atoms and their pairs.
        forces: compute forces ``(n, 3)`` in eV/Å.
        virial: compute the total virial ``V σ`` ``(3, 3)`` in eV.
        per_atom_virial: compute per-atom virials ``(n, 3, 3)`` in eV.

    Returns:
        dict with ``energy`` (scalar), ``energies`` ``(n,)`` and, as asked, ``forces``,
        ``virial`` and ``virials``. Returned tensors are detached.
    """
    need_grad = forces or virial or per_atom_virial
    fused = getattr(potential, "energy_forces", None) if need_grad else None
    res = fused(graph, per_atom_virial=virial or per_atom_virial) if fused is not None else None
    if res is not None:  # compiled energies and forces, no autograd
        energies, f, w = res
        out = {"energy": energies.sum(), "energies": energies}
        if forces:
            out["forces"] = f
        if w is not None:
            if virial:
                out["virial"] = w.sum(dim=0)
            if per_atom_virial:
                out["virials"] = w
        return out
    vectors = graph.vectors.detach().requires_grad_(need_grad)
    energies = potential(graph.with_vectors(vectors))
    energy = energies.sum()
    out = {"energy": energy.detach(), "energies": energies.detach()}
    if not need_grad:
        return out
    (g,) = torch.autograd.grad(energy, vectors)
    if forces:
        out["forces"] = pair_scatter(g, graph.i, graph.j, graph.n_atoms).neg_()
    if virial:
        out["virial"] = _sym(vectors.detach().T @ g)
    if per_atom_virial:
        out["virials"] = per_atom_virials(graph, g)
    return out


def per_atom_virials(graph: Graph, g: torch.Tensor) -> torch.Tensor:
    """Per-atom virials ``(n, 3, 3)`` (eV) from the pair gradients ``g = ∂E/∂r_e`` ``(E, 3)``.

    Each pair's symmetrised ``r_e ⊗ g_e`` is shared half and half by its two atoms.
    """
    w = _sym(graph.vectors.detach()[:, :, None] * g[:, None, :]) * 0.5
    wa = torch.zeros((graph.n_atoms, 3, 3), dtype=g.dtype, device=g.device)
    wa.index_add_(0, graph.i, w)
    wa.index_add_(0, graph.j, w)
    return wa
