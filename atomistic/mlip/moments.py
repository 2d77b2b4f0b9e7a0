"""Moment-tensor descriptors: G4-like three-body information at the cost of a pair sum.

For atom ``i`` with neighbours ``j`` (``r_ij``, unit vector ``r̂_ij``, element ``b_j``):

    G2_i[b, (η, R_s)]     = Σ_{j ∈ b} exp(−η (r_ij − R_s)²) f_c(r_ij)       (as in ACSF)
    M_i[c, l]             = Σ_{j ∈ b} R_n(r_ij) r̂_ij^{⊗l}        channel c = (b, n), l = 0 … L
    I_i[l, (c ≤ c')]      = ⟨M_i[c, l], M_i[c', l]⟩              full contraction
                          = Σ_{j ∈ b, k ∈ b'} R_n(r_ij) R_n'(r_ik) cos^l θ_jik

with ``R_n(r) = exp(−η_a (r − μ_n)²) f_a(r)`` on the angular cutoff ``r_a`` and ``θ_jik`` the
angle at ``i`` (``j = k`` included, where ``cos θ = 1``). Since ``(1 + λ cos θ)^ζ`` is a
polynomial of degree ζ in ``cos θ``, the ``I`` span the angular dependence of G4 with
``ζ ≤ L`` (without G4's ``r_jk`` factor), but cost O(pairs), not O(triplets).

The contraction uses the symmetric monomials of ``r̂``: ``(r̂_j · r̂_k)^l =
Σ_{|α|=l} (l!/α!) r̂_j^α r̂_k^α``, so ``M`` stores ``sqrt(l!/α!) Σ_j R_n r̂_j^α``
(``(L+1)(L+2)(L+3)/6`` numbers per channel: 35 for ``L = 4``) and ``I`` is a plain dot
product over the ``α`` of one ``l``.

==================================  =========================================================
quantity                            code
==================================  =========================================================
monomials ``r̂^α``                   ``_monomials``: degree ``l`` from slices of degree ``l − 1``
neighbours within ``r_a``            full list padded to ``(n, Z)``, ``Z`` the largest degree
G2, ``f(r)``                        :mod:`atomistic.mlip.radial` (as in ACSF)
``M``                               ``bmm`` of (element one-hot ⊗ ``R_n``) with monomials, × weights
``I``                               ``bmm`` ``M Mᵀ`` per ``l`` (loop over ``l ≤ L`` only)
all of it, CPU ``float64``          compiled kernels with their first two derivatives
                                    (:mod:`atomistic.mlip.moment_kernels`, same values)
==================================  =========================================================

There is no Python loop over atoms or pairs; the output is differentiable with respect to
``graph.vectors``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from atomistic.mlip.radial import RadialDescriptor, RadialSpec, broadcast, cutoff_function
from atomistic.neighbours import Graph

__all__ = ["MomentDescriptor", "MomentSpec", "NeighbourTable", "monomial_exponents"]


@dataclass(kw_only=True)
class NeighbourTable:
    """A full neighbour list padded per atom (``Z`` = the largest degree).

    Attributes:
        vectors: ``(n, Z, 3)`` ``r_j − r_i`` in Å (padding: a dummy beyond the cutoff).
        species: ``(n, Z)`` element index of the neighbour (0 in padding).
        valid: ``(n, Z)`` True for real neighbours.
        neighbour: ``(n, Z)`` atom index of the neighbour (the centre itself in padding).
    """

    vectors: torch.Tensor
    species: torch.Tensor
    valid: torch.Tensor
    neighbour: torch.Tensor


def _default_angular_shifts() -> tuple[float, ...]:
    return (2.5, 3.0, 3.5)


@dataclass(frozen=True, kw_only=True)
class MomentSpec(RadialSpec):
    """Hyper-parameters of the moment-tensor descriptor (lengths in Å).

    Attributes:
        cutoff: radial cutoff ``r_cut``.
        angular_cutoff: ``r_a`` of the moment tensors (None: ``0.8 r_cut``). The cost grows
            with the neighbours within ``r_a`` (18 in fcc Cu at 4 Å, 42 at 5 Å).
        radial_eta: ``η`` of each G2 in Å⁻² (one value broadcast to every shift).
        radial_shift: ``R_s`` of each G2.
        angular_eta: ``η_a`` of the radial functions ``R_n`` of the moments, Å⁻² (one value,
            or one per shift).
        angular_shift: centres ``μ_n`` of ``R_n``.
        max_l: highest tensor rank ``L`` (``cos^l θ`` for ``l = 0 … L``).
        cutoff_function: ``"polynomial"`` (C²) or ``"cosine"`` (C¹).
    """

    label: ClassVar[str] = "moment"
    kind: ClassVar[str | None] = "moments"

    angular_eta: tuple[float, ...] = (2.0,)
    angular_shift: tuple[float, ...] = field(default_factory=_default_angular_shifts)
    max_l: int = 3

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_widths("angular", self.angular_eta, self.angular_shift)
        if not 0 <= self.max_l <= 8:
            raise ValueError(f"moment max_l must be in 0 … 8, got {self.max_l}")

    def n_features(self, n_elements: int) -> int:
        """Descriptor length ``D`` for ``n_elements`` elements."""
        k = n_elements * len(self.angular_shift)
        return n_elements * self.n_radial + (self.max_l + 1) * k * (k + 1) // 2


def monomial_exponents(max_l: int) -> list[tuple[int, int, int, int]]:
    """``(l, a, b, c)`` with ``a + b + c = l`` for ``l = 0 … max_l``, grouped by ``l``."""
    return [
        (l, a, b, l - a - b)
        for l in range(max_l + 1)
        for a in range(l, -1, -1)
        for b in range(l - a, -1, -1)
    ]


class MomentDescriptor(RadialDescriptor):
    """Moment-tensor descriptors ``(n, D)`` from a :class:`Graph`; see the module docstring.

    Feature order: G2 blocks by neighbour element (``n_el × n_radial``), then for each
    ``l = 0 … L`` the invariants of channel pairs ``c ≤ c'`` (row-major upper triangle,
    channel ``c = b·n_ang + n``).

    Args:
        spec: the hyper-parameters.
        n_elements: number of elements (``graph.species`` runs over ``range(n_elements)``).
    """

    spec: MomentSpec
    angular_eta: torch.Tensor
    angular_shift: torch.Tensor
    exponents: torch.Tensor
    weight: torch.Tensor
    pair_rows: torch.Tensor
    pair_cols: torch.Tensor

    def __init__(self, spec: MomentSpec, n_elements: int) -> None:
        super().__init__(spec, n_elements)
        f64 = torch.float64
        n_ang = len(spec.angular_shift)
        eta = broadcast(spec.angular_eta, n_ang)
        self.register_buffer("angular_eta", torch.tensor(eta, dtype=f64))
        self.register_buffer("angular_shift", torch.tensor(spec.angular_shift, dtype=f64))
        exps = monomial_exponents(spec.max_l)
        self.register_buffer("exponents", torch.tensor([e[1:] for e in exps], dtype=torch.int64))
        weight = [
            math.sqrt(math.factorial(l) / math.prod(map(math.factorial, e))) for l, *e in exps
        ]
        self.register_buffer("weight", torch.tensor(weight, dtype=f64))
        self.l_slices = [
            (sum(1 for e in exps if e[0] < l), sum(1 for e in exps if e[0] <= l))
            for l in range(spec.max_l + 1)
        ]
        k = self.n_elements * n_ang
        rows, cols = torch.triu_indices(k, k)
        self.register_buffer("pair_rows", rows)
        self.register_buffer("pair_cols", cols)
        #: use the compiled kernels for CPU float64 (see :meth:`forward`)
        self.compiled = True
        self._plan: Any = None

    def forward(self, graph: Graph) -> torch.Tensor:
        """Descriptors ``(n, D)`` in the dtype of ``graph.vectors``.

        CPU ``float64`` pair vectors take the compiled kernels
        (:mod:`atomistic.mlip.moment_kernels`; same values to round-off, derivatives to second
        order), unless ``compiled`` is False or ``MULTISCALE_TORCH_ONLY=1``; anything else
        takes :meth:`forward_torch`.
        """
        state = self.compiled_state(graph)
        if state is not None:
            return state[0]
        return self.forward_torch(graph)

    def compiled_state(self, graph: Graph) -> tuple[torch.Tensor, Any] | None:
        """``(G, state)`` from the compiled kernels, or None where they do not apply.

        ``state`` is a :class:`~atomistic.mlip.moment_autograd.MomentState`: its ``vjp``
        maps many cotangents ``(B, n, D)`` to pair gradients in one pass (every member's
        forces of a committee).
        """
        if not self._compiled_applies(graph):
            return None
        from atomistic.mlip.moment_autograd import moment_features, moment_plan

        if self._plan is None:
            self._plan = moment_plan(self)
        return moment_features(self._plan, graph)

    def _compiled_applies(self, graph: Graph) -> bool:
        v = graph.vectors
        if not (self.compiled and v.device.type == "cpu" and v.dtype == torch.float64):
            return False
        try:
            from atomistic.mlip import moment_kernels
        except ImportError:  # numba missing
            return False
        return moment_kernels.compiled_wanted() and v.ndim == 2

    def forward_torch(self, graph: Graph) -> torch.Tensor:
        """Descriptors ``(n, D)`` with torch operations only (any device and dtype)."""
        r = torch.linalg.vector_norm(graph.vectors, dim=1)
        radial = self.radial(graph, graph.i, graph.j, r)
        return torch.cat([radial, self._invariants(graph)], dim=1)

    def _invariants(self, graph: Graph) -> torch.Tensor:
        """``I`` ``(n, (L+1)·K(K+1)/2)`` from the padded full list within ``r_a``."""
        table = self.neighbour_table(graph, self.spec.r_angular)
        return self._table_invariants(table.vectors, table.species, table.valid)

    def from_table(self, table: NeighbourTable) -> torch.Tensor:
        """Descriptors ``(n, D)`` from a table within ``r_cut`` (same values as ``forward``).

        Atom ``i``'s row depends only on ``table.vectors[i]``, so the Jacobian of the
        descriptors with respect to the table is block diagonal: what training caches
        (:mod:`atomistic.mlip.jacobian`).
        """
        spec, n_el = self.spec, self.n_elements
        vec, species, valid = table.vectors, table.species, table.valid
        n = valid.shape[0]
        r = torch.linalg.vector_norm(vec, dim=2)
        fc = cutoff_function(r, spec.cutoff, spec.cutoff_function)
        g2 = torch.exp(-self.radial_eta * (r[..., None] - self.radial_shift) ** 2) * fc[..., None]
        onehot = (species[..., None] == torch.arange(n_el, device=r.device)) & valid[..., None]
        radial = torch.bmm(onehot.to(r.dtype).transpose(1, 2), g2).reshape(n, -1)
        return torch.cat([radial, self._table_invariants(vec, species, valid)], dim=1)

    def _table_invariants(
        self, vec: torch.Tensor, species: torch.Tensor, valid: torch.Tensor
    ) -> torch.Tensor:
        """``I`` from neighbour vectors ``(n, Z, 3)``, their elements and validity ``(n, Z)``."""
        spec, n_el = self.spec, self.n_elements
        n, z = valid.shape
        k = n_el * self.angular_shift.numel()
        if z == 0:
            return vec.new_zeros((n, (spec.max_l + 1) * k * (k + 1) // 2))
        r = torch.linalg.vector_norm(vec, dim=2)  # (n, Z)
        fa = cutoff_function(r, spec.r_angular, spec.cutoff_function)
        basis = torch.exp(-self.angular_eta * (r[..., None] - self.angular_shift) ** 2)
        basis = basis * fa[..., None]  # (n, Z, n_ang)
        if n_el > 1:  # channel (b, n): basis n of the neighbours of element b
            onehot = (species[..., None] == torch.arange(n_el, device=r.device)) & valid[..., None]
            basis = (onehot.to(r.dtype)[..., :, None] * basis[..., None, :]).reshape(n, z, k)
        mono = self._monomials(vec / r[..., None], weighted=False)  # (n, Z, n_mono)
        # the weights sqrt(l!/α!) go on the (n, K, n_mono) moments, not on every neighbour
        moments = torch.bmm(basis.transpose(1, 2), mono) * self.weight  # (n, K, n_mono)
        out = []
        for lo, hi in self.l_slices:  # loop over tensor ranks only
            m = moments[:, :, lo:hi]
            gram = torch.bmm(m, m.transpose(1, 2))  # (n, K, K)
            out.append(gram[:, self.pair_rows, self.pair_cols])
        return torch.cat(out, dim=1)

    def neighbour_table(self, graph: Graph, radius: float | None = None) -> NeighbourTable:
        """The full neighbour list within ``radius`` (default ``r_cut``) padded to ``(n, Z)``.

        Padding slots hold a dummy vector at twice the radius, where every radial function
        and its gradient vanish; ``Z`` is the largest degree.
        """
        radius = self.spec.cutoff if radius is None else float(radius)
        n = graph.n_atoms
        r = torch.linalg.vector_norm(graph.vectors.detach(), dim=1)
        idx = (r < radius).nonzero()[:, 0]
        i, j, v = graph.i[idx], graph.j[idx], graph.vectors[idx]
        centre = torch.cat([i, j])
        order = torch.argsort(centre, stable=True)
        centre = centre[order]
        neighbour = torch.cat([j, i])[order]
        vec = torch.cat([v, -v])[order]
        counts = torch.bincount(centre, minlength=n)
        z = int(counts.max()) if centre.numel() else 0
        slot = (
            torch.arange(centre.numel(), device=centre.device)
            - (torch.cumsum(counts, 0) - counts)[centre]
        )
        flat = centre * z + slot
        dummy = vec.new_zeros((n * z, 3))
        dummy[:, 0] = 2.0 * radius
        padded = dummy.index_put((flat,), vec)
        atom = torch.arange(n, device=centre.device).repeat_interleave(z)
        nbr = atom.index_put((flat,), neighbour)  # padding: the atom itself
        species = torch.zeros(n * z, dtype=torch.int64, device=centre.device)
        valid = torch.zeros(n * z, dtype=torch.bool, device=centre.device)
        species[flat] = graph.species[neighbour]
        valid[flat] = True
        return NeighbourTable(
            vectors=padded.view(n, z, 3),
            species=species.view(n, z),
            valid=valid.view(n, z),
            neighbour=nbr.view(n, z),
        )

    def _monomials(self, u: torch.Tensor, *, weighted: bool = True) -> torch.Tensor:
        """``sqrt(l!/α!) u^α`` ``(..., n_mono)`` for vectors ``u`` ``(..., 3)``.

        Degree ``l`` from degree ``l − 1`` (``D``, in :func:`monomial_exponents` order):
        ``[x·D, y·D[−l:], z·D[−1:]]`` (the last ``l`` entries of ``D`` have no ``x``). Only
        contiguous slices and broadcast products: gathers along a short last axis cost
        several times more on the CPU. ``weighted = False`` leaves out ``sqrt(l!/α!)``.
        """
        x, y, z = u[..., 0:1], u[..., 1:2], u[..., 2:3]
        degree = torch.ones_like(x)
        out = [degree]
        for l in range(1, self.spec.max_l + 1):
            degree = torch.cat([x * degree, y * degree[..., -l:], z * degree[..., -1:]], dim=-1)
            out.append(degree)
        mono = torch.cat(out, dim=-1)
        return mono * self.weight if weighted else mono
