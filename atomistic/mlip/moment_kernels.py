# mypy: disable-error-code="no-untyped-def"
"""Compiled (numba) moment-tensor descriptors and their first two derivatives in pair space.

:class:`~atomistic.mlip.moments.MomentDescriptor` uses these kernels when the pair vectors
are a CPU ``float64`` ``(E, 3)`` tensor; anything else (CUDA, ``float32``) takes the torch
path. ``MULTISCALE_TORCH_ONLY=1`` in the environment (the switch of all compiled kernels) or
``MomentDescriptor.compiled = False`` forces the torch path. Both compute the same sums (in
another order), so they agree to round-off (``tests/test_moment_kernels.py``).

Per neighbour ``v = r_j − r_i`` (``r = |v|``) the moments are written with raw monomials,
``R_n(r) r̂^α = ρ_{n,l}(r) v^α`` with ``ρ_{n,l} = R_n / r^l``, so that every derivative is one
of a radial function times one of a polynomial:

=============================  ==============================================================
quantity (atom ``a``)          kernel
=============================  ==============================================================
``G (n, D)``, ``M (n, K, A)``  :func:`_radial_forward`, :func:`_angular_forward`
``g_e = ∂(Λ·G)/∂r_e``          :func:`_radial_vjp`, :func:`_angular_vjp` (``Λ (B, n, D)``,
                               ``B`` cotangents at once: the members of a committee)
``δG = (∂G/∂r) V``             :func:`_radial_jvp`, :func:`_angular_jvp`
``(∂²(Λ·G)/∂r²) V``            :func:`_radial_hvp`, :func:`_angular_hvp`
=============================  ==============================================================

With ``I_l[c, c'] = Σ_{α∈l} M[c, α] M[c', α]``, ``S_l = P_l + P_lᵀ`` (``P_l`` the upper
triangle of ``Λ`` for rank ``l``) and ``Bw[c, α] = w_α Σ_c' S_l[c, c'] M[c', α]``, one
neighbour of element ``b`` contributes ``φ(v) = Σ_{n,l} ρ_{n,l}(r) p_{n,l}(v)`` with
``p_{n,l}(v) = Σ_{α∈l} Bw[(b, n), α] v^α``, and

    ∇φ      = Σ ρ' r̂ p + ρ ∇p
    ∇²φ·δ   = Σ ρ'' (r̂·δ) p r̂ + (ρ'/r) (δ − (r̂·δ) r̂) p + ρ' ((∇p·δ) r̂ + (r̂·δ) ∇p) + ρ ∇²p δ

The Hessian of ``Λ·I`` adds the Gauss–Newton-like term ``(∂M/∂r)ᵀ S (∂M/∂r) V`` (through
``δM``, the moments' JVP). autograd sees the kernels through two functions of
:func:`moment_features`: the features (whose backward is the second) and the differentiable
cotangent-to-pair-gradient map (whose backward is the JVP and the Hessian term). Third
derivatives are not provided (``RuntimeError``).

The graph is a half list: the radial sums add every pair to both of its atoms; the moments
and their VJP do the same for the pairs within ``r_a``, the second atom seeing ``−r_e``,
whose monomials are those of ``r_e`` times ``(−1)^l``. The JVP and the Hessian run over a
per-atom list of the pairs within ``r_a`` (``v = ±r_e``) built here in O(E). Everything runs
on one thread.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from atomistic.potentials.eam_kernels import _jit, compiled_wanted

__all__ = ["MomentPlan", "angular_list", "compiled_wanted"]


@dataclass(frozen=True)
class MomentPlan:
    """The descriptor's constants as NumPy arrays (see :class:`~atomistic.mlip.moments.MomentSpec`).

    Attributes:
        n_el: number of elements.
        radial_eta, radial_shift: ``(n_r,)`` G2 widths (Å⁻²) and centres (Å).
        radial_ratio: ``(n_r,)`` ``exp(−η Δ² (2k + 1))`` of :func:`uniform_ratio`, or empty.
        cutoff: ``r_cut`` (Å).
        angular_eta, angular_shift: ``(n_ang,)`` widths and centres of ``R_n``.
        r_angular: ``r_a`` (Å).
        kind: 0 polynomial cutoff, 1 cosine.
        exponents: ``(A, 3)`` monomial exponents, grouped by rank ``l``.
        rank: ``(A,)`` ``l`` of each monomial.
        weight: ``(A,)`` ``sqrt(l!/α!)``.
        l_start: ``(L + 2,)`` first monomial of each rank (and the end).
        pair_rows, pair_cols: ``(P,)`` channel pairs ``c ≤ c'`` (row-major upper triangle).
    """

    n_el: int
    radial_eta: np.ndarray
    radial_shift: np.ndarray
    radial_ratio: np.ndarray
    cutoff: float
    angular_eta: np.ndarray
    angular_shift: np.ndarray
    r_angular: float
    kind: int
    exponents: np.ndarray
    rank: np.ndarray
    weight: np.ndarray
    l_start: np.ndarray
    pair_rows: np.ndarray
    pair_cols: np.ndarray

    @property
    def n_features(self) -> int:
        """Descriptor length ``D``."""
        n_l = self.l_start.shape[0] - 1
        return self.n_el * self.radial_eta.shape[0] + n_l * self.pair_rows.shape[0]

    def radial_args(self) -> tuple[Any, ...]:
        """The constants the radial kernels take, in their order."""
        return (self.radial_eta, self.radial_shift, self.radial_ratio, self.cutoff, self.kind)

    def angular_args(self) -> tuple[Any, ...]:
        """The constants the angular kernels take, in their order."""
        return (
            self.angular_eta,
            self.angular_shift,
            self.r_angular,
            self.kind,
            self.exponents,
            self.rank,
            self.weight,
            self.l_start,
            self.pair_rows,
            self.pair_cols,
            self.n_el * self.radial_eta.shape[0],
        )


# -- helpers (inlined into the kernels) -----------------------------------------------------------
@_jit(parallel=False, inline=True)
def _cutoff(r, rc, kind):  # pragma: no cover
    """``f, f', f''`` of the cutoff at ``r`` (0 from ``rc`` on)."""
    if r >= rc:
        return 0.0, 0.0, 0.0
    x = r / rc
    if kind == 1:
        c, s = math.cos(math.pi * x), math.sin(math.pi * x)
        k = math.pi / rc
        return 0.5 * (c + 1.0), -0.5 * k * s, -0.5 * k * k * c
    f = 1.0 - x * x * x * (10.0 + x * (-15.0 + 6.0 * x))
    y = 1.0 - x
    f1 = -30.0 * x * x * y * y / rc
    f2 = -60.0 * x * y * (1.0 - 2.0 * x) / (rc * rc)
    return f, f1, f2


