"""Cauchy–Born energy density, first Piola stress and tangent, batched over deformation gradients.

For a unit cell with reference cell ``C0`` (rows are lattice vectors), volume ``Ω0`` and basis
``X`` (``k`` atoms), a deformation gradient ``F`` maps every pair vector affinely; the basis
atoms may in addition shift by ``p`` (multilattices: diamond, hcp):

==============================================  ===========================================
equation                                        code
==============================================  ===========================================
``r_e(F, p) = F (X_j − X_i + S·C0) + p_j − p_i``  ``_pair_vectors``
``W(F) = min_p Σ_{i∈cell} ε_i / Ω0``             ``energy_density`` (Newton in ``p``)
``P = ∂W/∂F``                                    autograd, ``create_graph`` for the tangent
``A = ∂²W/∂F∂F − W_Fp W_pp⁻¹ W_pF``             nine batched backward passes + Schur complement
==============================================  ===========================================

Units: ``W``, ``P`` and ``A`` in eV/Å³; elastic constants are reported in GPa.
The relaxed (``relaxed=True``) tangent includes the internal relaxation of the shifts (relaxed
ion); ``relaxed=False`` keeps the basis affine (clamped ion). For simple lattices they agree.
"""

from __future__ import annotations

import functools
from typing import Literal, overload

import numpy as np
import torch
import vesin
from ase import Atoms

from atomistic.device import resolve_device
from atomistic.neighbours import Graph
from atomistic.potentials.protocol import Potential, species_indices

__all__ = [
    "MIN_SEPARATION",
    "MIN_STRETCH",
    "CauchyBorn",
    "EV_PER_A3_TO_GPA",
    "smallest_singular_value",
    "voigt_from_tangent",
]

EV_PER_A3_TO_GPA = 160.21766208
_VOIGT = [(0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)]

#: The smallest singular value of ``F`` evaluated: below it :meth:`CauchyBorn.evaluate`
#: returns ``W = +inf``, a wall that a line search steps back from. It bounds the pair list
#: (below). A cell sheared by a whole Burgers vector across one or two planes, as next to a
#: dislocation core, has a smallest singular value near 0.5 and an unsquashed lattice, so the
#: wall sits well below that; squashing is caught by :data:`MIN_SEPARATION`.
MIN_STRETCH = 0.25

#: ``F`` that bring two lattice sites closer than this fraction of the nearest-neighbour
#: distance get ``W = +inf`` too: far outside any crystal's elastic range, where a
#: potential's short-range tables are not meant to be read.
MIN_SEPARATION = 0.5

#: ``F`` whose smallest singular value falls in one of these bins share a pair list, made for
#: the bin's most squashed ``F``: the pairs within the cutoff number ``~ 1/s_min³`` times
#: those at ``F = I``, so one squashed ``F`` must not size the list of the whole batch.
_STRETCH_BINS = (0.8, 0.65, 0.5, 0.4, 0.32, MIN_STRETCH)

#: Reference pairs of the unit cell: ``i (E,)``, ``j (E,)`` and ``X_j − X_i + S·C0`` ``(E, 3)``.
_Pairs = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


#: Absolute margin taken off :func:`smallest_singular_value`: it bounds the closed form's
#: round-off (``~1e-8 · spread`` of the eigenvalues of ``FᵀF`` where two nearly coincide), so
#: the value is a lower bound and a pair list sized by it misses no pair (an extra pair past
#: the cutoff adds zero).
_SMIN_MARGIN = 1e-7


