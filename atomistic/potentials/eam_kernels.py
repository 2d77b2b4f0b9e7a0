"""Compiled (numba) EAM: site energies and their first two derivatives in pair space.

:class:`~atomistic.potentials.eam.EAM` uses these kernels when the pair vectors are a CPU
``float64`` ``(E, 3)`` tensor and its tables are CPU ``float64``; anything else (CUDA,
``float32``) takes the torch path. ``MULTISCALE_TORCH_ONLY=1`` in the environment, or
``EAM.compiled = False`` on one potential, forces the torch path. The results are the same
piecewise cubics as the torch path (LAMMPS's ``PairEAM::interpolate``), so both agree to
round-off; autograd sees them through two functions:

===========================  ===========================================================
autograd node                computes (``E_w = Σ_a w_a ε_a``, ``w`` the site weights)
===========================  ===========================================================
:class:`_SiteEnergies`       ``ε (n,)`` from the pair vectors ``r (E, 3)``
its backward                 ``g_e = ∂E_w/∂r_e = A_e r̂_e``, itself the differentiable
                             :class:`_PairGradient` of ``(r, w)``
:class:`_PairGradient`       backward for a pair-space ``V (E, 3)``: ``H_w V`` (to ``r``)
                             and ``∂(V·g)/∂w_a = F'_a s_a + ½ Σ_{e∋a} φ'_e t_e`` (to ``w``)
===========================  ===========================================================

With ``t_e = r̂_e · V_e``, ``s_a = Σ_{e∋a} ρ_e^a' t_e`` and ``c_a = w_a F''_a s_a``::

    A_e = w_i F'_i ρ_e^i' + w_j F'_j ρ_e^j' + ½ (w_i + w_j) φ'_e,   B_e: same with ρ'', φ''
    (H_w V)_e = [(B_e − A_e/r_e) t_e + c_i ρ_e^i' + c_j ρ_e^j'] r̂_e + (A_e/r_e) V_e

Third derivatives are not provided: differentiating the Hessian-vector product raises
(``RuntimeError``).

Energies and forces without autograd (:func:`energy_forces`, used by
:func:`~atomistic.potentials.protocol.evaluate` through :meth:`EAM.energy_forces`) take two
passes over the pairs: densities and pair energies, then ``F'`` per atom and the forces (and
per-atom virials if asked) added straight onto the atoms, with no ``(E, 3)`` arrays. When the
graph was built from positions that need no grad (:class:`~atomistic.neighbours.PairSource`)
the pair vectors are formed inside the passes from the positions, int32 indices and the int8
shifts of the few pairs that cross the cell (:meth:`NeighbourList.compact`).

The graph is a half list (each pair once), so every pair adds to both of its atoms. Loops
over pairs that add into atoms run in ``torch.get_num_threads()`` chunks with a private
accumulator each; per-pair outputs run in a parallel loop, on numba's ``workqueue`` threading
layer unless ``NUMBA_THREADING_LAYER`` names another (OpenMP fights torch's own OpenMP
threads; the work queue takes no nested or concurrent launches). numba's thread count is set to
``torch.get_num_threads()`` (capped at numba's maximum) before every call, so a one-thread
torch run is a one-core run. Kernels are compiled on first use and cached on disk
(``cache=True``, next to this file or in numba's user cache directory); where no cache
directory is writable they are compiled in every process.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np
import torch

__all__ = ["EAMTables", "cauchy_born_stress", "compiled_wanted", "site_energies"]

# numba's OpenMP layer competes with torch's OpenMP threads (a 20x slower kernel launch on 2
# cores); its own work queue does not. NUMBA_THREADING_LAYER in the environment still wins.
if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = "workqueue"  # type: ignore[attr-defined]
# Start numba's thread pool now. A kernel loaded from the disk cache that reaches parallel code
# through a call (``_hessian_setup`` → ``_embedding``) does not start it, and crashed its
# process with a segmentation fault when it was the first parallel code the process ran.
numba.get_num_threads()


def _jit(parallel: bool, inline: bool = False) -> Any:
    """``numba.njit`` with a disk cache, without it where no cache directory is writable.

    ``inline``: a scalar helper inlined into its callers in numba's own IR (``inline="always"``),
    so that the pair loops compile as one function.
    """
    opts: dict[str, Any] = {"parallel": parallel, "fastmath": True, "nogil": True}
    if inline:
        opts["inline"] = "always"

    def wrap(func: Any) -> Any:
        try:
            return numba.njit(cache=True, **opts)(func)
        except RuntimeError:  # numba: "cannot cache function ...: no locator available"
            return numba.njit(cache=False, **opts)(func)

    return wrap


#: Environment switch of every compiled kernel (EAM, pair operations, moment descriptor):
#: a true value (``1``, ``true``, ``yes``) forces the torch code. ``MULTISCALE_EAM_TORCH``,
#: its older and narrower name, is still read.
TORCH_ONLY_VARIABLES = ("MULTISCALE_TORCH_ONLY", "MULTISCALE_EAM_TORCH")


def compiled_wanted() -> bool:
    """Whether the compiled kernels may be used.

    False when ``MULTISCALE_TORCH_ONLY`` (or the older ``MULTISCALE_EAM_TORCH``) is set to a
    true value: every compiled kernel then gives way to the torch path.
    """
    return not any(
        os.environ.get(name, "").strip().lower() in ("1", "true", "yes")
        for name in TORCH_ONLY_VARIABLES
    )


@dataclass(frozen=True)
class EAMTables:
    """The potential's cubic tables as NumPy arrays, in the layout of :class:`EAM`'s buffers.

    Attributes:
        pair: ``(T, n_r, K, 4)`` per ordered species pair ``[ρ_{b→a}, (ρ_{a→b},) r φ]``.
        frho: ``(n_el, n_ρ, 4)`` embedding tables.
        end_slope: ``(n_el,)`` ``F'`` at ``ρ_max`` (continued linearly beyond).
        n_el: number of elements.
        inv_dr: ``1/Δr``.
        inv_drho: ``1/Δρ``.
        rhomax: ``ρ_max``.
        cutoff: ``r_cut`` in Å.
    """

    pair: np.ndarray
    frho: np.ndarray
    end_slope: np.ndarray
    n_el: int
    inv_dr: float
    inv_drho: float
    rhomax: float
    cutoff: float


# -- scalar helpers (inlined) ---------------------------------------------------------
@_jit(parallel=False, inline=True)
def _locate(x: float, n: int) -> tuple[int, float, bool]:  # pragma: no cover - compiled
    m = int(math.floor(x))
    m = min(max(m, 0), n - 2)
    p = x - m
    return m, min(p, 1.0), p > 1.0


@_jit(parallel=False, inline=True)
def _cubic(tab, t, m, kk, p, beyond, inv_dr):  # type: ignore[no-untyped-def]  # pragma: no cover
    """Value, slope and curvature (per Å, Å²) of table ``(t, ·, kk)`` on segment ``m``."""
    c0, c1, c2, c3 = tab[t, m, kk, 0], tab[t, m, kk, 1], tab[t, m, kk, 2], tab[t, m, kk, 3]
    v = ((c0 * p + c1) * p + c2) * p + c3
    if beyond:
        return v, 0.0, 0.0
    d = ((3.0 * c0 * p + 2.0 * c1) * p + c2) * inv_dr
    return v, d, (6.0 * c0 * p + 2.0 * c1) * inv_dr * inv_dr


@_jit(parallel=False, inline=True)
def _pair_terms(tab, t, r, inv_dr):  # type: ignore[no-untyped-def]  # pragma: no cover
    """``(ρ^i, ρ^j, φ)`` values, slopes (per Å) and curvatures (per Å²) at ``r``, 9 floats."""
    k = tab.shape[2]
    m, p, beyond = _locate(r * inv_dr, tab.shape[1])
    vi, di, ddi = _cubic(tab, t, m, 0, p, beyond, inv_dr)
    if k == 2:
        vj, dj, ddj = vi, di, ddi
    else:
        vj, dj, ddj = _cubic(tab, t, m, 1, p, beyond, inv_dr)
    z, dz, ddz = _cubic(tab, t, m, k - 1, p, beyond, inv_dr)
    phi = z / r  # the table holds r φ
    dphi = (dz - phi) / r
    return vi, vj, phi, di, dj, dphi, ddi, ddj, (ddz - 2.0 * dphi) / r


@_jit(parallel=True)
def _embedding(rho, species, frho, end_slope, inv_drho, rhomax):  # type: ignore[no-untyped-def]  # pragma: no cover
    """``F, F', F''`` per atom, ``F`` continued linearly past ``ρ_max`` as LAMMPS."""
    n = rho.shape[0]
    nr = frho.shape[1]
    out = np.zeros((3, n))
    for a in numba.prange(n):
        s = species[a]
        m, p, beyond = _locate(rho[a] * inv_drho, nr)
        c0, c1, c2, c3 = frho[s, m, 0], frho[s, m, 1], frho[s, m, 2], frho[s, m, 3]
        f = ((c0 * p + c1) * p + c2) * p + c3
        df = 0.0
        ddf = 0.0
        if not beyond:
            df = ((3.0 * c0 * p + 2.0 * c1) * p + c2) * inv_drho
            ddf = (6.0 * c0 * p + 2.0 * c1) * inv_drho * inv_drho
        if rho[a] > rhomax:
            f += end_slope[s] * (rho[a] - rhomax)
            df += end_slope[s]
        out[0, a], out[1, a], out[2, a] = f, df, ddf
    return out