@_jit(parallel=False, inline=True)
def _gauss(r, eta, mu, f, f1, f2):  # pragma: no cover
    """``g = exp(−η (r − μ)²) f(r)`` and its first two derivatives in ``r``."""
    d = r - mu
    e = math.exp(-eta * d * d)
    q = -2.0 * eta * d  # (log of the Gaussian)'
    g = e * f
    g1 = e * (q * f + f1)
    g2 = e * ((q * q - 2.0 * eta) * f + 2.0 * q * f1 + f2)
    return g, g1, g2


def uniform_ratio(eta: np.ndarray, shift: np.ndarray, cutoff: float) -> np.ndarray:
    """``c_k = exp(−η Δ² (2k + 1))`` for one width ``η`` and evenly spaced shifts, else empty.

    Then ``e_k = exp(−η (r − μ_k)²)`` follows from ``e_0`` and ``q = exp(2ηΔ(r − μ_0))`` as
    ``e_{k+1} = e_k q c_k``: two exponentials per pair instead of ``n_r`` (a relative
    round-off of about ``k`` ulp). Only where nothing under- or overflows for ``0 ≤ r ≤ r_cut``.
    """
    n = shift.shape[0]
    if n < 3 or np.ptp(eta) != 0.0:
        return np.empty(0)
    step = np.diff(shift)
    if np.ptp(step) > 1e-12 * max(1.0, abs(float(step[0]))) or step[0] <= 0.0:
        return np.empty(0)
    e, d = float(eta[0]), float(step[0])
    far = max(abs(cutoff - shift[0]), abs(shift[0]))
    if e * far * far > 600.0 or 2.0 * e * d * far > 600.0:
        return np.empty(0)
    return np.exp(-e * d * d * (2.0 * np.arange(n) + 1.0))


@_jit(parallel=False, inline=True)
def _gauss_row(r, eta, mu, ratio, out):  # pragma: no cover
    """``out[k] = exp(−η_k (r − μ_k)²)``, by the recurrence of :func:`uniform_ratio` if given."""
    n = eta.shape[0]
    if ratio.shape[0] == n:
        d = r - mu[0]
        e = math.exp(-eta[0] * d * d)
        q = math.exp(2.0 * eta[0] * (mu[1] - mu[0]) * d)
        for k in range(n):
            out[k] = e
            e *= q * ratio[k]
    else:
        for k in range(n):
            d = r - mu[k]
            out[k] = math.exp(-eta[k] * d * d)


