"""Behler–Parrinello atom-centred symmetry functions (ACSF), differentiable in torch.

For atom ``i`` with neighbours ``j, k`` (``r_ij = |r_ij|``, ``θ_ijk`` the angle at ``i``):

    G2_i[b, (η, R_s)]    = Σ_{j ∈ b} exp(−η (r_ij − R_s)²) f_c(r_ij)
    G4_i[bc, (ζ, λ, η)]  = 2^{1−ζ} Σ_{j<k, {j,k} ∈ bc} (1 + λ cos θ_ijk)^ζ
                           · exp(−η (r_ij² + r_ik² + r_jk²)) f_a(r_ij) f_a(r_ik) f_a(r_jk)

``b`` runs over the elements, ``bc`` over unordered element pairs; ``f_c`` is the cutoff
function at ``r_cut``, ``f_a`` the same at the angular cutoff ``r_a ≤ r_cut``. Each unordered
neighbour pair ``{j, k}`` counts once (half of Behler's double sum over ``j ≠ k``).

==================================  =========================================================
quantity                            code
==================================  =========================================================
``f(r)``, G2                        :mod:`atomistic.mlip.radial` (shared with the moments)
triplets ``(i; j, k)``              full list sorted by centre, ``repeat_interleave``
G4                                  ``index_add_`` into rows ``i·n_pairs + pair(s_j, s_k)``
==================================  =========================================================

There is no Python loop over atoms, pairs or triplets; the output is differentiable with
respect to ``graph.vectors``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from atomistic.mlip.radial import RadialDescriptor, RadialSpec, cutoff_function
from atomistic.neighbours import Graph

__all__ = ["ACSF", "ACSFSpec", "cutoff_function", "triplets"]


@dataclass(frozen=True, kw_only=True)
class ACSFSpec(RadialSpec):
    """Hyper-parameters of the descriptor (all lengths in Å).

    Attributes:
        cutoff: radial cutoff ``r_cut``.
        angular_cutoff: ``r_a`` of the angular terms (None: ``0.8 r_cut``). The number of
            triplets grows as ``r_a⁶``: in fcc Cu, ``r_a = 4`` Å gives 153 per atom, 5 Å 861.
        radial_eta: ``η`` of each G2 in Å⁻²; one value is broadcast to every shift.
        radial_shift: ``R_s`` of each G2.
        angular_eta: ``η`` of the G4 terms in Å⁻² (every combination with ``zeta``, ``λ=±1``).
        zeta: exponents ``ζ ≥ 1`` of the G4 terms.
        cutoff_function: ``"polynomial"`` (C²) or ``"cosine"`` (C¹).
    """

    label: ClassVar[str] = "ACSF"

    angular_eta: tuple[float, ...] = (0.005, 0.05)
    zeta: tuple[float, ...] = (1.0, 2.0, 4.0)

    def __post_init__(self) -> None:
        super().__post_init__()
        if any(z < 1 for z in self.zeta):
            raise ValueError(f"ACSF zeta values must be >= 1, got {list(self.zeta)}")

    @property
    def n_angular(self) -> int:
        """G4 functions per neighbour element pair."""
        return 2 * len(self.zeta) * len(self.angular_eta)

    def n_features(self, n_elements: int) -> int:
        """Descriptor length ``D`` for ``n_elements`` elements."""
        n_pairs = n_elements * (n_elements + 1) // 2
        return n_elements * self.n_radial + n_pairs * self.n_angular


def triplets(centre: torch.Tensor, n_atoms: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every unordered pair of entries that share a centre, for a list sorted by centre.

    Args:
        centre: ``(P,)`` int64 centre atom of each entry, non-decreasing.
        n_atoms: number of atoms.

    Returns:
        ``(first, second)``, each ``(T,)``, with ``first < second`` entry indices and
        ``T = Σ_i d_i (d_i − 1)/2`` for degrees ``d_i``.
    """
    device = centre.device
    counts = torch.bincount(centre, minlength=n_atoms)
    start = torch.cumsum(counts, 0) - counts
    entries = torch.arange(centre.numel(), device=device)
    local = entries - start[centre]
    n_after = counts[centre] - local - 1  # partners later in the same block
    total = int(n_after.sum())
    first = torch.repeat_interleave(entries, n_after, output_size=total)
    t_start = torch.cumsum(n_after, 0) - n_after
    second = first + 1 + (torch.arange(total, device=device) - t_start[first])
    return first, second