# -- pair loops --------------------------------------------------------------------------------
@_jit(parallel=True)
def _densities(i, j, vec, species, tab, n_el, inv_dr, cutoff, n_atoms, chunks):  # type: ignore[no-untyped-def]  # pragma: no cover
    """``ρ`` and the pair energy ``½ Σ_j φ`` per atom, ``(2, n)``."""
    n_e = i.shape[0]
    acc = np.zeros((chunks, 2, n_atoms))
    size = (n_e + chunks - 1) // chunks
    for c in numba.prange(chunks):
        for e in range(c * size, min(n_e, (c + 1) * size)):
            r = math.sqrt(vec[e, 0] ** 2 + vec[e, 1] ** 2 + vec[e, 2] ** 2)
            if r >= cutoff:
                continue
            a, b = i[e], j[e]
            t = species[a] * n_el + species[b] if n_el > 1 else 0
            vi, vj, phi, _, _, _, _, _, _ = _pair_terms(tab, t, r, inv_dr)
            acc[c, 0, a] += vi
            acc[c, 0, b] += vj
            acc[c, 1, a] += 0.5 * phi
            acc[c, 1, b] += 0.5 * phi
    out = np.zeros((2, n_atoms))
    for a in numba.prange(n_atoms):
        for c in range(chunks):
            out[0, a] += acc[c, 0, a]
            out[1, a] += acc[c, 1, a]
    return out