@_jit(parallel=False, inline=True)
def _radial_row(r, eta, mu, ratio, rc, kind, e, g, g1, g2, order):  # pragma: no cover
    """``g_k = exp(−η_k (r − μ_k)²) f_c(r)`` and (by ``order``) its first two derivatives."""
    f, f1, f2 = _cutoff(r, rc, kind)
    _gauss_row(r, eta, mu, ratio, e)
    n = eta.shape[0]
    if order == 0:  # one loop per order, none branching inside: they vectorise
        for k in range(n):
            g[k] = e[k] * f
    elif order == 1:
        for k in range(n):
            g1[k] = e[k] * (-2.0 * eta[k] * (r - mu[k]) * f + f1)
    else:
        for k in range(n):
            q = -2.0 * eta[k] * (r - mu[k])
            g1[k] = e[k] * (q * f + f1)
            g2[k] = e[k] * ((q * q - 2.0 * eta[k]) * f + 2.0 * q * f1 + f2)


@_jit(parallel=False, inline=True)
def _powers(x, n, out):  # pragma: no cover
    out[0] = 1.0
    for k in range(1, n):
        out[k] = out[k - 1] * x


@_jit(parallel=False, inline=True)
def _monomials(vx, vy, vz, exps, px, py, pz, val, grad, hess, order):  # pragma: no cover
    """``v^α`` (``val``), its gradient ``(A, 3)`` and Hessian ``(A, 6)``, up to ``order``.

    The Hessian columns are xx, yy, zz, xy, xz, yz; all from the powers of ``v``'s components.
    """
    n_pow = px.shape[0]
    _powers(vx, n_pow, px)
    _powers(vy, n_pow, py)
    _powers(vz, n_pow, pz)
    for k in range(exps.shape[0]):
        a, b, c = exps[k, 0], exps[k, 1], exps[k, 2]
        xa, yb, zc = px[a], py[b], pz[c]
        val[k] = xa * yb * zc
        if order >= 1:
            xa1 = a * px[a - 1] if a > 0 else 0.0
            yb1 = b * py[b - 1] if b > 0 else 0.0
            zc1 = c * pz[c - 1] if c > 0 else 0.0
            grad[k, 0] = xa1 * yb * zc
            grad[k, 1] = xa * yb1 * zc
            grad[k, 2] = xa * yb * zc1
            if order >= 2:
                xa2 = a * (a - 1) * px[a - 2] if a > 1 else 0.0
                yb2 = b * (b - 1) * py[b - 2] if b > 1 else 0.0
                zc2 = c * (c - 1) * pz[c - 2] if c > 1 else 0.0
                hess[k, 0] = xa2 * yb * zc
                hess[k, 1] = xa * yb2 * zc
                hess[k, 2] = xa * yb * zc2
                hess[k, 3] = xa1 * yb1 * zc
                hess[k, 4] = xa1 * yb * zc1
                hess[k, 5] = xa * yb1 * zc1


@_jit(parallel=False, inline=True)
def _rho(r, eta, mu, f, f1, f2, n_l, rho, order):  # pragma: no cover
    """``ρ_l = R / r^l`` and derivatives, ``rho (3, n_l)``, for ``R = exp(−η(r − μ)²) f``."""
    g, g1, g2 = _gauss(r, eta, mu, f, f1, f2)
    inv = 1.0 / r
    p = 1.0  # r^-l
    for l in range(n_l):
        rho[0, l] = g * p
        if order >= 1:
            rho[1, l] = (g1 - l * g * inv) * p
        if order >= 2:
            rho[2, l] = (g2 - 2.0 * l * g1 * inv + l * (l + 1) * g * inv * inv) * p
        p *= inv


# -- the per-atom list within r_a -----------------------------------------------------------------
@_jit(parallel=False)
def angular_list(i, j, vec, species, r_a, n):  # pragma: no cover
    """CSR ``(ptr (n+1,), pair (nnz,), sign (nnz,), element (nnz,))`` of the pairs within ``r_a``.

    Atom ``i_e`` sees ``+r_e`` (sign 1), atom ``j_e`` sees ``−r_e`` (sign −1).
    """
    n_e = i.shape[0]
    r2 = r_a * r_a
    count = np.zeros(n + 1, dtype=np.int64)
    for e in range(n_e):
        if vec[e, 0] ** 2 + vec[e, 1] ** 2 + vec[e, 2] ** 2 < r2:
            count[i[e] + 1] += 1
            count[j[e] + 1] += 1
    for a in range(n):
        count[a + 1] += count[a]
    fill = count[:-1].copy()
    nnz = count[n]
    pair = np.empty(nnz, dtype=np.int64)
    sign = np.empty(nnz)
    element = np.empty(nnz, dtype=np.int64)
    for e in range(n_e):
        if vec[e, 0] ** 2 + vec[e, 1] ** 2 + vec[e, 2] ** 2 < r2:
            a, b = i[e], j[e]
            pair[fill[a]], sign[fill[a]], element[fill[a]] = e, 1.0, species[b]
            fill[a] += 1
            pair[fill[b]], sign[fill[b]], element[fill[b]] = e, -1.0, species[a]
            fill[b] += 1
    return count, pair, sign, element


