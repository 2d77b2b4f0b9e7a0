"""Embedded-atom method from LAMMPS tabulated files, reproducing ``pair_style eam/alloy|eam/fs``.

Site energy of atom ``i`` (element ``a``), neighbours ``j`` (element ``b``) within ``r_cut``:

    ε_i = F_a(ρ_i) + ½ Σ_j φ_ab(r_ij),        ρ_i = Σ_j ρ_{b→a}(r_ij)

==================  ==============================================================
symbol              code
==================  ==============================================================
``F_a``             ``_spline(self.frho, a, ρ/Δρ)`` (+ linear beyond ``ρ_max`` as LAMMPS)
``ρ_{b→a}``         alloy: density table of ``b``; fs: table ``(b, a)`` of the file
``r φ_ab``          ``_spline(self.z2r, pair(a, b), r/Δr)``, then ``/ r``
==================  ==============================================================

Tables are interpolated with LAMMPS's own piecewise cubic (five-point derivative estimates at
the knots, ``PairEAM::interpolate``), so energies and forces agree with LAMMPS to round-off.
That interpolant is C¹: second derivatives (Cauchy–Born tangents, Hessians) are exact within a
table segment and jump at the knots.

On the CPU in ``float64`` the site energies and their first two derivatives come from compiled
kernels (:mod:`atomistic.potentials.eam_kernels`, numba); CUDA, ``float32`` and
``MULTISCALE_TORCH_ONLY=1`` (or ``EAM.compiled = False``) use the torch code below. Both give
the same numbers to round-off and the same autograd behaviour up to second derivatives.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from atomistic.neighbours import Graph
from atomistic.potentials.files import find_potential_file

__all__ = ["EAM", "EAMFileError", "lammps_spline_coefficients"]


class EAMFileError(ValueError):
    """A tabulated EAM file is malformed."""


def lammps_spline_coefficients(f: np.ndarray) -> np.ndarray:
    """Cubic coefficients ``(n, 4)`` = ``[c3, c4, c5, c6]`` per knot, as ``PairEAM::interpolate``.

    On segment ``m`` with local coordinate ``p ∈ [0, 1]`` the value is
    ``((c3 p + c4) p + c5) p + c6``. Knot slopes ``c5`` (per knot spacing) use one-sided or
    centred differences at the ends and the five-point stencil inside.
    """
    f = np.asarray(f, dtype=np.float64)
    n = f.size
    if n < 5:
        raise EAMFileError(f"a table needs at least 5 points, got {n}")
    s = np.empty(n)
    s[0] = f[1] - f[0]
    s[1] = 0.5 * (f[2] - f[0])
    s[n - 2] = 0.5 * (f[n - 1] - f[n - 3])
    s[n - 1] = f[n - 1] - f[n - 2]
    s[2 : n - 2] = ((f[0 : n - 4] - f[4:n]) + 8.0 * (f[3 : n - 1] - f[1 : n - 3])) / 12.0
    c = np.zeros((n, 4))
    c[:, 3] = f
    c[:, 2] = s
    df = f[1:] - f[:-1]
    c[:-1, 1] = 3.0 * df - 2.0 * s[:-1] - s[1:]
    c[:-1, 0] = s[:-1] + s[1:] - 2.0 * df
    return c


def _locate(n: int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Segment ``m`` and local coordinate ``p`` as LAMMPS: ``p ≤ 1`` on the last segment."""
    m = torch.clamp(torch.floor(x).to(torch.int64), min=0, max=n - 2)
    p = x - m.to(x.dtype)
    beyond = p > 1.0
    return m, torch.clamp(p, max=1.0), beyond


