"""Pair potentials (Lennard-Jones, Morse) as exact torch references.

Both follow the potential protocol of :mod:`atomistic.potentials.protocol`: ``forward(graph)``
returns site energies ``ε_i = ½ Σ_j φ(r_ij)`` (eV), pairs at or beyond ``cutoff`` contribute exactly
zero (also to every derivative), and the parameters are buffers, so ``.to(dtype, device)``
moves them. With ``shift=True`` the pair energy is ``φ(r) − φ(r_cut)``, continuous at the
cutoff (forces are still truncated there).

All elements listed share one set of parameters.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from atomistic.neighbours import Graph

__all__ = ["LennardJones", "Morse", "PairPotential"]


def _elements(element: str | Sequence[str]) -> tuple[str, ...]:
    els = (element,) if isinstance(element, str) else tuple(element)
    if not els or not all(isinstance(e, str) and e for e in els):
        raise ValueError(f"element must be a symbol or a sequence of symbols, got {element!r}")
    if len(set(els)) != len(els):
        raise ValueError(f"element symbols must be distinct, got {els}")
    return els


def _positive(name: str, value: float, owner: str) -> float:
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{owner}: {name} must be positive and finite, got {value}")
    return value


class PairPotential(torch.nn.Module):
    """Base class: a radial pair energy ``φ(r)`` truncated at ``cutoff``.

    Subclasses implement :meth:`phi` on tensors (``r`` strictly positive) and set
    ``source``.

    Args:
        cutoff: truncation radius in Å.
        shift: subtract ``φ(cutoff)`` so that the energy is continuous.
        element: symbol, or tuple of symbols that share the parameters.
    """

    cutoff: float
    elements: tuple[str, ...]
    source: str
    #: ``ε_i`` uses only the pairs that contain ``i`` (see :mod:`atomistic.potentials.protocol`)
    site_local = True

    def __init__(self, *, cutoff: float, shift: bool, element: str | Sequence[str]) -> None:
        super().__init__()
        self.elements = _elements(element)
        self.cutoff = _positive("cutoff", cutoff, type(self).__name__)
        self.shift = bool(shift)

    def phi(self, r: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """Untruncated, unshifted pair energy ``φ(r)`` in eV."""
        raise NotImplementedError

    def pair_energy(self, r: torch.Tensor) -> torch.Tensor:
        """Truncated (and, if asked, shifted) pair energy; exactly zero for ``r ≥ cutoff``."""
        inside = r < self.cutoff
        # double where: the discarded branch is evaluated at a harmless radius so that
        # no inf/NaN enters the gradient of the selected one
        r_safe = torch.where(inside, r, torch.full_like(r, self.cutoff))
        e = self.phi(r_safe)
        if self.shift:
            e = e - self.phi(r.new_tensor(self.cutoff))
        return torch.where(inside, e, torch.zeros_like(e))

    def forward(self, graph: Graph) -> torch.Tensor:
        """Site energies ``(n,)`` in eV: half of each pair energy to each atom."""
        v = graph.vectors
        r = torch.linalg.vector_norm(v, dim=-1)
        half = 0.5 * self.pair_energy(r)
        energies = torch.zeros(graph.n_atoms, dtype=v.dtype, device=v.device)
        return energies.index_add(0, graph.i, half).index_add(0, graph.j, half)

    def extra_repr(self) -> str:
        """The source and the elements, for ``repr``."""
        return f"{self.source}, elements={self.elements}"


class LennardJones(PairPotential):
    """``φ(r) = 4ε [(σ/r)¹² − (σ/r)⁶]``.

    Args:
        epsilon: well depth ε in eV.
        sigma: length σ in Å (``φ(σ) = 0``, minimum at ``2^{1/6} σ``).
        cutoff: truncation radius in Å.
        shift: subtract ``φ(cutoff)`` so that the energy is continuous.
        element: symbol, or tuple of symbols that share the parameters.
    """

    epsilon: torch.Tensor
    sigma: torch.Tensor

    def __init__(
        self,
        *,
        epsilon: float,
        sigma: float,
        cutoff: float,
        shift: bool = False,
        element: str | Sequence[str] = "X",
    ) -> None:
        super().__init__(cutoff=cutoff, shift=shift, element=element)
        name = "LennardJones"
        self.register_buffer(
            "epsilon", torch.tensor(_positive("epsilon", epsilon, name), dtype=torch.float64)
        )
        self.register_buffer(
            "sigma", torch.tensor(_positive("sigma", sigma, name), dtype=torch.float64)
        )
        self.source = (
            f"LennardJones(epsilon={float(epsilon)}, sigma={float(sigma)}, "
            f"cutoff={self.cutoff}, shift={self.shift})"
        )

    def phi(self, r: torch.Tensor) -> torch.Tensor:
        """``φ(r)`` in eV."""
        eps = self.epsilon.to(r.dtype)
        s6 = (self.sigma.to(r.dtype) / r) ** 6
        return 4.0 * eps * (s6 * s6 - s6)


class Morse(PairPotential):
    """``φ(r) = D [e^{−2α(r−r₀)} − 2 e^{−α(r−r₀)}]``.

    Args:
        D: well depth in eV (``φ(r₀) = −D``).
        alpha: inverse width α in 1/Å.
        r0: equilibrium distance r₀ in Å.
        cutoff: truncation radius in Å.
        shift: subtract ``φ(cutoff)`` so that the energy is continuous.
        element: symbol, or tuple of symbols that share the parameters.
    """

    D: torch.Tensor
    alpha: torch.Tensor
    r0: torch.Tensor

    def __init__(
        self,
        *,
        D: float,
        alpha: float,
        r0: float,
        cutoff: float,
        shift: bool = False,
        element: str | Sequence[str] = "X",
    ) -> None:
        super().__init__(cutoff=cutoff, shift=shift, element=element)
        name = "Morse"
        self.register_buffer("D", torch.tensor(_positive("D", D, name), dtype=torch.float64))
        self.register_buffer(
            "alpha", torch.tensor(_positive("alpha", alpha, name), dtype=torch.float64)
        )
        self.register_buffer("r0", torch.tensor(_positive("r0", r0, name), dtype=torch.float64))
        self.source = (
            f"Morse(D={float(D)}, alpha={float(alpha)}, r0={float(r0)}, "
            f"cutoff={self.cutoff}, shift={self.shift})"
        )

    def phi(self, r: torch.Tensor) -> torch.Tensor:
        """``φ(r)`` in eV."""
        x = torch.exp(-self.alpha.to(r.dtype) * (r - self.r0.to(r.dtype)))
        return self.D.to(r.dtype) * (x * x - 2.0 * x)
