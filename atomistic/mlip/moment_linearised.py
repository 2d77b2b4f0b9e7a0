# mypy: disable-error-code="no-untyped-def"
"""The angular moments linearised once per state, for many Hessian-vector products.

A Newton–Krylov solver asks for many products ``H V`` at one state, so one cotangent ``Λ``
(:func:`atomistic.mlip.hessian.hessian_operator`). Per list entry ``p`` (atom ``a``, its
neighbour at ``v = ±r_e``, channels ``c0 + n``) two things depend on the state only:

==========================================  =================================================
per list entry (kept)                       used for
==========================================  =================================================
``J_p[n, α] = ∂(ρ_{n,l} v^α)/∂v`` (3,)      ``δM = w_α Σ_p J_p·(±w_e)`` (the JVP) and the
                                            first-derivative term ``Σ cw[c, α] J_p``
``H_p = ∇²φ_p`` (6: xx yy zz xy xz yz)      the term ``H_p w_e`` (``φ`` with ``Λ``'s
                                            cotangent moments ``bw``)
==========================================  =================================================

    H_p = Σ_{n,l} (ρ'' − ρ'/r) P r̂r̂ᵀ + (ρ'/r) P I + ρ' (r̂ ∇Pᵀ + ∇P r̂ᵀ) + ρ ∇²P

(``P = Σ_{α∈l} bw v^α``), the matrix of :func:`~atomistic.mlip.moment_kernels._hvp_entry`'s
``∇²φ δ``. A product is then two passes of small dot products over the list, no monomials
and no radial functions: the same sums as :meth:`MomentState.jvp` and
:meth:`MomentState.hvp` in another order, so they agree to round-off
(``tests/test_moment_kernels.py``). Only the atoms in ``rows`` are linearised: their ``δG``
rows are computed (the others are zero), and the product is exact when ``Λ`` and ``δΛ``
vanish outside them (the weighted atoms of the coupled solver's β-weighted energy).
``J`` takes ``n_ang · A · 3`` floats per entry (``LinearisedMoments.nbytes``).
"""

from __future__ import annotations

import math

import numpy as np

from atomistic.mlip import moment_kernels as mk
from atomistic.potentials.eam_kernels import _jit

__all__ = ["LinearisedMoments"]


@_jit(parallel=False)
def _entry_hessian(rho, bw, c0, rank, val, grad, hess, u, inv, acc, out):  # pragma: no cover
    """``out (6,)`` = ``H_p`` of the module docstring for one list entry."""
    n_ang, n_l = rho.shape[0], rho.shape[2]
    out[:] = 0.0
    for nn in range(n_ang):
        acc[:] = 0.0
        for k in range(val.shape[0]):
            b, a = bw[c0 + nn, k], acc[rank[k]]
            a[0] += b * val[k]
            for x in range(3):
                a[1 + x] += b * grad[k, x]
            for x in range(6):
                a[4 + x] += b * hess[k, x]
        for l in range(n_l):
            r0, r1, r2 = rho[nn, 0, l], rho[nn, 1, l], rho[nn, 2, l]
            a = acc[l]
            cu, ci = (r2 - r1 * inv) * a[0], r1 * inv * a[0]
            for x in range(3):
                out[x] += cu * u[x] * u[x] + ci + 2.0 * r1 * u[x] * a[1 + x] + r0 * a[4 + x]
            for q in range(3):  # xy, xz, yz
                x, y = q // 2, 1 + (q + 1) // 2
                out[3 + q] += cu * u[x] * u[y] + r1 * (u[x] * a[1 + y] + a[1 + x] * u[y])
                out[3 + q] += r0 * a[7 + q]


