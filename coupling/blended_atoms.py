"""The atomistic share of the blended energy, its gradient and Hessian-vector products.

    E_a(x) = Σ_i β_i ε_i(x)            (all atoms of the core, handshake and pad)

============================  ===============================================
quantity                      code
============================  ===============================================
``ε_i``                       ``potential(graph)`` (site energies, eV)
``E_a``                       ``(beta * energies).sum()``
``∂E_a/∂x``                   ``autograd.grad(E_a, x)``, or the potential's
                              ``weighted_energy_gradient`` (no autograd)
``(∂²E_a/∂x²) v``             ``autograd.grad(g, x, v)`` on the retained graph,
                              or the potential's ``hessian_operator`` (analytic)
============================  ===============================================

A potential that provides ``weighted_energy_gradient(graph, weights) -> (E, ∂E/∂r)`` (the
network potentials with the compiled moment descriptor:
:meth:`atomistic.mlip.network.NetworkPotential.weighted_energy_gradient`; None where it does
not apply) gets ``E_a`` and its gradient from it, the pair gradient summed onto the atoms.
A potential that provides ``hessian_operator(graph, weights) -> (v -> H v)`` (EAM:
:meth:`atomistic.potentials.eam.EAM.hessian_operator`) gets its Hessian-vector products from
it: coefficients once per state, then gathers and sums per product, no autograd graph.

Pad atoms carry ``β = 0`` but their positions enter the site energies of their neighbours;
the caller maps their gradient onto the FE field. Positions are ``X + u`` with ``X`` the
reference sites. The neighbour list keeps a skin, so it is rebuilt only rarely.

With a ``site_local`` potential (``ε_i`` uses only the pairs that contain ``i``: EAM, pair,
Stillinger–Weber) the pairs between two ``β = 0`` atoms change no weighted site energy and
are left out of the blended energy and its derivatives (a fifth of the pairs with a pad
``r_cut`` thick around a 21.5 Å core); the unweighted :meth:`~BlendedAtoms.site_energies`
keep every pair.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import numpy as np
import torch

from atomistic.device import resolve_device
from atomistic.neighbours import Graph, NeighbourList, SpreadError, build_graph
from atomistic.pair_ops import pair_scatter
from atomistic.potentials.protocol import Potential, species_indices

__all__ = ["BlendedAtoms"]


class BlendedAtoms:
    """β-weighted site energies of a fixed set of atoms.

    Args:
        potential: a project potential (site energies from a graph).
        reference_positions: ``(n, 3)`` reference sites ``X`` in Å.
        symbols: ``n`` chemical symbols.
        beta: ``(n,)`` blending weights in ``[0, 1]``.
        cell: ``(3, 3)`` cell in Å (rows), used along periodic axes only.
        pbc: three bools (a 2.5D slab is periodic along ``z`` only).
        device: torch device; default CUDA when present.
        dtype: ``torch.float64`` (default) or ``torch.float32``.
        skin: neighbour-list skin in Å.
        hessian_dtype: dtype of the Hessian-vector products (default: ``dtype``). The
            products only steer the Krylov solver (the minimiser is fixed by the gradient,
            computed in ``dtype``), so ``torch.float32`` is a safe speed-up (figures in
            ``docs/case-coupled.md``, ``solver.hessian_precision``).
    """

    def __init__(
        self,
        *,
        potential: Potential,
        reference_positions: np.ndarray,
        symbols: Sequence[str],
        beta: np.ndarray,
        cell: np.ndarray,
        pbc: Sequence[bool] = (False, False, False),
        device: str | torch.device | None = None,
        dtype: torch.dtype = torch.float64,
        skin: float = 1.0,
        hessian_dtype: torch.dtype | None = None,
    ) -> None:
        self.device = resolve_device(device)
        self.dtype = dtype
        self.potential = potential.to(device=self.device, dtype=dtype)
        self.reference = np.ascontiguousarray(reference_positions, dtype=np.float64)
        self.n_atoms = len(self.reference)
        self.beta_np = np.asarray(beta, dtype=np.float64)
        if self.beta_np.shape != (self.n_atoms,):
            raise ValueError(f"beta must have shape ({self.n_atoms},), got {self.beta_np.shape}")
        self.beta = torch.as_tensor(self.beta_np, dtype=dtype, device=self.device)
        self.species = species_indices(
            list(symbols), potential.elements, source=getattr(potential, "source", "potential")
        ).to(self.device)
        self.cell = torch.as_tensor(np.asarray(cell, dtype=np.float64), dtype=dtype)
        self.cell = self.cell.to(self.device)
        self.pbc = tuple(bool(p) for p in np.broadcast_to(pbc, 3))
        self.neighbours = NeighbourList(cutoff=potential.cutoff, skin=skin)
        self.drop_idle_pairs = bool(getattr(potential, "site_local", False))
        self._pair_mask: tuple[int, torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self._hessian_point: tuple[np.ndarray, Callable[[torch.Tensor], torch.Tensor]] | None = None
        self.hessian_dtype = dtype if hessian_dtype is None else hessian_dtype
        if self.hessian_dtype == dtype:
            self._hessian_potential, self._hessian_beta = self.potential, self.beta
        else:
            self._hessian_potential = copy.deepcopy(self.potential).to(dtype=self.hessian_dtype)
            self._hessian_beta = self.beta.to(self.hessian_dtype)

    def _positions(
        self, u: np.ndarray, *, grad: bool, dtype: torch.dtype | None = None
    ) -> torch.Tensor:
        x = torch.as_tensor(self.reference + np.asarray(u, dtype=np.float64).reshape(-1, 3))
        return x.to(device=self.device, dtype=dtype or self.dtype).requires_grad_(grad)

    def _graph(self, x: torch.Tensor) -> Graph:
        """The atoms at positions ``x`` and their pairs (the list reused within its skin)."""
        return build_graph(
            positions=x,
            cell=self.cell,
            species=self.species,
            neighbours=self.neighbours,
            pbc=self.pbc,
        )

    def _weighted_energy(self, x: torch.Tensor, *, hessian: bool = False) -> torch.Tensor:
        graph = self._graph(x)
        if self.drop_idle_pairs:
            graph = self._weighted_pairs(graph)
        if hessian:
            return (self._hessian_beta * self._hessian_potential(graph)).sum()
        return (self.beta * self.potential(graph)).sum()

    def _weighted_pairs(self, graph: Graph) -> Graph:
        """``graph`` without the pairs whose two atoms both have ``β = 0``."""
        builds = self.neighbours.n_builds
        if self._pair_mask is None or self._pair_mask[0] != builds:
            active = self.beta > 0
            keep = torch.nonzero(active[graph.i] | active[graph.j])[:, 0]
            self._pair_mask = (builds, keep, graph.i[keep], graph.j[keep])
        _, keep, i, j = self._pair_mask
        return Graph(
            n_atoms=graph.n_atoms,
            species=graph.species,
            i=i,
            j=j,
            vectors=graph.vectors.index_select(0, keep),
        )

    def site_energies(self, u: np.ndarray) -> np.ndarray:
        """Unweighted site energies ``ε_i`` ``(n,)`` in eV at displacement ``u`` ``(n, 3)``."""
        graph = self._graph(self._positions(u, grad=False))
        with torch.no_grad():
            return self.potential(graph).double().cpu().numpy()

    def energy_gradient(self, u: np.ndarray) -> tuple[float, np.ndarray]:
        """``E_a`` (eV) and ``∂E_a/∂x`` ``(n, 3)`` (eV/Å) at displacement ``u`` ``(n, 3)``.

        ``(+inf, 0)`` where no neighbour list can be built (non-finite displacements, or atoms
        thrown absurdly far: :class:`atomistic.neighbours.SpreadError`), as a line search's
        trial state can be: the search then shortens its step.
        """
        try:
            return self._energy_gradient(u)
        except SpreadError:
            return float("inf"), np.zeros((len(self.reference), 3))

    def _energy_gradient(self, u: np.ndarray) -> tuple[float, np.ndarray]:
        analytic = getattr(self.potential, "weighted_energy_gradient", None)
        if analytic is not None:
            graph = self._graph(self._positions(u, grad=False))
            if self.drop_idle_pairs:
                graph = self._weighted_pairs(graph)
            result = analytic(graph, self.beta)
            if result is not None:
                energy, g_pairs = result
                g = pair_scatter(g_pairs.contiguous(), graph.i, graph.j, graph.n_atoms)
                return float(energy), g.double().cpu().numpy()
        x = self._positions(u, grad=True)
        energy = self._weighted_energy(x)
        (g,) = torch.autograd.grad(energy, x)
        return float(energy.detach()), g.double().cpu().numpy()

    def hessian_vector(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """``(∂²E_a/∂x²) v`` ``(n, 3)`` in eV/Å² at displacement ``u``.

        The first call at a new ``u`` builds the operator (the potential's
        ``hessian_operator``, else the differentiable gradient kept for autograd); later calls
        at the same ``u`` (the Krylov iterations of one Newton step) only apply it.
        """
        u = np.asarray(u, dtype=np.float64).reshape(-1, 3)
        point = self._hessian_point
        if point is None or not np.array_equal(point[0], u):
            self._hessian_point = point = (u.copy(), self._hessian_operator(u))
        vt = torch.as_tensor(np.asarray(v, dtype=np.float64).reshape(-1, 3))
        hv = point[1](vt.to(device=self.device, dtype=self.hessian_dtype))
        return hv.double().cpu().numpy()

    def _hessian_operator(self, u: np.ndarray) -> Callable[[torch.Tensor], torch.Tensor]:
        """``v -> (∂²E_a/∂x²) v`` at displacement ``u``, in ``hessian_dtype``."""
        analytic = getattr(self._hessian_potential, "hessian_operator", None)
        if analytic is not None:
            x = self._positions(u, grad=False, dtype=self.hessian_dtype)
            graph = self._graph(x)
            if self.drop_idle_pairs:
                graph = self._weighted_pairs(graph)
            op: Callable[[torch.Tensor], torch.Tensor] = analytic(graph, self._hessian_beta)
            return op
        x = self._positions(u, grad=True, dtype=self.hessian_dtype)
        energy = self._weighted_energy(x, hessian=True)
        (g,) = torch.autograd.grad(energy, x, create_graph=True)

        def product(v: torch.Tensor) -> torch.Tensor:
            (hv,) = torch.autograd.grad(g, x, v, retain_graph=True)
            return hv

        return product

    def release(self) -> None:
        """Drop the retained Hessian graph (frees memory between Newton steps)."""
        self._hessian_point = None
