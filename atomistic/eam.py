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
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from atomistic.neighbours import Graph

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


def _spline(table: torch.Tensor, which: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Evaluate LAMMPS cubic tables.

    Args:
        table: ``(k, n, 4)`` coefficients.
        which: ``(E,)`` table index per entry.
        x: ``(E,)`` abscissa in units of the knot spacing (``r/Δr`` or ``ρ/Δρ``).

    Returns:
        values ``(E,)``. As in LAMMPS, the local coordinate is clamped to ≤ 1 on the last
        segment, and below the first knot segment 0 is extrapolated.
    """
    n = table.shape[1]
    m = torch.clamp(torch.floor(x.detach()).to(torch.int64), min=0, max=n - 2)
    p = torch.clamp(x - m.to(x.dtype), max=1.0)
    c = table[which, m]
    return ((c[:, 0] * p + c[:, 1]) * p + c[:, 2]) * p + c[:, 3]


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
    """

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

        self.register_buffer("frho", coeffs(frho))
        self.register_buffer("rhor", coeffs(rhor))
        self.register_buffer("z2r", coeffs(z2r))
        last = self.frho[:, -2]  # segment ending at ρ_max; dF/dp at p = 1, per Δρ
        self.register_buffer(
            "frho_end_slope", (3.0 * last[:, 0] + 2.0 * last[:, 1] + last[:, 2]) / self.drho
        )

    @classmethod
    def from_file(
        cls, path: str | Path, *, format: str | None = None, elements=None
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
        path = _resolve(path)
        fmt = format or ("fs" if path.name.endswith(".fs") else "alloy")
        if fmt not in ("alloy", "fs"):
            raise ValueError(f"EAM format {fmt!r} unknown; allowed: alloy, fs")
        header, tok = _tokens(path)
        try:
            head = header[0].split()
            n_el = int(head[0])
            names = tuple(head[1 : 1 + n_el])
            nrho_s, drho_s, nr_s, dr_s, cut_s = header[1].split()[:5]
            nrho, drho, nr, dr, cut = int(nrho_s), float(drho_s), int(nr_s), float(dr_s), float(cut_s)
        except (IndexError, ValueError) as err:
            raise EAMFileError(f"{path}: bad header lines 4-5 ({err})") from None
        if len(names) != n_el:
            raise EAMFileError(f"{path}: line 4 names {len(names)} elements, expected {n_el}")
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
        if elements is not None:
            missing = [e for e in elements if e not in names]
            if missing:
                raise ValueError(
                    f"{path}: element(s) {', '.join(missing)} not in file; it has {', '.join(names)}"
                )
        return cls(
            elements=names,
            frho=np.array(frho),
            rhor=np.array(rhor),
            z2r=np.array(z2r),
            drho=drho,
            dr=dr,
            cutoff=cut,
            finnis_sinclair=fmt == "fs",
            source=str(path),
            masses=tuple(masses),
            lattice_constants=tuple(alat),
            lattice_types=tuple(ltype),
        )

    def _pair_table(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        hi, lo = torch.maximum(a, b), torch.minimum(a, b)
        return hi * (hi + 1) // 2 + lo

    def _density_table(self, centre: torch.Tensor, neighbour: torch.Tensor) -> torch.Tensor:
        if self.finnis_sinclair:
            return neighbour * len(self.elements) + centre
        return neighbour

    def forward(self, graph: Graph) -> torch.Tensor:
        """Site energies ``(n,)`` in eV."""
        r2 = (graph.vectors * graph.vectors).sum(dim=1)
        keep = r2 < self.cutoff * self.cutoff
        i, j, r2 = graph.i[keep], graph.j[keep], r2[keep]
        r = torch.sqrt(r2)
        x = r / self.dr
        si, sj = graph.species[i], graph.species[j]
        rho = torch.zeros(graph.n_atoms, dtype=r.dtype, device=r.device)
        rho = rho.index_add(0, i, _spline(self.rhor, self._density_table(si, sj), x))
        rho = rho.index_add(0, j, _spline(self.rhor, self._density_table(sj, si), x))
        phi = _spline(self.z2r, self._pair_table(si, sj), x) / r
        pair = torch.zeros_like(rho).index_add(0, i, 0.5 * phi).index_add(0, j, 0.5 * phi)
        return self._embedding(graph.species, rho) + pair

    def _embedding(self, species: torch.Tensor, rho: torch.Tensor) -> torch.Tensor:
        f = _spline(self.frho, species, rho / self.drho)
        # LAMMPS continues F linearly past the table with the slope at ρ_max.
        over = torch.clamp(rho - self.rhomax, min=0.0)
        return f + self.frho_end_slope[species] * over


def _resolve(path: str | Path) -> Path:
    p = Path(path)
    if p.exists():
        return p
    if p.parent == Path("."):
        from atomistic.oracles import lammps_potentials_dir

        shipped = lammps_potentials_dir() / p.name
        if shipped.exists():
            return shipped
    raise FileNotFoundError(f"EAM potential file not found: {path}")