# -- radial G2 (half list) ------------------------------------------------------------------------
@_jit(parallel=False)
def _radial_forward(i, j, vec, species, eta, mu, ratio, rc, kind, out):  # pragma: no cover
    n_r = eta.shape[0]
    g = np.empty(n_r)
    for e in range(i.shape[0]):
        r2 = vec[e, 0] ** 2 + vec[e, 1] ** 2 + vec[e, 2] ** 2
        if r2 >= rc * rc:
            continue
        r = math.sqrt(r2)
        f = _cutoff(r, rc, kind)[0]
        _gauss_row(r, eta, mu, ratio, g)
        a, b = i[e], j[e]
        oa, ob = species[b] * n_r, species[a] * n_r
        for k in range(n_r):
            out[a, oa + k] += g[k] * f
            out[b, ob + k] += g[k] * f


@_jit(parallel=False)
def _radial_vjp(i, j, vec, species, eta, mu, ratio, rc, kind, lam, out):  # pragma: no cover
    """``out[m, e] = Σ_k (Λ_m[i, k] + Λ_m[j, k]) g_k'(r) r̂`` (``lam (B, n, D)``).

    Every row of ``out`` is written (0 from ``r_cut`` on), so it need not be zeroed first;
    :func:`_angular_vjp` then adds to the rows within ``r_a ≤ r_cut``.
    """
    n_r = eta.shape[0]
    n_b = lam.shape[0]
    g, g1 = np.empty(n_r), np.empty(n_r)
    for e in range(i.shape[0]):
        r2 = vec[e, 0] ** 2 + vec[e, 1] ** 2 + vec[e, 2] ** 2
        if r2 >= rc * rc:
            for m in range(n_b):
                out[m, e, 0] = out[m, e, 1] = out[m, e, 2] = 0.0
            continue
        r = math.sqrt(r2)
        f, f1, _ = _cutoff(r, rc, kind)
        _gauss_row(r, eta, mu, ratio, g)
        inv = 1.0 / r
        for k in range(n_r):  # g_k'(r) / r
            g1[k] = g[k] * (2.0 * eta[k] * (mu[k] - r) * f + f1) * inv
        a, b = i[e], j[e]
        oa, ob = species[b] * n_r, species[a] * n_r
        for m in range(n_b):
            s = 0.0
            for k in range(n_r):
                s += (lam[m, a, oa + k] + lam[m, b, ob + k]) * g1[k]
            out[m, e, 0] = s * vec[e, 0]
            out[m, e, 1] = s * vec[e, 1]
            out[m, e, 2] = s * vec[e, 2]


@_jit(parallel=False)
def _radial_jvp(i, j, vec, species, eta, mu, ratio, rc, kind, w, out):  # pragma: no cover
    """``out[m, i, k] += g_k'(r) (r̂·w_m,e)`` and the same at ``j`` (``w (B, E, 3)``)."""
    n_r = eta.shape[0]
    n_b = w.shape[0]
    e_, g1 = np.empty(n_r), np.empty(n_r)
    for e in range(i.shape[0]):
        r = math.sqrt(vec[e, 0] ** 2 + vec[e, 1] ** 2 + vec[e, 2] ** 2)
        if r >= rc:
            continue
        _radial_row(r, eta, mu, ratio, rc, kind, e_, g1, g1, g1, 1)
        a, b = i[e], j[e]
        oa, ob = species[b] * n_r, species[a] * n_r
        inv = 1.0 / r
        for m in range(n_b):
            t = (vec[e, 0] * w[m, e, 0] + vec[e, 1] * w[m, e, 1] + vec[e, 2] * w[m, e, 2]) * inv
            for k in range(n_r):
                out[m, a, oa + k] += g1[k] * t
                out[m, b, ob + k] += g1[k] * t