class ACSF(RadialDescriptor):
    """ACSF descriptors ``(n, D)`` from a :class:`Graph`; see the module docstring.

    Feature order: G2 blocks by neighbour element (``n_el × n_radial``), then G4 blocks by
    element pair ``(b ≤ c)`` (``n_pairs × [λ][ζ][η]``).

    Args:
        spec: the hyper-parameters.
        n_elements: number of elements (``graph.species`` runs over ``range(n_elements)``).
    """

    spec: ACSFSpec
    angular_eta: torch.Tensor
    zeta: torch.Tensor
    lambdas: torch.Tensor
    pair_index: torch.Tensor

    def __init__(self, spec: ACSFSpec, n_elements: int) -> None:
        super().__init__(spec, n_elements)
        self.n_pairs = self.n_elements * (self.n_elements + 1) // 2
        self.register_buffer("angular_eta", torch.tensor(spec.angular_eta, dtype=torch.float64))
        self.register_buffer("zeta", torch.tensor(spec.zeta, dtype=torch.float64))
        self.register_buffer("lambdas", torch.tensor([1.0, -1.0], dtype=torch.float64))
        n = self.n_elements
        pair = torch.zeros((n, n), dtype=torch.int64)
        k = 0
        for b in range(n):
            for c in range(b, n):
                pair[b, c] = pair[c, b] = k
                k += 1
        self.register_buffer("pair_index", pair)

    def forward(self, graph: Graph) -> torch.Tensor:
        """Descriptors ``(n, D)`` in the dtype of ``graph.vectors``."""
        r = torch.linalg.vector_norm(graph.vectors, dim=1)
        keep = r < self.spec.cutoff
        i, j, v = graph.i, graph.j, graph.vectors
        if not bool(keep.all()):
            idx = keep.nonzero()[:, 0]
            i, j, v, r = i[idx], j[idx], v[idx], r[idx]
        radial = self.radial(graph, i, j, r)
        angular = self._angular(graph, i, j, v, r)
        return torch.cat([radial, angular], dim=1)

    def _angular(
        self, graph: Graph, i: torch.Tensor, j: torch.Tensor, v: torch.Tensor, r: torch.Tensor
    ) -> torch.Tensor:
        """G4 ``(n, n_pairs·n_angular)`` from the pairs within ``r_cut`` (half list)."""
        spec = self.spec
        r_a = spec.r_angular
        if r_a < spec.cutoff:
            idx = (r < r_a).nonzero()[:, 0]
            i, j, v, r = i[idx], j[idx], v[idx], r[idx]
        # full list, sorted by centre
        centre = torch.cat([i, j])
        order = torch.argsort(centre, stable=True)
        centre = centre[order]
        other = torch.cat([j, i])[order]
        vec = torch.cat([v, -v])[order]
        dist = torch.cat([r, r])[order]
        first, second = triplets(centre, graph.n_atoms)
        kind = spec.cutoff_function
        # per-entry factors exp(−η r²) f_a(r), gathered per triplet
        edge = (
            torch.exp(-self.angular_eta * (dist**2)[:, None])
            * cutoff_function(dist, r_a, kind)[:, None]
        )
        v_ij, v_ik = vec[first], vec[second]
        cos = (v_ij * v_ik).sum(1) / (dist[first] * dist[second])
        r_jk2 = ((v_ik - v_ij) ** 2).sum(1)
        f_jk = cutoff_function(torch.sqrt(r_jk2), r_a, kind)
        jk = torch.exp(-self.angular_eta * r_jk2[:, None]) * f_jk[:, None]
        radial = edge[first] * edge[second] * jk  # (T, n_η)
        base = torch.clamp(1.0 + self.lambdas * cos[:, None], min=0.0)  # (T, 2)
        powers = torch.stack([self._power(base, z) for z in spec.zeta], dim=2)  # (T, 2, n_ζ)
        feat = (powers.reshape(-1, 2 * len(spec.zeta), 1) * radial[:, None, :]).reshape(
            -1, spec.n_angular
        )
        s = graph.species
        row = centre[first] * self.n_pairs + self.pair_index[s[other[first]], s[other[second]]]
        out = torch.zeros(
            (graph.n_atoms * self.n_pairs, spec.n_angular), dtype=r.dtype, device=r.device
        )
        out = out.index_add(0, row, feat)
        return out.view(graph.n_atoms, self.n_pairs * spec.n_angular)

    @staticmethod
    def _power(base: torch.Tensor, zeta: float) -> torch.Tensor:
        """``2^{1−ζ} base^ζ``; repeated squaring for integer ``ζ`` (cheaper than ``pow``)."""
        scale = 2.0 ** (1.0 - zeta)
        if zeta == int(zeta) and zeta <= 16:
            k, out, sq = int(zeta), None, base
            while k:
                if k & 1:
                    out = sq if out is None else out * sq
                k >>= 1
                if k:
                    sq = sq * sq
            return out * scale
        return base**zeta * scale