@_jit(parallel=False)
def _linearise(nbrs, consts, moments, lam, rows, jac, hmat):  # pragma: no cover
    """``jac (nnz, n_ang, A, 3)`` and ``hmat (nnz, 6)`` of the list entries of ``rows``."""
    ptr, pair, sign, element, vec = nbrs
    eta, mu, ra, kind, exps, rank, weight, l_start, prow, pcol, off = consts
    n_ang, n_mono, n_l = eta.shape[0], exps.shape[0], l_start.shape[0] - 1
    px, py, pz = np.empty(n_l), np.empty(n_l), np.empty(n_l)
    val, grad, hess = np.empty(n_mono), np.empty((n_mono, 3)), np.empty((n_mono, 6))
    rho = np.empty((n_ang, 3, n_l))
    acc = np.empty((n_l, 10))
    u = np.empty(3)
    bw = np.empty((moments.shape[1], n_mono))
    for a in range(ptr.shape[0] - 1):
        if not rows[a] or ptr[a] == ptr[a + 1]:
            continue
        mk._cotangent_moments(lam[a], moments[a], weight, rank, l_start, prow, pcol, off, bw)
        for p in range(ptr[a], ptr[a + 1]):
            e, s = pair[p], sign[p]
            vx, vy, vz = s * vec[e, 0], s * vec[e, 1], s * vec[e, 2]
            r = math.sqrt(vx * vx + vy * vy + vz * vz)
            inv = 1.0 / r
            u[0], u[1], u[2] = vx * inv, vy * inv, vz * inv
            f, f1, f2 = mk._cutoff(r, ra, kind)
            mk._monomials(vx, vy, vz, exps, px, py, pz, val, grad, hess, 2)
            for nn in range(n_ang):
                mk._rho(r, eta[nn], mu[nn], f, f1, f2, n_l, rho[nn], 2)
                for k in range(n_mono):
                    r0, r1 = rho[nn, 0, rank[k]], rho[nn, 1, rank[k]]
                    for x in range(3):
                        jac[p, nn, k, x] = r1 * u[x] * val[k] + r0 * grad[k, x]
            _entry_hessian(rho, bw, element[p] * n_ang, rank, val, grad, hess, u, inv, acc, hmat[p])


@_jit(parallel=False)
def _jvp(nbrs, consts, jac, moments, rows, w, out, dm):  # pragma: no cover
    """``δM`` into ``dm (n, K, A)`` and ``δI`` into ``out[:, off:]`` for the atoms of ``rows``."""
    ptr, pair, sign, element, vec = nbrs
    eta, mu, ra, kind, exps, rank, weight, l_start, prow, pcol, off = consts
    n_ang, n_mono, n_l, n_p = eta.shape[0], exps.shape[0], l_start.shape[0] - 1, prow.shape[0]
    for a in range(ptr.shape[0] - 1):
        if not rows[a] or ptr[a] == ptr[a + 1]:
            continue
        d = dm[a]
        d[:, :] = 0.0
        for p in range(ptr[a], ptr[a + 1]):
            e, s = pair[p], sign[p]
            dx, dy, dz = s * w[e, 0], s * w[e, 1], s * w[e, 2]
            c0 = element[p] * n_ang
            for nn in range(n_ang):
                for k in range(n_mono):
                    j = jac[p, nn, k]
                    d[c0 + nn, k] += j[0] * dx + j[1] * dy + j[2] * dz
        for c in range(d.shape[0]):
            for k in range(n_mono):
                d[c, k] *= weight[k]
        m = moments[a]
        for l in range(n_l):
            for q in range(n_p):
                c, c2 = prow[q], pcol[q]
                t = 0.0
                for k in range(l_start[l], l_start[l + 1]):
                    t += d[c, k] * m[c2, k] + m[c, k] * d[c2, k]
                out[a, off + l * n_p + q] += t