@_jit(parallel=True)
def _gradient(i, j, vec, species, tab, n_el, inv_dr, cutoff, w, wdf):  # type: ignore[no-untyped-def]  # pragma: no cover
    """``g_e = A_e r̂_e`` ``(E, 3)`` for site weights ``w`` (``wdf = w F'``)."""
    n_e = i.shape[0]
    g = np.zeros((n_e, 3))
    for e in numba.prange(n_e):
        r = math.sqrt(vec[e, 0] ** 2 + vec[e, 1] ** 2 + vec[e, 2] ** 2)
        if r >= cutoff:
            continue
        a, b = i[e], j[e]
        t = species[a] * n_el + species[b] if n_el > 1 else 0
        _, _, _, di, dj, dphi, _, _, _ = _pair_terms(tab, t, r, inv_dr)
        coef = (wdf[a] * di + wdf[b] * dj + 0.5 * (w[a] + w[b]) * dphi) / r
        g[e, 0], g[e, 1], g[e, 2] = coef * vec[e, 0], coef * vec[e, 1], coef * vec[e, 2]
    return g


@_jit(parallel=True)
def _contract(i, j, vec, species, tab, n_el, inv_dr, cutoff, V, n_atoms, chunks):  # type: ignore[no-untyped-def]  # pragma: no cover
    """Per atom ``s_a = Σ_{e∋a} ρ_e^a' t_e`` and ``q_a = ½ Σ_{e∋a} φ'_e t_e``, ``(2, n)``."""
    n_e = i.shape[0]
    acc = np.zeros((chunks, 2, n_atoms))
    size = (n_e + chunks - 1) // chunks
    for c in numba.prange(chunks):
        for e in range(c * size, min(n_e, (c + 1) * size)):
            r = math.sqrt(vec[e, 0] ** 2 + vec[e, 1] ** 2 + vec[e, 2] ** 2)
            if r >= cutoff:
                continue
            a, b = i[e], j[e]
            t = species[a] * n_el + species[b] if n_el > 1 else 0
            _, _, _, di, dj, dphi, _, _, _ = _pair_terms(tab, t, r, inv_dr)
            te = (vec[e, 0] * V[e, 0] + vec[e, 1] * V[e, 1] + vec[e, 2] * V[e, 2]) / r
            acc[c, 0, a] += di * te
            acc[c, 0, b] += dj * te
            acc[c, 1, a] += 0.5 * dphi * te
            acc[c, 1, b] += 0.5 * dphi * te
    out = np.zeros((2, n_atoms))
    for a in numba.prange(n_atoms):
        for c in range(chunks):
            out[0, a] += acc[c, 0, a]
            out[1, a] += acc[c, 1, a]
    return out


@_jit(parallel=True)
def _hessian_pairs(i, j, vec, species, tab, n_el, inv_dr, cutoff, w, wdf, cf, V):  # type: ignore[no-untyped-def]  # pragma: no cover
    """``(H_w V)_e`` ``(E, 3)``; ``cf = w F'' s`` per atom from :func:`_contract`."""
    n_e = i.shape[0]
    out = np.zeros((n_e, 3))
    for e in numba.prange(n_e):
        r = math.sqrt(vec[e, 0] ** 2 + vec[e, 1] ** 2 + vec[e, 2] ** 2)
        if r >= cutoff:
            continue
        a, b = i[e], j[e]
        t = species[a] * n_el + species[b] if n_el > 1 else 0
        _, _, _, di, dj, dphi, ddi, ddj, ddphi = _pair_terms(tab, t, r, inv_dr)
        half_w = 0.5 * (w[a] + w[b])
        big_a = wdf[a] * di + wdf[b] * dj + half_w * dphi
        big_b = wdf[a] * ddi + wdf[b] * ddj + half_w * ddphi
        inv_r = 1.0 / r
        te = (vec[e, 0] * V[e, 0] + vec[e, 1] * V[e, 1] + vec[e, 2] * V[e, 2]) * inv_r
        a_r = big_a * inv_r
        radial = ((big_b - a_r) * te + cf[a] * di + cf[b] * dj) * inv_r
        for k in range(3):
            out[e, k] = radial * vec[e, k] + a_r * V[e, k]
    return out