def smallest_singular_value(F: torch.Tensor) -> torch.Tensor:
    """Smallest singular value of each ``F`` ``(m, 3, 3)``, less :data:`_SMIN_MARGIN`.

    ``√λ_min(FᵀF)`` from the closed form of a symmetric 3×3 eigenproblem (trigonometric):
    a lower bound tight to the margin, far cheaper than a batched SVD.
    """
    f = F.reshape(-1, 3, 3)
    c00, c11, c22 = (f[:, :, k].square().sum(dim=1) for k in range(3))
    c01 = (f[:, :, 0] * f[:, :, 1]).sum(dim=1)
    c02 = (f[:, :, 0] * f[:, :, 2]).sum(dim=1)
    c12 = (f[:, :, 1] * f[:, :, 2]).sum(dim=1)
    q = (c00 + c11 + c22) / 3
    b00, b11, b22 = c00 - q, c11 - q, c22 - q
    off = c01.square() + c02.square() + c12.square()
    p = torch.sqrt((b00.square() + b11.square() + b22.square() + 2 * off) / 6)
    det = (
        b00 * (b11 * b22 - c12.square())
        - c01 * (c01 * b22 - c12 * c02)
        + c02 * (c01 * c12 - b11 * c02)
    )
    scale = torch.where(p > 0, p, 1.0)
    r = (det / (2 * scale**3)).clamp(-1.0, 1.0)
    lam = torch.where(p > 0, q + 2 * p * torch.cos(torch.acos(r) / 3 + 2 * np.pi / 3), q)
    return torch.sqrt(lam.clamp(min=0.0)) - _SMIN_MARGIN


def voigt_from_tangent(A: np.ndarray) -> np.ndarray:
    """6×6 Voigt matrix from a ``(3, 3, 3, 3)`` tangent, averaged over minor symmetries."""
    C = np.empty((6, 6))
    for I, (a, b) in enumerate(_VOIGT):
        for J, (c, d) in enumerate(_VOIGT):
            C[I, J] = 0.25 * (A[a, b, c, d] + A[b, a, c, d] + A[a, b, d, c] + A[b, a, d, c])
    return C