@_jit(parallel=False)
def _hvp(nbrs, consts, jac, hmat, moments, lam, dlam, dm, rows, w, out):  # pragma: no cover
    """``out[e] += H_p w_e ± Σ cw J_p`` over the list entries of ``rows`` (``cw`` from δM, δΛ)."""
    ptr, pair, sign, element, vec = nbrs
    eta, mu, ra, kind, exps, rank, weight, l_start, prow, pcol, off = consts
    n_ang, n_mono = eta.shape[0], exps.shape[0]
    cw = np.empty((moments.shape[1], n_mono))
    cw2 = np.empty((moments.shape[1], n_mono))
    for a in range(ptr.shape[0] - 1):
        if not rows[a] or ptr[a] == ptr[a + 1]:
            continue
        mk._cotangent_moments(lam[a], dm[a], weight, rank, l_start, prow, pcol, off, cw)
        mk._cotangent_moments(dlam[a], moments[a], weight, rank, l_start, prow, pcol, off, cw2)
        cw += cw2
        for p in range(ptr[a], ptr[a + 1]):
            e, s = pair[p], sign[p]
            c0 = element[p] * n_ang
            gx = gy = gz = 0.0
            for nn in range(n_ang):
                for k in range(n_mono):
                    c, j = cw[c0 + nn, k], jac[p, nn, k]
                    gx += c * j[0]
                    gy += c * j[1]
                    gz += c * j[2]
            h = hmat[p]
            wx, wy, wz = w[e, 0], w[e, 1], w[e, 2]
            out[e, 0] += s * gx + h[0] * wx + h[3] * wy + h[4] * wz
            out[e, 1] += s * gy + h[3] * wx + h[1] * wy + h[5] * wz
            out[e, 2] += s * gz + h[4] * wx + h[5] * wy + h[2] * wz


@_jit(parallel=False)
def _radial_linearise(i, j, vec, species, eta, mu, ratio, rc, kind, lam, rows, keep, g1, coef):  # noqa: E501, pragma: no cover
    """The pairs within ``r_cut`` that touch ``rows`` (marked in ``keep``), linearised.

    ``g1 (E, n_r)``: the G2 derivatives; ``coef (E, 5)``: ``r̂``, ``ψ'/r`` and ``ψ''`` with
    ``ψ = Σ_k (Λ_i + Λ_j) g_k``.
    """
    n_r = eta.shape[0]
    e_, g2 = np.empty(n_r), np.empty(n_r)
    for e in range(i.shape[0]):
        a, b = i[e], j[e]
        if not (rows[a] or rows[b]):
            continue
        r = math.sqrt(vec[e, 0] ** 2 + vec[e, 1] ** 2 + vec[e, 2] ** 2)
        if r >= rc:
            continue
        keep[e] = True
        row = g1[e]
        mk._radial_row(r, eta, mu, ratio, rc, kind, e_, row, row, g2, 2)
        oa, ob = species[b] * n_r, species[a] * n_r
        d1 = d2 = 0.0
        for k in range(n_r):
            c = lam[a, oa + k] + lam[b, ob + k]
            d1 += c * row[k]
            d2 += c * g2[k]
        inv = 1.0 / r
        for x in range(3):
            coef[e, x] = vec[e, x] * inv
        coef[e, 3], coef[e, 4] = d1 * inv, d2


@_jit(parallel=False)
def _radial_jvp(i, j, species, keep, g1, coef, rows, w, out):  # pragma: no cover
    """``out[a, k] += g_k'(r) (r̂·w_e)`` at both ends ``a`` in ``rows`` of each kept pair."""
    n_r = g1.shape[1]
    for e in range(i.shape[0]):
        if not keep[e]:
            continue
        a, b = i[e], j[e]
        t = coef[e, 0] * w[e, 0] + coef[e, 1] * w[e, 1] + coef[e, 2] * w[e, 2]
        if rows[a]:
            oa = species[b] * n_r
            for k in range(n_r):
                out[a, oa + k] += g1[e, k] * t
        if rows[b]:
            ob = species[a] * n_r
            for k in range(n_r):
                out[b, ob + k] += g1[e, k] * t