# -- fused energy and forces (no autograd) ----------------------------------------------------
@_jit(parallel=False, inline=True)
def _pair_vector(e, i, j, x, shifts, cell, vec):  # type: ignore[no-untyped-def]  # pragma: no cover
    """Pair ``e``'s vector.

    ``vec[e]`` when given (``vec`` has rows), else ``x[j] − x[i] + S·cell`` with ``S`` the row
    ``e − (E − m)`` of the ``(m, 3)`` ``shifts`` for the last ``m`` pairs, zero for the others.
    """
    if vec.shape[0] > 0:
        return vec[e, 0], vec[e, 1], vec[e, 2]
    a, b = i[e], j[e]
    d0, d1, d2 = x[b, 0] - x[a, 0], x[b, 1] - x[a, 1], x[b, 2] - x[a, 2]
    k = e - (i.shape[0] - shifts.shape[0])
    if k >= 0:
        s0, s1, s2 = float(shifts[k, 0]), float(shifts[k, 1]), float(shifts[k, 2])
        d0 += s0 * cell[0, 0] + s1 * cell[1, 0] + s2 * cell[2, 0]
        d1 += s0 * cell[0, 1] + s1 * cell[1, 1] + s2 * cell[2, 1]
        d2 += s0 * cell[0, 2] + s1 * cell[1, 2] + s2 * cell[2, 2]
    return d0, d1, d2


# fmt: off
@_jit(parallel=True)
def _energy_forces(i, j, x, shifts, cell, vec, species, tab, n_el, inv_dr, cutoff, frho,  # type: ignore[no-untyped-def]  # noqa: E501
                   end_slope, inv_drho, rhomax, n_atoms, chunks, virials):  # pragma: no cover
    # fmt: on
    """Site energies ``(n,)``, forces ``(n, 3)`` and per-atom virials ``(n, 3, 3)``.

    The virials are computed only when ``virials`` (else an empty array). Two passes over the
    half list (densities, then forces), no per-pair arrays; pair vectors as in
    :func:`_pair_vector`.
    """
    n_e = i.shape[0]
    size = (n_e + chunks - 1) // chunks
    cut2 = cutoff * cutoff
    acc = np.zeros((chunks, 2, n_atoms))
    for c in numba.prange(chunks):
        for e in range(c * size, min(n_e, (c + 1) * size)):
            d0, d1, d2 = _pair_vector(e, i, j, x, shifts, cell, vec)
            r2 = d0 * d0 + d1 * d1 + d2 * d2
            if r2 >= cut2:
                continue
            r = math.sqrt(r2)
            a, b = i[e], j[e]
            t = species[a] * n_el + species[b] if n_el > 1 else 0
            vi, vj, phi, _, _, _, _, _, _ = _pair_terms(tab, t, r, inv_dr)
            acc[c, 0, a] += vi
            acc[c, 0, b] += vj
            acc[c, 1, a] += 0.5 * phi
            acc[c, 1, b] += 0.5 * phi
    rho = np.zeros(n_atoms)
    energies = np.zeros(n_atoms)
    for a in numba.prange(n_atoms):
        for c in range(chunks):
            rho[a] += acc[c, 0, a]
            energies[a] += acc[c, 1, a]
    emb = _embedding(rho, species, frho, end_slope, inv_drho, rhomax)
    df = emb[1]
    for a in range(n_atoms):
        energies[a] += emb[0, a]
    facc = np.zeros((chunks, n_atoms, 3))
    vacc = np.zeros((chunks if virials else 0, n_atoms, 3, 3))
    for c in numba.prange(chunks):
        for e in range(c * size, min(n_e, (c + 1) * size)):
            d0, d1, d2 = _pair_vector(e, i, j, x, shifts, cell, vec)
            r2 = d0 * d0 + d1 * d1 + d2 * d2
            if r2 >= cut2:
                continue
            r = math.sqrt(r2)
            a, b = i[e], j[e]
            t = species[a] * n_el + species[b] if n_el > 1 else 0
            _, _, _, di, dj, dphi, _, _, _ = _pair_terms(tab, t, r, inv_dr)
            coef = (df[a] * di + df[b] * dj + dphi) / r  # g_e = ∂E/∂r_e = coef r_e
            g0, g1, g2 = coef * d0, coef * d1, coef * d2
            facc[c, a, 0] += g0
            facc[c, a, 1] += g1
            facc[c, a, 2] += g2
            facc[c, b, 0] -= g0
            facc[c, b, 1] -= g1
            facc[c, b, 2] -= g2
            if virials:  # ¼ (r ⊗ g + g ⊗ r) to each atom
                dv = (d0, d1, d2)
                gv = (g0, g1, g2)
                for p in range(3):
                    for q in range(3):
                        h = 0.25 * (dv[p] * gv[q] + gv[p] * dv[q])
                        vacc[c, a, p, q] += h
                        vacc[c, b, p, q] += h
    forces = np.zeros((n_atoms, 3))
    vir = np.zeros((n_atoms if virials else 0, 3, 3))
    for a in numba.prange(n_atoms):
        for c in range(chunks):
            for k in range(3):
                forces[a, k] += facc[c, a, k]
            if virials:
                for p in range(3):
                    for q in range(3):
                        vir[a, p, q] += vacc[c, a, p, q]
    return energies, forces, vir