@_jit(parallel=False)
def _radial_hvp(i, j, vec, species, eta, mu, ratio, rc, kind, lam, dlam, w, out):  # noqa: E501, pragma: no cover
    """``out[e] += Σ_m ψ_m'' (r̂·w) r̂ + ψ_m'/r (w − (r̂·w) r̂) + χ_m' r̂``.

    Here ``ψ_m = Σ_k Λ_m g_k`` and ``χ_m = Σ_k δΛ_m g_k`` (``dlam``: the cotangents' own tangent,
    ``(B, n, D)`` or ``(0, n, D)`` for none).
    """
    n_r = eta.shape[0]
    n_b = lam.shape[0]
    e_, g1, g2 = np.empty(n_r), np.empty(n_r), np.empty(n_r)
    for e in range(i.shape[0]):
        r = math.sqrt(vec[e, 0] ** 2 + vec[e, 1] ** 2 + vec[e, 2] ** 2)
        if r >= rc:
            continue
        _radial_row(r, eta, mu, ratio, rc, kind, e_, g1, g1, g2, 2)
        a, b = i[e], j[e]
        oa, ob = species[b] * n_r, species[a] * n_r
        inv = 1.0 / r
        ux, uy, uz = vec[e, 0] * inv, vec[e, 1] * inv, vec[e, 2] * inv
        for m in range(n_b):
            d1 = 0.0
            d2 = 0.0
            c1 = 0.0
            for k in range(n_r):
                c = lam[m, a, oa + k] + lam[m, b, ob + k]
                d1 += c * g1[k]
                d2 += c * g2[k]
            if dlam.shape[0] > 0:
                for k in range(n_r):
                    c1 += (dlam[m, a, oa + k] + dlam[m, b, ob + k]) * g1[k]
            wx, wy, wz = w[m, e, 0], w[m, e, 1], w[m, e, 2]
            t = ux * wx + uy * wy + uz * wz
            s = d1 * inv
            q = (d2 - s) * t + c1
            out[e, 0] += q * ux + s * wx
            out[e, 1] += q * uy + s * wy
            out[e, 2] += q * uz + s * wz


# -- moments and their invariants ----------------------------------------------------------------
@_jit(parallel=False)
def _angular_forward(i, j, vec, species, consts, moments, out):  # pragma: no cover
    """``M[a, c, α] = w_α Σ_j ρ_{n,l}(r) v^α`` and ``I`` into ``out[:, off:]``.

    One pass over the half list within ``r_a``: atom ``i`` sees ``v = r_e``, atom ``j`` sees
    ``−r_e``, whose monomials are those of ``r_e`` times ``(−1)^l``.
    """
    eta, mu, ra, kind, exps, rank, weight, l_start, prow, pcol, off = consts
    n = moments.shape[0]
    n_ang = eta.shape[0]
    n_mono = exps.shape[0]
    n_l = l_start.shape[0] - 1
    n_p = prow.shape[0]
    px, py, pz = np.empty(n_l), np.empty(n_l), np.empty(n_l)
    val = np.empty(n_mono)
    dummy = np.empty((1, 1))
    rho = np.empty((3, n_l))
    parity = np.empty(n_mono)
    for k in range(n_mono):
        parity[k] = 1.0 - 2.0 * (rank[k] % 2)
    for e in range(i.shape[0]):
        vx, vy, vz = vec[e, 0], vec[e, 1], vec[e, 2]
        r2 = vx * vx + vy * vy + vz * vz
        if r2 >= ra * ra:
            continue
        r = math.sqrt(r2)
        a, b = i[e], j[e]
        f, f1, f2 = _cutoff(r, ra, kind)
        _monomials(vx, vy, vz, exps, px, py, pz, val, dummy, dummy, 0)
        ca, cb = species[b] * n_ang, species[a] * n_ang  # each atom's channel of the other
        for nn in range(n_ang):
            _rho(r, eta[nn], mu[nn], f, f1, f2, n_l, rho, 0)
            for k in range(n_mono):
                t = rho[0, rank[k]] * val[k]
                moments[a, ca + nn, k] += t
                moments[b, cb + nn, k] += parity[k] * t
    for a in range(n):
        for c in range(moments.shape[1]):
            for k in range(n_mono):
                moments[a, c, k] *= weight[k]
        for l in range(n_l):
            for q in range(n_p):
                c, d = prow[q], pcol[q]
                t = 0.0
                for k in range(l_start[l], l_start[l + 1]):
                    t += moments[a, c, k] * moments[a, d, k]
                out[a, off + l * n_p + q] = t


# -- derivatives of the invariants (per-atom list for the JVP and the Hessian) --------------------
@_jit(parallel=False, inline=True)
def _cotangent_moments(lam_a, moments_a, weight, rank, l_start, prow, pcol, off, bw):  # noqa: E501
    """``bw[c, α] = w_α Σ_c' S_l[c, c'] M[c', α]`` for one atom (``lam_a (D,)``)."""
    n_p = prow.shape[0]
    n_l = l_start.shape[0] - 1
    bw[:, :] = 0.0
    for l in range(n_l):
        for q in range(n_p):
            c, d = prow[q], pcol[q]
            lam = lam_a[off + l * n_p + q]
            if lam == 0.0:
                continue
            for k in range(l_start[l], l_start[l + 1]):
                bw[c, k] += lam * moments_a[d, k]
                bw[d, k] += lam * moments_a[c, k]
    for c in range(bw.shape[0]):
        for k in range(bw.shape[1]):
            bw[c, k] *= weight[k]