class CauchyBorn:
    """Cauchy–Born response of a potential for one unit cell.

    Args:
        potential: a project potential (site energies from a graph).
        unit_cell_atoms: periodic ASE ``Atoms`` of the reference unit cell.
        device: torch device (CUDA when present by default).
        dtype: ``torch.float64`` (default) or ``torch.float32``.
        shift_tol: gradient tolerance (eV/Å per cell) of the shift relaxation.
        chunk: deformation gradients per batch of :meth:`evaluate` on the CPU. Every step is
            memory bound, so batches whose arrays stay in cache beat one large batch.
            ``None``: one batch.
    """

    def __init__(
        self,
        potential: Potential,
        unit_cell_atoms: Atoms,
        *,
        device: str | torch.device | None = None,
        dtype: torch.dtype = torch.float64,
        shift_tol: float = 1e-10,
        chunk: int | None = 2048,
    ) -> None:
        if not all(unit_cell_atoms.pbc):
            raise ValueError("CauchyBorn needs a unit cell periodic in all three directions")
        self.device = resolve_device(device)
        self.dtype = dtype
        self.potential = potential.to(device=self.device, dtype=dtype)
        self.cell = np.asarray(unit_cell_atoms.cell.array, dtype=np.float64)
        self.basis = np.asarray(unit_cell_atoms.positions, dtype=np.float64)
        self.n_basis = len(unit_cell_atoms)
        self.volume = float(abs(np.linalg.det(self.cell)))
        self.species = species_indices(
            unit_cell_atoms.get_chemical_symbols(),
            potential.elements,
            source=getattr(potential, "source", "potential"),
        ).to(self.device)
        self.shift_tol = shift_tol
        if chunk is not None and chunk < 1:
            raise ValueError(f"chunk must be a positive number of configurations, got {chunk}")
        self.chunk = chunk

    # -- pair geometry -------------------------------------------------------------------
    def _reference_pairs(self, smin: float) -> _Pairs:
        """Reference pairs: none within the cutoff missed for any ``F`` with ``σ_min ≥ smin``."""
        if smin <= 0:
            raise ValueError("deformation gradient with non-positive singular value")
        cut = self.potential.cutoff / smin * (1.0 + 1e-9)
        nl = vesin.NeighborList(cutoff=cut, full_list=False)
        i, j, S = nl.compute(self.basis, self.cell, True, "ijS")
        d0 = self.basis[j] - self.basis[i] + S @ self.cell
        t = lambda a, dt: torch.as_tensor(a, dtype=dt, device=self.device)
        return (
            t(i.astype(np.int64), torch.int64),
            t(j.astype(np.int64), torch.int64),
            t(d0, self.dtype),
        )

    def _lattice_graph(
        self, F: torch.Tensor, pairs: _Pairs, p: torch.Tensor | None = None
    ) -> Graph:
        """The ``m`` lattices under ``F`` ``(m,3,3)``, shifts ``p`` ``(m,k,3)``: one graph."""
        i, j, d0 = pairs
        m, k, E = F.shape[0], self.n_basis, i.shape[0]
        vec = torch.einsum("mab,eb->mea", F, d0)
        if p is not None and self.n_basis > 1:  # one basis atom: no shifts, p = 0
            vec = vec + p[:, j] - p[:, i]
        offs = (torch.arange(m, device=self.device) * k)[:, None]
        return Graph(
            n_atoms=m * k,
            species=self.species.repeat(m),
            i=(i[None, :] + offs).reshape(-1),
            j=(j[None, :] + offs).reshape(-1),
            vectors=vec.reshape(m * E, 3),
        )

    def _site_energy_density(self, F: torch.Tensor, p: torch.Tensor, pairs: _Pairs) -> torch.Tensor:
        """``W`` per configuration ``(m,)`` for ``F`` ``(m,3,3)`` and shifts ``p`` ``(m,k,3)``."""
        graph = self._lattice_graph(F, pairs, p)
        return self.potential(graph).reshape(F.shape[0], self.n_basis).sum(dim=1) / self.volume

    # -- shift relaxation ----------------------------------------------------------------
    def _free_shift_hessian(
        self, W: torch.Tensor, q: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Gradient ``(m, s)`` and Hessian ``(m, s, s)`` of ``Σ W`` in the free shifts ``q``."""
        (g,) = torch.autograd.grad(W.sum(), q, create_graph=True)
        g = g.reshape(q.shape[0], -1)
        rows = [
            torch.autograd.grad(g[:, a].sum(), q, retain_graph=True)[0].reshape(q.shape[0], -1)
            for a in range(g.shape[1])
        ]
        return g, torch.stack(rows, dim=1)

    def _relax_shifts(self, F: torch.Tensor, pairs: _Pairs) -> tuple[torch.Tensor, torch.Tensor]:
        """Relaxed free shifts ``(m, k-1, 3)`` and ``W_pp`` ``(m, s, s)`` (per volume) there."""
        m = F.shape[0]
        q = torch.zeros((m, self.n_basis - 1, 3), dtype=self.dtype, device=self.device)
        for _ in range(50):
            qv = q.detach().requires_grad_(True)
            p = torch.cat([torch.zeros_like(qv[:, :1]), qv], dim=1)
            W = self._site_energy_density(F.detach(), p, pairs) * self.volume
            g, H = self._free_shift_hessian(W, qv)
            if float(g.detach().abs().max()) < self.shift_tol:
                return q.detach(), H.detach() / self.volume
            step = torch.linalg.solve(H.detach(), -g.detach()[..., None])[..., 0]
            q = q + step.reshape(q.shape)
        raise RuntimeError(
            f"sublattice shifts did not relax to {self.shift_tol} eV/Å in 50 Newton steps "
            "(is the multilattice unstable under this F?)"
        )

    # -- public --------------------------------------------------------------------------
    @overload
    def evaluate(
        self, F: np.ndarray | torch.Tensor, *, relaxed: bool = ..., tangent: Literal[True] = ...
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]: ...

    @overload
    def evaluate(
        self, F: np.ndarray | torch.Tensor, *, relaxed: bool = ..., tangent: Literal[False]
    ) -> tuple[torch.Tensor, torch.Tensor, None]: ...

    @overload
    def evaluate(
        self, F: np.ndarray | torch.Tensor, *, relaxed: bool = ..., tangent: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]: ...

    def evaluate(
        self, F: np.ndarray | torch.Tensor, *, relaxed: bool = True, tangent: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``W (m,)``, ``P (m,3,3)`` and, if asked, ``A (m,3,3,3,3)`` as torch tensors.

        Args:
            F: ``(m, 3, 3)`` deformation gradients (array or tensor).
            relaxed: relax the basis shifts for each ``F`` (relaxed ion).
            tangent: also return the tangent ``∂P/∂F``.

        Returns:
            ``(W, P, A)`` in eV/Å³; ``A`` is None without ``tangent``.
        """
        F = torch.as_tensor(
            np.asarray(F) if not torch.is_tensor(F) else F, dtype=self.dtype, device=self.device
        )
        if F.ndim != 3 or F.shape[1:] != (3, 3):
            raise ValueError(f"F must have shape (m, 3, 3), got {tuple(F.shape)}")
        finite = torch.isfinite(F).all(dim=2).all(dim=1)
        safe = torch.where(finite[:, None, None], F, torch.eye(3, dtype=F.dtype, device=F.device))
        smin = torch.where(finite, smallest_singular_value(safe.detach()), 0.0)
        if bool((smin >= _STRETCH_BINS[0]).all()):
            return self._evaluate_batch(F, float(smin.min()), relaxed=relaxed, tangent=tangent)
        return self._binned(F, smin, relaxed=relaxed, tangent=tangent)

    def _evaluate_batch(
        self, F: torch.Tensor, smin: float, *, relaxed: bool, tangent: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """:meth:`evaluate` of ``F`` (``σ_min ≥ smin``): one pair list, CPU chunks."""
        pairs = self._reference_pairs(smin)
        if not tangent and self.n_basis == 1:
            compiled = self._compiled_stress(F, pairs)
            if compiled is not None:
                return compiled
        step = F.shape[0] if self.chunk is None or F.device.type != "cpu" else self.chunk
        if F.shape[0] <= step:
            return self._evaluate(F, pairs, relaxed=relaxed, tangent=tangent)
        parts = [
            self._evaluate(F[s : s + step], pairs, relaxed=relaxed, tangent=tangent)
            for s in range(0, F.shape[0], step)
        ]
        W, P, A = zip(*parts, strict=True)
        return torch.cat(W), torch.cat(P), None if A[0] is None else torch.cat(A)

    def _compiled_stress(
        self, F: torch.Tensor, pairs: _Pairs
    ) -> tuple[torch.Tensor, torch.Tensor, None] | None:
        """``(W, P, None)`` of a one-atom lattice by the compiled EAM kernel, in one pass.

        None where it does not apply (another potential, the torch path asked for, not CPU
        ``float64``): then autograd over the site energies gives the same numbers.
        """
        from atomistic.potentials.eam import EAM

        pot = self.potential
        if not (isinstance(pot, EAM) and pot.compiled):
            return None
        tables = pot.pair_tables
        if F.dtype != torch.float64 or F.device.type != "cpu" or tables.device.type != "cpu":
            return None
        if tables.dtype != torch.float64:
            return None
        from atomistic.potentials import eam_kernels

        if not eam_kernels.compiled_wanted():
            return None
        eps, G = eam_kernels.cauchy_born_stress(
            pot.compiled_tables(),
            F.detach().numpy(),
            pairs[2].numpy(),
            int(self.species[0]),
        )
        return torch.from_numpy(eps / self.volume), torch.from_numpy(G / self.volume), None

    def _binned(
        self, F: torch.Tensor, smin: torch.Tensor, *, relaxed: bool, tangent: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """:meth:`evaluate` with some ``F`` squashed (smallest singular value ``smin``).

        Each bin of :data:`_STRETCH_BINS` is evaluated with its own pair list; ``F`` that are
        not finite, squash a direction below :data:`MIN_STRETCH` or bring two sites closer
        than :data:`MIN_SEPARATION` of the nearest-neighbour distance get ``W = +inf`` and
        NaN stress and tangent (a line search then steps back).
        """
        m = F.shape[0]
        W = torch.full((m,), torch.inf, dtype=self.dtype, device=self.device)
        P = torch.full((m, 3, 3), torch.nan, dtype=self.dtype, device=self.device)
        A = None
        if tangent:
            A = torch.full((m, 3, 3, 3, 3), torch.nan, dtype=self.dtype, device=self.device)
        upper = torch.inf
        for lower in _STRETCH_BINS:
            sel = (smin >= lower) & (smin < upper)
            upper = lower
            if not bool(sel.any()):
                continue
            rows = torch.nonzero(sel).ravel()
            rows = rows[self._apart(F[rows], lower)]
            if len(rows) == 0:
                continue
            w, p, a = self._evaluate_batch(
                F[rows], float(smin[rows].min()), relaxed=relaxed, tangent=tangent
            )
            W[rows], P[rows] = w, p
            if A is not None and a is not None:
                A[rows] = a
        return W, P, A

    def _apart(self, F: torch.Tensor, smin: float) -> torch.Tensor:
        """``(m,)`` True where ``F`` keeps every two sites apart.

        At least :data:`MIN_SEPARATION` of the nearest-neighbour distance; ``smin`` bounds the
        smallest singular value of every ``F`` from below (it sizes the pair list).
        """
        nearest = self._nearest_distance
        cut = MIN_SEPARATION * nearest / smin * (1.0 + 1e-9)
        nl = vesin.NeighborList(cutoff=cut, full_list=False)
        i, j, S = nl.compute(self.basis, self.cell, True, "ijS")
        if len(i) == 0:
            return torch.ones(F.shape[0], dtype=torch.bool, device=F.device)
        d0 = torch.as_tensor(
            self.basis[j] - self.basis[i] + S @ self.cell, dtype=F.dtype, device=F.device
        )
        shortest = torch.linalg.vector_norm(torch.einsum("mab,eb->mea", F.detach(), d0), dim=2)
        return shortest.min(dim=1).values >= MIN_SEPARATION * nearest

    @functools.cached_property
    def _nearest_distance(self) -> float:
        """The nearest-neighbour distance of the undeformed lattice in Å."""
        nl = vesin.NeighborList(cutoff=self.potential.cutoff, full_list=False)
        i, j, S = nl.compute(self.basis, self.cell, True, "ijS")
        d0 = self.basis[j] - self.basis[i] + S @ self.cell
        return float(np.linalg.norm(d0, axis=1).min())

    def _evaluate(
        self, F: torch.Tensor, pairs: _Pairs, *, relaxed: bool, tangent: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """:meth:`evaluate` for one batch, with the reference ``pairs`` of all of them."""
        m = F.shape[0]
        shifts = relaxed and self.n_basis > 1
        if shifts:
            q0, H = self._relax_shifts(F, pairs)
        else:
            q0 = torch.zeros((m, max(self.n_basis - 1, 0), 3), dtype=self.dtype, device=self.device)
        Fv = F.detach().clone().requires_grad_(True)
        qv = q0.clone().requires_grad_(shifts and tangent)
        p = torch.cat([torch.zeros((m, 1, 3), dtype=self.dtype, device=self.device), qv], dim=1)
        W = self._site_energy_density(Fv, p, pairs)
        (P,) = torch.autograd.grad(W.sum(), Fv, create_graph=tangent)
        if not tangent:
            return W.detach(), P.detach(), None
        wrt = (Fv, qv) if shifts else (Fv,)
        rows_F, rows_q = [], []
        for a in range(3):
            for b in range(3):
                g = torch.autograd.grad(P[:, a, b].sum(), wrt, retain_graph=True)
                rows_F.append(g[0])
                if shifts:
                    rows_q.append(g[1].reshape(m, -1))
        A = torch.stack(rows_F, dim=1).reshape(m, 3, 3, 3, 3)
        if shifts:
            W_Fq = torch.stack(rows_q, dim=1).detach()  # (m, 9, s)
            corr = W_Fq @ torch.linalg.solve(H, W_Fq.transpose(1, 2))
            A = A - corr.reshape(m, 3, 3, 3, 3)
        return W.detach(), P.detach(), A.detach()

    def __call__(self, F: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The material-law form ``law(F) -> (W, P, A)`` on NumPy arrays (relaxed)."""
        W, P, A = self.evaluate(F, relaxed=True, tangent=True)
        return W.cpu().numpy(), P.cpu().numpy(), A.cpu().numpy()

    def stress(self, F: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(W, P)`` on NumPy arrays without the tangent (relaxed; much cheaper).

        A continuum material calls this for energies and residuals and ``law(F)`` only when
        it needs the tangent.
        """
        W, P, _ = self.evaluate(F, relaxed=True, tangent=False)
        return W.cpu().numpy(), P.cpu().numpy()

    def wall_margin(self, F: np.ndarray) -> np.ndarray:
        """How far each ``F`` ``(m, 3, 3)`` is from the walls of :meth:`evaluate`, ``(m,)``.

        ``min(σ_min / MIN_STRETCH, d_min / (MIN_SEPARATION d_nn)) − 1``, capped at 1, with
        ``σ_min`` the smallest singular value of ``F`` and ``d_min`` the shortest distance
        between two sites under ``F``: positive inside the law's domain, 0 on a wall,
        negative past it (where ``W = +inf``; −1 for an ``F`` that is not finite). A
        minimiser pressed against a wall (margin ≈ 0 with a force left) cannot converge: the
        energy is finite up to the wall and infinite past it.
        """
        Fa = np.asarray(F, dtype=np.float64).reshape(-1, 3, 3)
        out = np.full(len(Fa), -1.0)
        finite = np.isfinite(Fa).all(axis=(1, 2))
        smin = np.linalg.svd(np.where(finite[:, None, None], Fa, 0.0), compute_uv=False).min(1)
        margin = np.minimum(smin / MIN_STRETCH - 1.0, 1.0)
        # d_min ≥ σ_min d_nn, so the separation's margin can be below 1 only where σ_min < 1;
        # there every pair closer than d_nn under F is within d_nn / σ_min in the reference
        near = np.flatnonzero(finite & (smin < 1.0))
        if len(near):
            nearest = self._nearest_distance
            lowest = max(float(smin[near].min()), 0.25 * MIN_STRETCH)
            nl = vesin.NeighborList(cutoff=nearest / lowest * (1.0 + 1e-9), full_list=False)
            i, j, S = nl.compute(self.basis, self.cell, True, "ijS")
            d0 = self.basis[j] - self.basis[i] + S @ self.cell
            shortest = np.linalg.norm(np.einsum("mab,eb->mea", Fa[near], d0), axis=2).min(1)
            margin[near] = np.minimum(margin[near], shortest / (MIN_SEPARATION * nearest) - 1.0)
        out[finite] = margin[finite]
        return out

    def member_spread(self, F: np.ndarray) -> np.ndarray | None:
        """Standard deviation over a committee's members of the site energy per cell, eV.

        ``(m,)`` for ``F`` ``(m, 3, 3)`` inside the law's domain (unrelaxed basis); None for
        a potential without members (the spread says how far the lattice under ``F`` is
        from the committee's training data).
        """
        members = getattr(self.potential, "member_energies", None)
        if members is None or getattr(self.potential, "n_members", 1) < 2:
            return None
        Ft = torch.as_tensor(np.asarray(F).reshape(-1, 3, 3), dtype=self.dtype, device=self.device)
        smin = float(smallest_singular_value(Ft).min())
        graph = self._lattice_graph(Ft, self._reference_pairs(max(smin, MIN_STRETCH)))
        m, k = Ft.shape[0], self.n_basis
        with torch.no_grad():
            energies = members(graph).reshape(-1, m, k).sum(dim=2)  # (M, m) per cell
        return energies.std(dim=0, unbiased=False).double().cpu().numpy() / k

    def stress_free_scale(self, *, tol: float = 1e-12, max_iter: int = 50) -> float:
        """Isotropic scale ``s`` with zero mean stress at ``F = s I`` (Newton on ``tr P``).

        Multiply the reference lattice constant by ``s`` for the equilibrium one. For cubic
        lattices the stress at ``s I`` is then zero; for hcp only its trace is.
        """
        s = 1.0
        for _ in range(max_iter):
            _, P, A = self.evaluate(s * np.eye(3)[None], relaxed=True, tangent=True)
            g = float(torch.einsum("aa->", P[0]))
            dg = float(torch.einsum("aabb->", A[0]))
            step = -g / dg
            s += step
            if abs(step) < tol:
                break
        return s

    def elastic_constants(self, *, relaxed: bool = True) -> np.ndarray:
        """6×6 Voigt elastic constants in GPa at ``F = I`` (the reference must be stress free)."""
        _, _, A = self.evaluate(np.eye(3)[None], relaxed=relaxed, tangent=True)
        return voigt_from_tangent(A[0].double().cpu().numpy()) * EV_PER_A3_TO_GPA