def energy_forces(
    tables: EAMTables, graph: Any, *, virials: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Site energies, forces and (if asked) per-atom virials of ``graph``, without autograd.

    Reads positions and the compact list of ``graph.source`` when it has one and its vectors
    were not materialised, else ``graph.vectors``.
    """
    src = graph.source
    none = np.zeros((0, 3))
    if src is not None and graph._vectors is None:
        src.check()
        x = _np(src.positions)
        i, j, shifts, cell, vec = src.i32, src.j32, src.shifts, src.cell, none
    else:
        x, shifts, cell = none, np.zeros((0, 3), dtype=np.int8), np.zeros((3, 3))
        i = _np(graph.i).astype(np.int64, copy=False)
        j = _np(graph.j).astype(np.int64, copy=False)
        vec = _np(graph.vectors)
    species = _np(graph.species).astype(np.int64, copy=False)
    t = tables
    e, f, w = _energy_forces(
        i, j, x, shifts, cell, vec, species, t.pair, t.n_el, t.inv_dr, t.cutoff, t.frho,
        t.end_slope, t.inv_drho, t.rhomax, int(graph.n_atoms), _chunks(), virials,
    )  # fmt: skip
    return torch.from_numpy(e), torch.from_numpy(f), torch.from_numpy(w) if virials else None


# -- analytic Hessian operator (EAM.hessian_operator) -----------------------------------------
# fmt: off
@_jit(parallel=False)
def _hessian_setup(i, j, vec, species, tab, n_el, inv_dr, cutoff, frho, end_slope, inv_drho,  # type: ignore[no-untyped-def]  # noqa: E501
                   rhomax, w, n_atoms):  # pragma: no cover
    # fmt: on
    """Per-pair and per-atom coefficients of ``H_w`` for :func:`_hessian_apply`.

    Returns the pairs shorter than the cutoff ``(i, j)``, their unit vectors ``(m, 3)``,
    coefficients ``(m, 4)`` ``[ρ^i', ρ^j', B − A/r, A/r]`` and ``w F''`` per atom.
    """
    n_e = i.shape[0]
    rho = np.zeros(n_atoms)
    keep = np.zeros(n_e, dtype=np.bool_)
    for e in range(n_e):
        r = math.sqrt(vec[e, 0] ** 2 + vec[e, 1] ** 2 + vec[e, 2] ** 2)
        if r >= cutoff:
            continue
        keep[e] = True
        a, b = i[e], j[e]
        t = species[a] * n_el + species[b] if n_el > 1 else 0
        vi, vj, _, _, _, _, _, _, _ = _pair_terms(tab, t, r, inv_dr)
        rho[a] += vi
        rho[b] += vj
    emb = _embedding(rho, species, frho, end_slope, inv_drho, rhomax)
    wdf = w * emb[1]
    wddf = w * emb[2]
    m = int(keep.sum())
    ii = np.empty(m, dtype=i.dtype)
    jj = np.empty(m, dtype=j.dtype)
    rhat = np.empty((m, 3))
    coef = np.empty((m, 4))
    k = 0
    for e in range(n_e):
        if not keep[e]:
            continue
        r = math.sqrt(vec[e, 0] ** 2 + vec[e, 1] ** 2 + vec[e, 2] ** 2)
        a, b = i[e], j[e]
        t = species[a] * n_el + species[b] if n_el > 1 else 0
        _, _, _, di, dj, dphi, ddi, ddj, ddphi = _pair_terms(tab, t, r, inv_dr)
        half_w = 0.5 * (w[a] + w[b])
        a_r = (wdf[a] * di + wdf[b] * dj + half_w * dphi) / r
        big_b = wdf[a] * ddi + wdf[b] * ddj + half_w * ddphi
        ii[k], jj[k] = a, b
        for q in range(3):
            rhat[k, q] = vec[e, q] / r
        coef[k, 0], coef[k, 1], coef[k, 2], coef[k, 3] = di, dj, big_b - a_r, a_r
        k += 1
    return ii, jj, rhat, coef, wddf


@_jit(parallel=True)
def _hessian_apply(i, j, rhat, coef, wddf, v, chunks):  # type: ignore[no-untyped-def]  # pragma: no cover
    """``(H_w v)`` ``(n, 3)`` for atom displacements ``v`` from :func:`_hessian_setup`'s arrays.

    With ``δ_e = v_j − v_i``, ``t_e = r̂_e · δ_e``, ``s_a = Σ_{e∋a} ρ_e^a' t_e``, ``c_a = w_a F''_a
    s_a``: ``y_e = [(B − A/r) t_e + c_i ρ_e^i' + c_j ρ_e^j'] r̂_e + (A/r) δ_e`` added to ``j``,
    subtracted from ``i``.
    """
    n_e = i.shape[0]
    n = v.shape[0]
    size = (n_e + chunks - 1) // chunks
    sacc = np.zeros((chunks, n))
    for c in numba.prange(chunks):
        for e in range(c * size, min(n_e, (c + 1) * size)):
            a, b = i[e], j[e]
            t = (
                rhat[e, 0] * (v[b, 0] - v[a, 0])
                + rhat[e, 1] * (v[b, 1] - v[a, 1])
                + rhat[e, 2] * (v[b, 2] - v[a, 2])
            )
            sacc[c, a] += coef[e, 0] * t
            sacc[c, b] += coef[e, 1] * t
    cf = np.zeros(n)
    for a in range(n):
        for c in range(chunks):
            cf[a] += sacc[c, a]
        cf[a] *= wddf[a]
    acc = np.zeros((chunks, n, 3))
    for c in numba.prange(chunks):
        for e in range(c * size, min(n_e, (c + 1) * size)):
            a, b = i[e], j[e]
            d0, d1, d2 = v[b, 0] - v[a, 0], v[b, 1] - v[a, 1], v[b, 2] - v[a, 2]
            t = rhat[e, 0] * d0 + rhat[e, 1] * d1 + rhat[e, 2] * d2
            radial = coef[e, 2] * t + cf[a] * coef[e, 0] + cf[b] * coef[e, 1]
            y0 = radial * rhat[e, 0] + coef[e, 3] * d0
            y1 = radial * rhat[e, 1] + coef[e, 3] * d1
            y2 = radial * rhat[e, 2] + coef[e, 3] * d2
            acc[c, b, 0] += y0
            acc[c, b, 1] += y1
            acc[c, b, 2] += y2
            acc[c, a, 0] -= y0
            acc[c, a, 1] -= y1
            acc[c, a, 2] -= y2
    out = np.zeros((n, 3))
    for a in numba.prange(n):
        for c in range(chunks):
            for q in range(3):
                out[a, q] += acc[c, a, q]
    return out


def hessian_operator(
    tables: EAMTables, graph: Any, weights: torch.Tensor
) -> Callable[[torch.Tensor], torch.Tensor]:
    """``v (n, 3) -> H_w v`` of ``E = Σ w_a ε_a`` at ``graph``'s positions (no autograd).

    The coefficients are computed once here; each product is two passes over the pairs.
    """
    t = tables
    i = _np(graph.i).astype(np.int64, copy=False)
    j = _np(graph.j).astype(np.int64, copy=False)
    species = _np(graph.species).astype(np.int64, copy=False)
    w = np.ascontiguousarray(weights.detach().to(torch.float64).numpy())
    arrays = _hessian_setup(
        i, j, _np(graph.vectors), species, t.pair, t.n_el, t.inv_dr, t.cutoff, t.frho,
        t.end_slope, t.inv_drho, t.rhomax, w, int(graph.n_atoms),
    )  # fmt: skip

    def apply(v: torch.Tensor) -> torch.Tensor:
        vn = np.ascontiguousarray(v.detach().to(dtype=torch.float64, device="cpu").numpy())
        return torch.from_numpy(_hessian_apply(*arrays, vn, _chunks()))

    return apply


# -- torch glue --------------------------------------------------------------------------------
@_jit(parallel=True)
def _cauchy_born_stress(F, d0, t, s, tab, inv_dr, cutoff, frho, end_slope, inv_drho, rhomax):  # type: ignore[no-untyped-def]  # noqa: E501  # pragma: no cover
    """Site energy ``ε (m,)`` and ``∂ε/∂F (m, 3, 3)`` of a one-atom lattice under each ``F``.

    ``d0 (E, 3)``: the lattice vectors of a half list (each of ``±d`` once), so a pair adds
    both of its densities and its whole ``φ`` to the one site; ``t`` the species pair's table,
    ``s`` the species.
    """
    m, n_e, nr = F.shape[0], d0.shape[0], frho.shape[1]
    eps = np.zeros(m)
    G = np.zeros((m, 3, 3))
    for c in numba.prange(m):
        rho = 0.0
        pe = 0.0
        for e in range(n_e):
            x = F[c, 0, 0] * d0[e, 0] + F[c, 0, 1] * d0[e, 1] + F[c, 0, 2] * d0[e, 2]
            y = F[c, 1, 0] * d0[e, 0] + F[c, 1, 1] * d0[e, 1] + F[c, 1, 2] * d0[e, 2]
            z = F[c, 2, 0] * d0[e, 0] + F[c, 2, 1] * d0[e, 1] + F[c, 2, 2] * d0[e, 2]
            r = math.sqrt(x * x + y * y + z * z)
            if r >= cutoff:
                continue
            vi, vj, phi, _, _, _, _, _, _ = _pair_terms(tab, t, r, inv_dr)
            rho += vi + vj
            pe += phi
        k, p, beyond = _locate(rho * inv_drho, nr)
        c0, c1, c2, c3 = frho[s, k, 0], frho[s, k, 1], frho[s, k, 2], frho[s, k, 3]
        f = ((c0 * p + c1) * p + c2) * p + c3
        df = 0.0
        if not beyond:
            df = ((3.0 * c0 * p + 2.0 * c1) * p + c2) * inv_drho
        if rho > rhomax:
            f += end_slope[s] * (rho - rhomax)
            df += end_slope[s]
        eps[c] = f + pe
        for e in range(n_e):
            x = F[c, 0, 0] * d0[e, 0] + F[c, 0, 1] * d0[e, 1] + F[c, 0, 2] * d0[e, 2]
            y = F[c, 1, 0] * d0[e, 0] + F[c, 1, 1] * d0[e, 1] + F[c, 1, 2] * d0[e, 2]
            z = F[c, 2, 0] * d0[e, 0] + F[c, 2, 1] * d0[e, 1] + F[c, 2, 2] * d0[e, 2]
            r = math.sqrt(x * x + y * y + z * z)
            if r >= cutoff:
                continue
            _, _, _, di, dj, dphi, _, _, _ = _pair_terms(tab, t, r, inv_dr)
            a = (df * (di + dj) + dphi) / r
            for b in range(3):
                G[c, 0, b] += a * x * d0[e, b]
                G[c, 1, b] += a * y * d0[e, b]
                G[c, 2, b] += a * z * d0[e, b]
    return eps, G


def cauchy_born_stress(
    tables: EAMTables, F: np.ndarray, d0: np.ndarray, species: int
) -> tuple[np.ndarray, np.ndarray]:
    """``ε (m,)`` (eV) and ``∂ε/∂F (m, 3, 3)`` (eV) of a one-atom lattice, per ``F (m, 3, 3)``.

    The Cauchy–Born energy and first Piola stress times the cell volume, in one pass per
    ``F`` with no pair arrays: what :class:`~atomistic.cauchy_born.CauchyBorn` asks of a
    simple lattice when it wants no tangent. ``d0 (E, 3)``: the half list of lattice vectors
    (Å) that reaches past the cutoff under every ``F``; ``species``: the atom's element index.
    """
    t = species * tables.n_el + species if tables.n_el > 1 else 0
    _chunks()
    return _cauchy_born_stress(
        np.ascontiguousarray(F, dtype=np.float64),
        np.ascontiguousarray(d0, dtype=np.float64),
        t,
        species,
        tables.pair,
        tables.inv_dr,
        tables.cutoff,
        tables.frho,
        tables.end_slope,
        tables.inv_drho,
        tables.rhomax,
    )


def _chunks() -> int:
    """Threads for the next kernel: ``torch.get_num_threads()``, capped at numba's maximum."""
    n = max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))  # type: ignore[attr-defined]
    numba.set_num_threads(n)
    return n