@_jit(parallel=False)
def _atom_cotangents(consts, moments, lam):  # pragma: no cover
    """``bw (n, B, K, A)`` of :func:`_cotangent_moments` for every atom and member.

    Also whether each atom has a nonzero cotangent of its invariants (a pad atom has none).
    """
    eta, mu, ra, kind, exps, rank, weight, l_start, prow, pcol, off = consts
    n, n_b = moments.shape[0], lam.shape[0]
    bw = np.empty((n, n_b, moments.shape[1], moments.shape[2]))
    active = np.zeros(n, dtype=np.bool_)
    for a in range(n):
        if not np.any(lam[:, a, off:]):
            bw[a] = 0.0
            continue
        active[a] = True
        for m in range(n_b):
            _cotangent_moments(
                lam[m, a], moments[a], weight, rank, l_start, prow, pcol, off, bw[a, m]
            )
    return bw, active


@_jit(parallel=False)
def _angular_vjp(i, j, vec, species, consts, moments, lam, out):  # pragma: no cover
    """``out[m, e] += ∇φ_m^(i)(r_e) − ∇φ_m^(j)(−r_e)`` for the pairs within ``r_a``.

    ``lam (B, n, D)``: ``B`` cotangents (the members of a committee).

    One pass over the half list: both atoms of a pair see the same ``ρ(r)`` and, through
    ``v^α(−r) = (−1)^l v^α(r)``, the same monomials, so their cotangents combine per
    monomial (``bw_i + (−1)^l bw_j``) before the one dot product with ``ρ' p r̂ + ρ ∇p``.
    """
    eta, mu, ra, kind, exps, rank, weight, l_start, prow, pcol, off = consts
    n_b, n_ang, n_mono = lam.shape[0], eta.shape[0], exps.shape[0]
    n_l = l_start.shape[0] - 1
    bw, active = _atom_cotangents(consts, moments, lam)
    parity = np.empty(n_mono)
    for k in range(n_mono):
        parity[k] = 1.0 - 2.0 * (rank[k] % 2)
    px, py, pz = np.empty(n_l), np.empty(n_l), np.empty(n_l)
    val, grad = np.empty(n_mono), np.empty((n_mono, 3))
    dummy = np.empty((1, 1))
    rho = np.empty((3, n_l))
    # per pair and radial function, what every member's cotangent is dotted with:
    # ρ_l' p_k (radial part) and ρ_l ∇p_k, for each monomial k of rank l
    dr, dx, dy, dz = np.empty(n_mono), np.empty(n_mono), np.empty(n_mono), np.empty(n_mono)
    for e in range(i.shape[0]):
        a, b = i[e], j[e]
        vx, vy, vz = vec[e, 0], vec[e, 1], vec[e, 2]
        r2 = vx * vx + vy * vy + vz * vz
        if r2 >= ra * ra or not (active[a] or active[b]):
            continue
        r = math.sqrt(r2)
        inv = 1.0 / r
        ux, uy, uz = vx * inv, vy * inv, vz * inv
        f, f1, f2 = _cutoff(r, ra, kind)
        _monomials(vx, vy, vz, exps, px, py, pz, val, grad, dummy, 1)
        ca, cb = species[b] * n_ang, species[a] * n_ang  # each atom's channel of the other
        for nn in range(n_ang):
            _rho(r, eta[nn], mu[nn], f, f1, f2, n_l, rho, 1)
            for k in range(n_mono):
                rk = rho[0, rank[k]]
                dr[k] = rho[1, rank[k]] * val[k]
                dx[k] = rk * grad[k, 0]
                dy[k] = rk * grad[k, 1]
                dz[k] = rk * grad[k, 2]
            for m in range(n_b):
                radial = 0.0
                gx = gy = gz = 0.0
                for k in range(n_mono):
                    c = bw[a, m, ca + nn, k] + parity[k] * bw[b, m, cb + nn, k]
                    radial += c * dr[k]
                    gx += c * dx[k]
                    gy += c * dy[k]
                    gz += c * dz[k]
                out[m, e, 0] += radial * ux + gx
                out[m, e, 1] += radial * uy + gy
                out[m, e, 2] += radial * uz + gz