@_jit(parallel=False)
def _radial_hvp(i, j, species, keep, g1, coef, dlam, w, out):  # pragma: no cover
    """``out[e] += ψ'' t r̂ + ψ'/r (w − t r̂) + χ' r̂`` (``t = r̂·w``, ``χ = Σ_k δΛ g_k``)."""
    n_r = g1.shape[1]
    for e in range(i.shape[0]):
        if not keep[e]:
            continue
        a, b = i[e], j[e]
        oa, ob = species[b] * n_r, species[a] * n_r
        c1 = 0.0
        for k in range(n_r):
            c1 += (dlam[a, oa + k] + dlam[b, ob + k]) * g1[e, k]
        t = coef[e, 0] * w[e, 0] + coef[e, 1] * w[e, 1] + coef[e, 2] * w[e, 2]
        s = coef[e, 3]
        q = (coef[e, 4] - s) * t + c1
        for x in range(3):
            out[e, x] += q * coef[e, x] + s * w[e, x]


class LinearisedMoments:
    """A :class:`~atomistic.mlip.moment_autograd.MomentState` linearised at one cotangent.

    Args:
        state: the descriptor at the current pairs.
        lam: ``(n, D)`` the cotangent ``Λ`` the products are taken for.
        rows: ``(n,)`` bool, the atoms whose list entries are linearised (``Λ`` and ``δΛ``
            must vanish outside them).
    """

    def __init__(self, state, lam: np.ndarray, rows: np.ndarray) -> None:
        self.state = state
        self.lam = np.ascontiguousarray(lam, dtype=np.float64)
        self.rows = np.ascontiguousarray(rows, dtype=np.bool_)
        plan = state.plan
        nnz = state.angular[1].shape[0]
        n_ang, n_mono = plan.angular_eta.shape[0], plan.exponents.shape[0]
        self.jac = np.zeros((nnz, n_ang, n_mono, 3))
        self.hmat = np.zeros((nnz, 6))
        self._dm = np.zeros(state.moments.shape)
        _linearise(*state._angular(), state.moments, self.lam, self.rows, self.jac, self.hmat)
        n_pairs = state.i.shape[0]
        self.keep = np.zeros(n_pairs, dtype=np.bool_)
        self.g1 = np.zeros((n_pairs, plan.radial_eta.shape[0]))
        self.coef = np.zeros((n_pairs, 5))
        radial = (*state._radial(), self.lam, self.rows, self.keep, self.g1, self.coef)
        _radial_linearise(*radial)

    @staticmethod
    def nbytes(state) -> int:
        """Bytes the linearisation of ``state`` keeps (``J``, ``H`` and ``δM``)."""
        plan = state.plan
        per_entry = plan.angular_eta.shape[0] * plan.exponents.shape[0] * 3 + 6
        per_pair = plan.radial_eta.shape[0] + 6
        n_entries, n_pairs = state.angular[1].shape[0], state.i.shape[0]
        return 8 * (n_entries * per_entry + n_pairs * per_pair + state.moments.size)

    def jvp(self, w: np.ndarray) -> np.ndarray:
        """``(∂G/∂r) w`` ``(n, D)`` for pair tangents ``w`` ``(E, 3)`` (zero outside ``rows``).

        Keeps ``δM`` for the next :meth:`hvp`, which must take the same ``w``.
        """
        s = self.state
        out = np.zeros(s.features.shape)
        _radial_jvp(s.i, s.j, s.species, self.keep, self.g1, self.coef, self.rows, w, out)
        _jvp(*s._angular(), self.jac, s.moments, self.rows, w, out, self._dm)
        return out

    def hvp(self, w: np.ndarray, dlam: np.ndarray) -> np.ndarray:
        """``(∂²(Λ·G)/∂r²) w + ∂(δΛ·G)/∂r`` ``(E, 3)``, after :meth:`jvp` of the same ``w``."""
        s = self.state
        out = np.zeros((s.i.shape[0], 3))
        dlam = np.ascontiguousarray(dlam, dtype=np.float64)
        _radial_hvp(s.i, s.j, s.species, self.keep, self.g1, self.coef, dlam, w, out)
        kept = (self.jac, self.hmat, s.moments, self.lam, dlam, self._dm, self.rows)
        _hvp(*s._angular(), *kept, w, out)
        return out