@dataclass
class _State:
    """What the derivatives need of one forward call (no autograd inside)."""

    tables: EAMTables
    i: np.ndarray
    j: np.ndarray
    species: np.ndarray
    n_atoms: int
    dF: np.ndarray  # F' per atom
    ddF: np.ndarray  # F'' per atom

    def pair_args(self, vec: np.ndarray) -> tuple[Any, ...]:
        t = self.tables
        return (self.i, self.j, vec, self.species, t.pair, t.n_el, t.inv_dr, t.cutoff)


def _np(x: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(x.detach().numpy())


class _SiteEnergies(torch.autograd.Function):
    """``ε (n,)`` from the pair vectors; backward is the differentiable :class:`_PairGradient`."""

    @staticmethod
    def forward(ctx: Any, vectors: torch.Tensor, state: _State) -> torch.Tensor:
        t = state.tables
        vec = _np(vectors)
        dens = _densities(*state.pair_args(vec), state.n_atoms, _chunks())
        f = _embedding(dens[0], state.species, t.frho, t.end_slope, t.inv_drho, t.rhomax)
        state.dF, state.ddF = f[1], f[2]
        ctx.state = state
        ctx.save_for_backward(vectors)
        return torch.from_numpy(f[0] + dens[1])

    @staticmethod
    def backward(ctx: Any, w: torch.Tensor) -> tuple[torch.Tensor, None]:
        (vectors,) = ctx.saved_tensors
        return _PairGradient.apply(vectors, w, ctx.state), None


class _PairGradient(torch.autograd.Function):
    """``g = ∂(Σ w_a ε_a)/∂r`` ``(E, 3)``; backward gives ``H_w V`` and ``∂(V·g)/∂w``."""

    @staticmethod
    def forward(ctx: Any, vectors: torch.Tensor, w: torch.Tensor, state: _State) -> torch.Tensor:
        ctx.state = state
        ctx.save_for_backward(vectors, w)
        wn = _np(w)
        _chunks()
        return torch.from_numpy(_gradient(*state.pair_args(_np(vectors)), wn, wn * state.dF))

    @staticmethod
    def backward(ctx: Any, V: torch.Tensor) -> tuple[Any, Any, None]:
        vectors, w = ctx.saved_tensors
        hv, dw = _PairGradient._products(ctx, vectors, w, V)
        if torch.is_grad_enabled():  # a graph of the products is asked for: third derivatives
            hv = None if hv is None else _NoThirdDerivative.apply(hv, vectors, w, V)
            dw = None if dw is None else _NoThirdDerivative.apply(dw, vectors, w, V)
        return hv, dw, None

    @staticmethod
    def _products(
        ctx: Any, vectors: torch.Tensor, w: torch.Tensor, V: torch.Tensor
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        state: _State = ctx.state
        vec, wn, Vn = _np(vectors), _np(w), _np(V)
        args = state.pair_args(vec)
        s, q = _contract(*args, Vn, state.n_atoms, _chunks())
        hv = dw = None
        if ctx.needs_input_grad[0]:
            hv = torch.from_numpy(_hessian_pairs(*args, wn, wn * state.dF, wn * state.ddF * s, Vn))
        if ctx.needs_input_grad[1]:
            dw = torch.from_numpy(state.dF * s + q)
        return hv, dw


class _NoThirdDerivative(torch.autograd.Function):
    """Passes a second derivative on; differentiating it again raises."""

    @staticmethod
    def forward(ctx: Any, value: torch.Tensor, *inputs: torch.Tensor) -> torch.Tensor:
        return value

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor) -> Any:
        raise RuntimeError(
            "the compiled EAM has no third derivatives; set EAM.compiled = False or "
            "MULTISCALE_TORCH_ONLY=1 for the torch path"
        )


def site_energies(
    tables: EAMTables,
    i: torch.Tensor,
    j: torch.Tensor,
    species: torch.Tensor,
    vectors: torch.Tensor,
    n_atoms: int,
) -> torch.Tensor:
    """Site energies ``(n,)`` of the half list ``(i, j, vectors)``, twice differentiable.

    Args:
        tables: the potential's tables (:meth:`EAM.compiled_tables`).
        i: ``(E,)`` first atom of each pair.
        j: ``(E,)`` second atom.
        species: ``(n,)`` element indices.
        vectors: ``(E, 3)`` CPU float64 pair vectors; pairs at or beyond the cutoff count 0.
        n_atoms: ``n``.
    """
    empty = np.zeros(0)
    state = _State(
        tables=tables,
        i=_np(i).astype(np.int64, copy=False),
        j=_np(j).astype(np.int64, copy=False),
        species=_np(species).astype(np.int64, copy=False),
        n_atoms=int(n_atoms),
        dF=empty,
        ddF=empty,
    )
    out: torch.Tensor = _SiteEnergies.apply(vectors, state)
    return out


# -- pair gather and scatter (atomistic.pair_ops) ------------------------------------------------
@_jit(parallel=False)
def gather(x, s, i, j):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    """``x[j] − x[i] + s`` ``(E, 3)``; ``s`` is ``(E, 3)`` or ``(1, 3)``."""
    n_e = i.shape[0]
    out = np.empty((n_e, 3))
    per_pair = s.shape[0] == n_e and n_e != 1
    for e in range(n_e):
        a, b = i[e], j[e]
        r = e if per_pair else 0
        for k in range(3):
            out[e, k] = x[b, k] - x[a, k] + s[r, k]
    return out


@_jit(parallel=False)
def scatter(g, i, j, n):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    """``f (n, 3)``: ``+g_e`` onto ``j_e``, ``−g_e`` onto ``i_e``."""
    f = np.zeros((n, 3))
    for e in range(i.shape[0]):
        a, b = i[e], j[e]
        for k in range(3):
            f[b, k] += g[e, k]
            f[a, k] -= g[e, k]
    return f


@_jit(parallel=False)
def forces_batched(g, i, j, n):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    """Forces ``(B, n, 3)`` of ``B`` sets of pair gradients ``g (B, E, 3)``, in one pass.

    ``+g_e`` onto ``i_e``, ``−g_e`` onto ``j_e``.
    """
    n_b = g.shape[0]
    f = np.zeros((n_b, n, 3))
    for e in range(i.shape[0]):
        a, b = i[e], j[e]
        for m in range(n_b):
            for k in range(3):
                f[m, a, k] += g[m, e, k]
                f[m, b, k] -= g[m, e, k]
    return f