@_jit(parallel=False, inline=True)
def _moment_jvp(nbrs, consts, w, a, n_b, dm):  # pragma: no cover
    """``dm[m, c, α] = Σ_j ∂M[a, c, α]/∂v_j · (±w_m,e)`` for one atom ``a``."""
    ptr, pair, sign, element, vec = nbrs
    eta, mu, ra, kind, exps, rank, weight, l_start, prow, pcol, off = consts
    n_ang = eta.shape[0]
    n_mono = exps.shape[0]
    n_l = l_start.shape[0] - 1
    px, py, pz = np.empty(n_l), np.empty(n_l), np.empty(n_l)
    val, grad = np.empty(n_mono), np.empty((n_mono, 3))
    dummy = np.empty((1, 1))
    rho = np.empty((3, n_l))
    dm[:, :, :] = 0.0
    for p in range(ptr[a], ptr[a + 1]):
        e, s = pair[p], sign[p]
        vx, vy, vz = s * vec[e, 0], s * vec[e, 1], s * vec[e, 2]
        r = math.sqrt(vx * vx + vy * vy + vz * vz)
        inv = 1.0 / r
        ux, uy, uz = vx * inv, vy * inv, vz * inv
        f, f1, f2 = _cutoff(r, ra, kind)
        _monomials(vx, vy, vz, exps, px, py, pz, val, grad, dummy, 1)
        for nn in range(n_ang):
            _rho(r, eta[nn], mu[nn], f, f1, f2, n_l, rho, 1)
            c = element[p] * n_ang + nn
            for m in range(n_b):
                dx, dy, dz = s * w[m, e, 0], s * w[m, e, 1], s * w[m, e, 2]
                t = ux * dx + uy * dy + uz * dz
                for k in range(n_mono):
                    dm[m, c, k] += weight[k] * (
                        rho[1, rank[k]] * t * val[k]
                        + rho[0, rank[k]] * (grad[k, 0] * dx + grad[k, 1] * dy + grad[k, 2] * dz)
                    )


@_jit(parallel=False)
def _angular_jvp(nbrs, consts, moments, w, out, keep):  # pragma: no cover
    """``δI[l, (c, c')] = Σ_{α∈l} δM[c, α] M[c', α] + M[c, α] δM[c', α]`` (``out[:, :, off:]``).

    ``keep`` ``(n, B, K, A)`` receives ``δM`` (for :func:`_angular_hvp`), unless it is empty.
    """
    ptr, pair, sign, element, vec = nbrs
    eta, mu, ra, kind, exps, rank, weight, l_start, prow, pcol, off = consts
    n = ptr.shape[0] - 1
    n_b = w.shape[0]
    n_l = l_start.shape[0] - 1
    n_p = prow.shape[0]
    dm = np.empty((n_b, moments.shape[1], moments.shape[2]))
    for a in range(n):
        if ptr[a] == ptr[a + 1]:
            continue
        _moment_jvp(nbrs, consts, w, a, n_b, dm)
        if keep.shape[0] > 0:
            keep[a] = dm
        for m in range(n_b):
            for l in range(n_l):
                for q in range(n_p):
                    c, d = prow[q], pcol[q]
                    t = 0.0
                    for k in range(l_start[l], l_start[l + 1]):
                        t += dm[m, c, k] * moments[a, d, k] + moments[a, c, k] * dm[m, d, k]
                    out[m, a, off + l * n_p + q] += t


@_jit(parallel=False, inline=True)
def _hvp_entry(b_, c_, c0, rank, rho, val, grad, hess, u, inv, d, acc):  # pragma: no cover
    """``∇²φ δ`` plus a first derivative for one neighbour, summed over its channels.

    ``b_``, ``c_`` ``(K, A)``: the cotangent moments of ``Λ`` and those the first derivative
    is taken against (``w_α (S δM)`` and ``δΛ``'s); the neighbour's channels are ``c0 + n``;
    ``rho (n_ang, 3, n_l)``; ``u = r̂``, ``d = δ``. Per channel and rank the polynomials
    ``P = Σ b v^α``, ``Q = Σ c v^α`` with ``∇P``, ``∇Q`` and ``∇²P δ`` are summed first (in
    ``acc (n_ang, n_l, 11)``), then

        ∇²φ δ + ∇(c·φ) = Σ [ρ' Q + ρ'' t P + ρ' ∇P·δ − (ρ'/r) t P] r̂ + (ρ'/r) P δ
                         + ρ ∇Q + ρ' t ∇P + ρ ∇²P δ,     t = r̂·δ.
    """
    n_ang = rho.shape[0]
    dx, dy, dz = d[0], d[1], d[2]
    acc[:] = 0.0
    for k in range(val.shape[0]):
        l = rank[k]
        v, g0, g1, g2 = val[k], grad[k, 0], grad[k, 1], grad[k, 2]
        h0 = hess[k, 0] * dx + hess[k, 3] * dy + hess[k, 4] * dz
        h1 = hess[k, 3] * dx + hess[k, 1] * dy + hess[k, 5] * dz
        h2 = hess[k, 4] * dx + hess[k, 5] * dy + hess[k, 2] * dz
        for nn in range(n_ang):
            b, cc = b_[c0 + nn, k], c_[c0 + nn, k]
            a = acc[nn, l]
            a[0] += b * v
            a[1] += b * g0
            a[2] += b * g1
            a[3] += b * g2
            a[4] += b * h0
            a[5] += b * h1
            a[6] += b * h2
            a[7] += cc * v
            a[8] += cc * g0
            a[9] += cc * g1
            a[10] += cc * g2
    t = u[0] * dx + u[1] * dy + u[2] * dz
    hx = hy = hz = 0.0
    for nn in range(n_ang):
        for l in range(rho.shape[2]):
            a = acc[nn, l]
            r0, r1, r2 = rho[nn, 0, l], rho[nn, 1, l], rho[nn, 2, l]
            p = a[0]
            rad = r1 * a[7] + r2 * t * p + r1 * (a[1] * dx + a[2] * dy + a[3] * dz)
            rad -= r1 * inv * t * p
            tan = r1 * inv * p
            hx += rad * u[0] + tan * dx + r0 * a[8] + r1 * t * a[1] + r0 * a[4]
            hy += rad * u[1] + tan * dy + r0 * a[9] + r1 * t * a[2] + r0 * a[5]
            hz += rad * u[2] + tan * dz + r0 * a[10] + r1 * t * a[3] + r0 * a[6]
    return hx, hy, hz