class _SplineSlope(torch.autograd.Function):
    """``dv/dx`` of :class:`_Spline`; its own derivative makes the tangent exact."""

    # ``ctx`` is torch's C context object, typed ``Any`` as in ``torch.autograd.Function``
    @staticmethod
    def forward(
        ctx: Any, table: torch.Tensor, which: torch.Tensor, x: torch.Tensor
    ) -> torch.Tensor:
        m, p, beyond = _locate(table.shape[1], x)
        c = table[which, m]
        pe = p[:, None]
        d = (3.0 * c[..., 0] * pe + 2.0 * c[..., 1]) * pe + c[..., 2]
        dd = 6.0 * c[..., 0] * pe + 2.0 * c[..., 1]
        z = torch.zeros((), dtype=x.dtype, device=x.device)
        ctx.save_for_backward(torch.where(beyond[:, None], z, dd))
        return torch.where(beyond[:, None], z, d)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[None, None, torch.Tensor]:
        (dd,) = ctx.saved_tensors
        return None, None, (g * dd).sum(dim=1)


class _Spline(torch.autograd.Function):
    """LAMMPS cubic tables, value and slope in one pass.

    ``table`` is ``(T, n, K, 4)``: ``K`` tables evaluated together at the same abscissa.
    Returns ``(E, K)`` values; the slope is kept for the backward pass, and recomputed
    differentiably when a graph of the gradient is asked for (tangents, Hessian products).
    """

    @staticmethod
    def forward(
        ctx: Any, table: torch.Tensor, which: torch.Tensor, x: torch.Tensor
    ) -> torch.Tensor:
        m, p, beyond = _locate(table.shape[1], x)
        c = table[which, m]
        pe = p[:, None]
        v = ((c[..., 0] * pe + c[..., 1]) * pe + c[..., 2]) * pe + c[..., 3]
        d = (3.0 * c[..., 0] * pe + 2.0 * c[..., 1]) * pe + c[..., 2]
        d = torch.where(beyond[:, None], torch.zeros((), dtype=x.dtype, device=x.device), d)
        ctx.save_for_backward(table, which, x, d)
        return v

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[None, None, torch.Tensor]:
        table, which, x, d = ctx.saved_tensors
        if torch.is_grad_enabled():
            d = _SplineSlope.apply(table, which, x)
        return None, None, (g * d).sum(dim=1)