@_jit(parallel=False)
def _angular_hvp(nbrs, consts, moments, lam, dlam, w, kept, out):  # pragma: no cover
    """``out[e] += Σ_m (∂²(Λ_m·I)/∂r²) w_m + ∂(δΛ_m·I)/∂r``.

    That is the ``∇²φ`` term, ``(∂M)ᵀ S δM`` and (``dlam`` not empty) the first derivative
    along the cotangents' tangent. ``kept``: ``δM`` from :func:`_angular_jvp` with the same
    ``w``, or empty (then computed here).
    """
    ptr, pair, sign, element, vec = nbrs
    eta, mu, ra, kind, exps, rank, weight, l_start, prow, pcol, off = consts
    n = ptr.shape[0] - 1
    n_b = lam.shape[0]
    n_ang = eta.shape[0]
    n_mono = exps.shape[0]
    n_l = l_start.shape[0] - 1
    n_ch = moments.shape[1]
    px, py, pz = np.empty(n_l), np.empty(n_l), np.empty(n_l)
    val, grad, hess = np.empty(n_mono), np.empty((n_mono, 3)), np.empty((n_mono, 6))
    rho = np.empty((n_ang, 3, n_l))
    acc = np.empty((n_ang, n_l, 11))
    u, d = np.empty(3), np.empty(3)
    bw = np.empty((n_b, n_ch, n_mono))
    cw = np.empty((n_b, n_ch, n_mono))  # w_α (S δM)[c, α]
    dm = np.empty((n_b, n_ch, n_mono))
    bw2 = np.empty((n_ch, n_mono))
    for a in range(n):
        if ptr[a] == ptr[a + 1]:
            continue
        if kept.shape[0] > 0:
            dm[:] = kept[a]
        else:
            _moment_jvp(nbrs, consts, w, a, n_b, dm)
        for m in range(n_b):
            _cotangent_moments(lam[m, a], moments[a], weight, rank, l_start, prow, pcol, off, bw[m])
            _cotangent_moments(lam[m, a], dm[m], weight, rank, l_start, prow, pcol, off, cw[m])
            if dlam.shape[0] > 0:  # cw += the cotangent moments of δΛ
                _cotangent_moments(
                    dlam[m, a], moments[a], weight, rank, l_start, prow, pcol, off, bw2
                )
                cw[m] += bw2
        for p in range(ptr[a], ptr[a + 1]):
            e, s = pair[p], sign[p]
            vx, vy, vz = s * vec[e, 0], s * vec[e, 1], s * vec[e, 2]
            r = math.sqrt(vx * vx + vy * vy + vz * vz)
            inv = 1.0 / r
            ux, uy, uz = vx * inv, vy * inv, vz * inv
            f, f1, f2 = _cutoff(r, ra, kind)
            _monomials(vx, vy, vz, exps, px, py, pz, val, grad, hess, 2)
            for nn in range(n_ang):
                _rho(r, eta[nn], mu[nn], f, f1, f2, n_l, rho[nn], 2)
            u[0], u[1], u[2] = ux, uy, uz
            for m in range(n_b):
                # δ = ±w (the neighbour's own direction), ∇²φ δ, then ± again: sign² = 1
                d[0], d[1], d[2] = s * w[m, e, 0], s * w[m, e, 1], s * w[m, e, 2]
                c0 = element[p] * n_ang
                hx, hy, hz = _hvp_entry(
                    bw[m], cw[m], c0, rank, rho, val, grad, hess, u, inv, d, acc
                )
                out[e, 0] += s * hx
                out[e, 1] += s * hy
                out[e, 2] += s * hz