def _spline(table: torch.Tensor, which: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Evaluate ``K`` LAMMPS cubic tables ``(T, n, K, 4)`` at ``x`` (in knot spacings).

    Returns ``(E, K)``. As in LAMMPS, the local coordinate is clamped to ≤ 1 on the last
    segment, and below the first knot segment 0 is extrapolated.
    """
    return _Spline.apply(table, which, x)


def _spline_derivatives(
    table: torch.Tensor, which: torch.Tensor, x: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Value, slope and curvature (per knot spacing, ``(E, K)`` each) of :func:`_spline`.

    No autograd: the analytic Hessian of :meth:`EAM.hessian_operator` uses it. Slope and
    curvature are 0 past the last knot, as in :class:`_Spline` and :class:`_SplineSlope`.
    """
    m, p, beyond = _locate(table.shape[1], x)
    c = table[which, m]
    pe = p[:, None]
    v = ((c[..., 0] * pe + c[..., 1]) * pe + c[..., 2]) * pe + c[..., 3]
    d = (3.0 * c[..., 0] * pe + 2.0 * c[..., 1]) * pe + c[..., 2]
    dd = 6.0 * c[..., 0] * pe + 2.0 * c[..., 1]
    zero = torch.zeros((), dtype=x.dtype, device=x.device)
    return v, torch.where(beyond[:, None], zero, d), torch.where(beyond[:, None], zero, dd)


def _tokens(path: Path) -> tuple[list[str], list[str]]:
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        raise FileNotFoundError(f"EAM potential file not found: {path}") from None
    if len(lines) < 6:
        raise EAMFileError(f"{path}: too short for an EAM setfl file")
    return lines[3:5], " ".join(lines[5:]).split()


class EAM(torch.nn.Module):
    """Tabulated EAM potential (``eam/alloy`` setfl or ``eam/fs`` Finnis–Sinclair files).

    Build with :meth:`from_file`. Attributes ``elements``, ``cutoff`` (Å), ``masses`` (amu),
    ``lattice_constants`` (Å) and ``lattice_types`` come from the file.

    Args:
        elements: chemical symbols, in the order used by ``Graph.species``.
        frho: ``F(ρ)`` tables, one row per element, on the grid ``k·drho``, eV.
        rhor: density tables on the grid ``k·dr``: one row per element (alloy) or per
            ordered element pair (fs).
        z2r: ``r·φ(r)`` tables (eV·Å) on the grid ``k·dr``, one row per unordered element
            pair ``(a, b)``, ``b ≤ a``, in the file's order.
        drho: spacing of the ``ρ`` grid.
        dr: spacing of the ``r`` grid, Å.
        cutoff: interaction range in Å.
        finnis_sinclair: the density tables are those of an ``eam/fs`` file.
        source: name used in messages (the file path when read from a file).
        masses: atomic masses in amu, per element.
        lattice_constants: lattice constants in Å, per element.
        lattice_types: lattice names, per element.
    """

    #: ``ε_i = F(Σ_j ρ(r_ij)) + ½ Σ_j φ(r_ij)`` uses only the pairs that contain ``i``
    site_local = True
    #: use the compiled kernels where they apply (CPU, float64); False forces the torch path
    compiled = True

    # buffers (registered in ``__init__``)
    pair_tables: torch.Tensor
    frho: torch.Tensor
    frho_end_slope: torch.Tensor

    def __init__(
        self,
        *,
        elements: tuple[str, ...],
        frho: np.ndarray,
        rhor: np.ndarray,
        z2r: np.ndarray,
        drho: float,
        dr: float,
        cutoff: float,
        finnis_sinclair: bool,
        source: str = "EAM",
        masses: tuple[float, ...] = (),
        lattice_constants: tuple[float, ...] = (),
        lattice_types: tuple[str, ...] = (),
    ) -> None:
        super().__init__()
        self.elements = tuple(elements)
        self.cutoff = float(cutoff)
        self.drho = float(drho)
        self.dr = float(dr)
        self.rhomax = (frho.shape[1] - 1) * self.drho
        self.finnis_sinclair = finnis_sinclair
        self.source = source
        self.masses = tuple(masses)
        self.lattice_constants = tuple(lattice_constants)
        self.lattice_types = tuple(lattice_types)

        def coeffs(tables: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.stack([lammps_spline_coefficients(t) for t in tables]))

        n_el = len(self.elements)
        rho_c, z2r_c = coeffs(rhor), coeffs(z2r)

        def density(centre: int, neighbour: int) -> torch.Tensor:
            return rho_c[neighbour * n_el + centre] if finnis_sinclair else rho_c[neighbour]

        def pair(a: int, b: int) -> torch.Tensor:
            hi, lo = max(a, b), min(a, b)
            return z2r_c[hi * (hi + 1) // 2 + lo]

        # One table per ordered species pair (a, b) = (centre i, neighbour j), K entries:
        # [ρ_{b→a}, ρ_{a→b}, r·φ_ab]; with one element ρ is shared: [ρ, r·φ].
        tables = []
        for a in range(n_el):
            for b in range(n_el):
                k = (
                    [density(a, b), pair(a, b)]
                    if n_el == 1 and not finnis_sinclair
                    else [density(a, b), density(b, a), pair(a, b)]
                )
                tables.append(torch.stack(k, dim=1))
        self.register_buffer("pair_tables", torch.stack(tables))
        frho_c = coeffs(frho)
        self.register_buffer("frho", frho_c[:, :, None, :])
        last = frho_c[:, -2]  # segment ending at ρ_max; dF/dp at p = 1, per Δρ
        self.register_buffer(
            "frho_end_slope", (3.0 * last[:, 0] + 2.0 * last[:, 1] + last[:, 2]) / self.drho
        )

    @classmethod
    def from_file(
        cls,
        path: str | Path,
        *,
        format: str | None = None,
        elements: Sequence[str] | None = None,
    ) -> EAM:
        """Read a LAMMPS ``eam/alloy`` (setfl) or ``eam/fs`` file.

        Args:
            path: the file; a bare name is also looked up in the potentials shipped with the
                ``lammps`` package.
            format: ``"alloy"`` or ``"fs"``; by default from the suffix (``.fs`` → fs).
            elements: optional subset of the file's elements to check for presence.

        Raises:
            FileNotFoundError: the file does not exist (the message names it).
            EAMFileError: the file is malformed.
            ValueError: an element of ``elements`` is not in the file.
        """
        path = find_potential_file(path)
        fmt = format or ("fs" if path.name.endswith(".fs") else "alloy")
        if fmt not in ("alloy", "fs"):
            raise ValueError(f"EAM format {fmt!r} unknown; allowed: alloy, fs")
        names, (nrho, drho, nr, dr, cut), tok = _header(path)
        frho, rhor, z2r, masses, alat, ltype = _tables(path, tok, len(names), nrho, nr, fmt)
        if elements is not None:
            missing = [e for e in elements if e not in names]
            if missing:
                raise ValueError(
                    f"{path}: element(s) {', '.join(missing)} not in file; "
                    f"it has {', '.join(names)}"
                )
        return cls(
            elements=names,
            frho=frho,
            rhor=rhor,
            z2r=z2r,
            drho=drho,
            dr=dr,
            cutoff=cut,
            finnis_sinclair=fmt == "fs",
            source=str(path),
            masses=tuple(masses),
            lattice_constants=tuple(alat),
            lattice_types=tuple(ltype),
        )

    def _pairs(
        self, graph: Graph, vectors: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(i, j, vectors, r, which)`` of the pairs shorter than the cutoff.

        ``which`` indexes :attr:`pair_tables` by the ordered species pair.
        """
        r = torch.linalg.vector_norm(vectors, dim=1)
        keep = r < self.cutoff
        i, j = graph.i, graph.j
        if not bool(keep.all()):
            idx = keep.nonzero()[:, 0]
            i, j, vectors, r = i[idx], j[idx], vectors[idx], r[idx]
        n_el = len(self.elements)
        which = graph.species[i] * n_el + graph.species[j] if n_el > 1 else torch.zeros_like(i)
        return i, j, vectors, r, which

    def forward(self, graph: Graph) -> torch.Tensor:
        """Site energies ``(n,)`` in eV."""
        kernels = self._kernels(graph)
        if kernels is not None:
            return kernels.site_energies(
                self.compiled_tables(),
                graph.i,
                graph.j,
                graph.species,
                graph.vectors,
                graph.n_atoms,
            )
        i, j, _, r, which = self._pairs(graph, graph.vectors)
        v = _spline(self.pair_tables, which, r * (1.0 / self.dr))
        rho_i, rho_j = (v[:, 0], v[:, 0]) if v.shape[1] == 2 else (v[:, 0], v[:, 1])
        half_phi = 0.5 * v[:, -1] / r
        zeros = torch.zeros(graph.n_atoms, dtype=r.dtype, device=r.device)
        rho = zeros.index_add(0, i, rho_i).index_add(0, j, rho_j)
        pair = zeros.index_add(0, i, half_phi).index_add(0, j, half_phi)
        return self._embedding(graph.species, rho) + pair

    def energy_forces(
        self, graph: Graph, *, per_atom_virial: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None] | None:
        """Site energies, forces and per-atom virials by the compiled kernels, no autograd.

        Returns ``(n,)`` energies, ``(n, 3)`` forces and, if asked, ``(n, 3, 3)`` per-atom
        virials (eV), or None where the kernels do not apply (then use autograd on
        :meth:`forward`). The same numbers as
        :func:`~atomistic.potentials.protocol.evaluate` on :meth:`forward`, to round-off.
        """
        src = graph.source
        if src is not None and graph._vectors is None:
            pos = src.positions
            ok = pos.dtype == torch.float64 and pos.device.type == "cpu" and pos.ndim == 2
            kernels = self._kernels(graph) if ok else None
        else:
            kernels = self._kernels(graph)
        if kernels is None:
            return None
        result: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None] = kernels.energy_forces(
            self.compiled_tables(), graph, virials=per_atom_virial
        )
        return result

    def _kernels(self, graph: Graph) -> Any:
        """The compiled kernels' module if they apply to ``graph``, else None (torch path)."""
        t = self.pair_tables
        src = graph.source
        v = src.positions if src is not None and graph._vectors is None else graph.vectors
        if not (self.compiled and v.ndim == 2 and v.dtype == t.dtype == torch.float64):
            return None
        if v.device.type != "cpu" or t.device.type != "cpu":
            return None
        try:
            from atomistic.potentials import eam_kernels
        except ImportError:  # numba missing: the torch path
            return None
        return eam_kernels if eam_kernels.compiled_wanted() else None

    def compiled_tables(self) -> Any:
        """The tables as NumPy arrays for :mod:`~atomistic.potentials.eam_kernels` (CPU)."""
        from atomistic.potentials.eam_kernels import EAMTables

        return EAMTables(
            pair=np.ascontiguousarray(self.pair_tables.numpy()),
            frho=np.ascontiguousarray(self.frho[:, :, 0, :].numpy()),
            end_slope=np.ascontiguousarray(self.frho_end_slope.numpy()),
            n_el=len(self.elements),
            inv_dr=1.0 / self.dr,
            inv_drho=1.0 / self.drho,
            rhomax=self.rhomax,
            cutoff=self.cutoff,
        )

    def hessian_operator(
        self, graph: Graph, weights: torch.Tensor
    ) -> Callable[[torch.Tensor], torch.Tensor]:
        """``v (n, 3) -> (∂²E/∂x²) v`` of ``E = Σ_i w_i ε_i`` at the graph's positions.

        The analytic Hessian of the weighted EAM energy, for Newton–Krylov solvers that ask
        for many products at one state: the per-pair and per-atom coefficients are computed
        here once, and each product is then two gathers and three ``index_add`` (on the CPU in
        ``float64``: compiled setup and two passes over the pairs per product,
        :func:`~atomistic.potentials.eam_kernels.hessian_operator`). With
        ``r_e = x_j − x_i`` the pair vector of pair ``e = (i, j)``, ``r̂_e`` its direction,
        ``ρ_e^i`` the density it gives atom ``i`` and ``δ_e = v_j − v_i``::

            A_e = w_i F'_i ρ_e^i' + w_j F'_j ρ_e^j' + ½ (w_i + w_j) φ'        (∂E/∂r_e = A_e r̂_e)
            B_e = the same with second derivatives of ρ and φ
            s_a = Σ_{e ∋ a} ρ_e^a' (r̂_e · δ_e),   c_a = w_a F''_a s_a
            y_e = [(B_e − A_e/r_e)(r̂_e · δ_e) + c_i ρ_e^i' + c_j ρ_e^j'] r̂_e + (A_e/r_e) δ_e
            (H v)_j += y_e,  (H v)_i −= y_e

        It equals the autograd Hessian of :meth:`forward` (the same piecewise cubics, exact
        within a table segment; ``tests/test_eam.py``).

        Args:
            graph: the atoms and their pairs (a half list, as :meth:`forward` takes).
            weights: ``(n,)`` weights ``w_i`` of the site energies.
        """
        kernels = self._kernels(graph)
        if kernels is not None:  # CPU float64: compiled setup and products, same numbers
            op: Callable[[torch.Tensor], torch.Tensor] = kernels.hessian_operator(
                self.compiled_tables(), graph, weights
            )
            return op
        with torch.no_grad():
            i, j, vec, r, which = self._pairs(graph, graph.vectors.detach())
            v, d, dd = _spline_derivatives(self.pair_tables, which, r * (1.0 / self.dr))
            ci, cj = (0, 0) if v.shape[1] == 2 else (0, 1)
            inv_dr, inv_r = 1.0 / self.dr, 1.0 / r
            rho_i, rho_j = v[:, ci], v[:, cj]
            drho_i, drho_j = d[:, ci] * inv_dr, d[:, cj] * inv_dr
            ddrho_i, ddrho_j = dd[:, ci] * inv_dr**2, dd[:, cj] * inv_dr**2
            z, dz, ddz = v[:, -1], d[:, -1] * inv_dr, dd[:, -1] * inv_dr**2
            dphi = (dz - z * inv_r) * inv_r  # φ = z / r
            ddphi = (ddz - 2.0 * dphi) * inv_r
            zeros = torch.zeros(graph.n_atoms, dtype=r.dtype, device=r.device)
            rho = zeros.index_add(0, i, rho_i).index_add(0, j, rho_j)
            species = graph.species
            _, fd, fdd = _spline_derivatives(self.frho, species, rho * (1.0 / self.drho))
            over = (rho > self.rhomax).to(r.dtype)
            dF = fd[:, 0] / self.drho + self.frho_end_slope[species] * over
            ddF = fdd[:, 0] / self.drho**2
            w = weights.to(dtype=r.dtype)
            wdF, wddF = w * dF, w * ddF
            half_w = 0.5 * (w[i] + w[j])
            a = wdF[i] * drho_i + wdF[j] * drho_j + half_w * dphi
            b = wdF[i] * ddrho_i + wdF[j] * ddrho_j + half_w * ddphi
            rhat = vec * inv_r[:, None]
            a_r = a * inv_r
            b_a = b - a_r
            n = graph.n_atoms

        def apply(vectors: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                vectors = vectors.to(dtype=r.dtype, device=r.device)
                delta = vectors[j] - vectors[i]
                t = (rhat * delta).sum(dim=1)
                s = torch.zeros(n, dtype=r.dtype, device=r.device)
                s = s.index_add(0, i, drho_i * t).index_add(0, j, drho_j * t)
                c = wddF * s
                coef = b_a * t + c[i] * drho_i + c[j] * drho_j
                y = coef[:, None] * rhat + a_r[:, None] * delta
                out = torch.zeros((n, 3), dtype=r.dtype, device=r.device)
                # −(Σ_i y) + Σ_j y: index_add_ with alpha=-1 is several times slower
                return out.index_add_(0, i, y).neg_().index_add_(0, j, y)

        return apply

    def _embedding(self, species: torch.Tensor, rho: torch.Tensor) -> torch.Tensor:
        f = _spline(self.frho, species, rho * (1.0 / self.drho))[:, 0]
        # LAMMPS continues F linearly past the table with the slope at ρ_max.
        over = torch.clamp(rho - self.rhomax, min=0.0)
        return f + self.frho_end_slope[species] * over


def _header(path: Path) -> tuple[tuple[str, ...], tuple[int, float, int, float, float], list[str]]:
    """Element names, ``(nrho, drho, nr, dr, cutoff)`` and the tokens after the header."""
    header, tok = _tokens(path)
    try:
        head = header[0].split()
        n_el = int(head[0])
        names = tuple(head[1 : 1 + n_el])
        nrho_s, drho_s, nr_s, dr_s, cut_s = header[1].split()[:5]
        grid = (int(nrho_s), float(drho_s), int(nr_s), float(dr_s), float(cut_s))
    except (IndexError, ValueError) as err:
        raise EAMFileError(f"{path}: bad header lines 4-5 ({err})") from None
    if len(names) != n_el:
        raise EAMFileError(f"{path}: line 4 names {len(names)} elements, expected {n_el}")
    return names, grid, tok


def _tables(
    path: Path, tok: list[str], n_el: int, nrho: int, nr: int, fmt: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[float], list[float], list[str]]:
    """``F(ρ)``, ``ρ(r)``, ``r φ(r)`` tables and per-element mass, lattice constant, type."""
    pos = 0

    def take(k: int) -> np.ndarray:
        nonlocal pos
        if pos + k > len(tok):
            raise EAMFileError(f"{path}: file ends early (needs {pos + k} values)")
        out = np.array(tok[pos : pos + k], dtype=np.float64)
        pos += k
        return out

    frho, rhor, masses, alat, ltype = [], [], [], [], []
    try:
        for _ in range(n_el):
            masses.append(float(tok[pos + 1]))
            alat.append(float(tok[pos + 2]))
            ltype.append(tok[pos + 3])
            pos += 4
            frho.append(take(nrho))
            for _ in range(n_el if fmt == "fs" else 1):
                rhor.append(take(nr))
        z2r = [take(nr) for a in range(n_el) for _ in range(a + 1)]
    except (IndexError, ValueError) as err:
        raise EAMFileError(f"{path}: malformed tables ({err})") from None
    return np.array(frho), np.array(rhor), np.array(z2r), masses, alat, ltype
