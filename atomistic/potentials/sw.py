"""Stillinger–Weber potential from LAMMPS ``.sw`` files, as LAMMPS ``pair_style sw`` computes it.

Energy (LAMMPS ``pair_sw.cpp``)::

    E = Σ_{i<j} φ2(r_ij) + Σ_i Σ_{j<k} φ3(r_ij, r_ik, θ_jik)

    φ2(r)  = A ε [B (σ/r)^p − (σ/r)^q] exp(σ / (r − aσ))                 (r < aσ)
    φ3     = λ ε (cos θ_jik − cos θ0)² exp(γσ_ij/(r_ij − aσ_ij)) exp(γσ_ik/(r_ik − aσ_ik))

Parameters of the two-body term and of the radial factors of the three-body term come from
the ``(i, j, j)`` (and ``(i, k, k)``) entries; ``λ``, ``ε`` and ``cos θ0`` of the angular term
from the ``(i, j, k)`` entry. A pair ``i–j`` is a neighbour of ``i`` when ``r_ij`` is below the
cutoff of the ``(i, j, j)`` entry: ``aσ``, shortened by LAMMPS's ``tol`` rule when ``tol > 0``
(``aσ + γσ/ln tol`` for ``γ < 1``, else ``aσ + σ/ln tol``, with ``tol`` capped at 0.01).

Site energies: each two-body term is split half to ``i`` and half to ``j``; each three-body
term goes entirely to its centre atom ``i``. (LAMMPS's per-atom energies give a third of a
three-body term to each of ``i, j, k``; totals, forces and virials are the same.) Files whose
two-body entries are not symmetric (``(i,j,j)`` ≠ ``(j,i,i)``) give ``ε_i = ½ Σ_j φ2_ijj``,
so the pair energy is the mean of the two entries; angular entries that differ between
``(i,j,k)`` and ``(i,k,j)`` are averaged likewise. LAMMPS's result depends on atom ordering in
both cases; every file it ships is symmetric, where the two agree exactly.

The file format: ``#`` starts a comment; an entry is 14 whitespace-separated fields that may
span lines: ``el1 el2 el3 epsilon sigma a lambda gamma costheta0 A B p q tol``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from atomistic.neighbours import Graph

__all__ = ["StillingerWeber", "SWEntry", "read_sw_file"]

_FIELDS = ("epsilon", "sigma", "a", "lambda_", "gamma", "costheta0", "A", "B", "p", "q", "tol")
_N_PER_ENTRY = 3 + len(_FIELDS)

# a pair closer to the singular point r = aσ than this fraction of aσ is treated as outside:
# there exp(γσ/(r − aσ)) < exp(−1e6·γσ/(aσ)), which is zero in any floating-point format
_SINGULAR_GUARD = 1e-6

# columns of StillingerWeber.pair_params
_AEPS, _B, _SIGMA, _P, _Q, _CUT, _NCUT, _SGAMMA = range(8)


@dataclass(frozen=True)
class SWEntry:
    """One ``(el1, el2, el3)`` entry of a ``.sw`` file (energies in eV, lengths in Å)."""

    epsilon: float
    sigma: float
    a: float
    lambda_: float
    gamma: float
    costheta0: float
    A: float
    B: float
    p: float
    q: float
    tol: float = 0.0

    @property
    def cut(self) -> float:
        """``aσ``, where the exponential factors vanish."""
        return self.a * self.sigma

    @property
    def neighbour_cut(self) -> float:
        """The radius within which LAMMPS treats a pair as interacting (``tol`` rule)."""
        r = self.cut
        if self.tol > 0.0:
            tol = min(self.tol, 0.01)
            r += (self.gamma * self.sigma if self.gamma < 1.0 else self.sigma) / math.log(tol)
        return r


def read_sw_file(path: str | Path) -> list[tuple[tuple[str, str, str], SWEntry]]:
    """Read every entry of a LAMMPS ``.sw`` file, in file order.

    Raises:
        FileNotFoundError: the file does not exist (the message names it).
        ValueError: malformed content, non-metal units or a negative parameter; the message
            names the file and the entry.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Stillinger-Weber potential file not found: {path}")
    text = path.read_text()
    lines = text.splitlines()
    if lines:
        m = re.search(r"UNITS:\s*(\S+)", lines[0])
        if m and m.group(1) != "metal":
            raise ValueError(
                f"{path}: Stillinger-Weber file is in '{m.group(1)}' units; only 'metal' "
                "(eV, Å) is supported"
            )
    tokens: list[str] = []
    for line in lines:
        tokens.extend(line.split("#", 1)[0].split())
    if len(tokens) % _N_PER_ENTRY:
        raise ValueError(
            f"{path}: {len(tokens)} fields do not make whole Stillinger-Weber entries of "
            f"{_N_PER_ENTRY} fields (el1 el2 el3 epsilon sigma a lambda gamma costheta0 "
            "A B p q tol)"
        )
    entries = []
    for start in range(0, len(tokens), _N_PER_ENTRY):
        chunk = tokens[start : start + _N_PER_ENTRY]
        key = (chunk[0], chunk[1], chunk[2])
        label = " ".join(key)
        try:
            values = [float(t) for t in chunk[3:]]
        except ValueError as exc:
            raise ValueError(f"{path}: entry '{label}': non-numeric parameter ({exc})") from None
        for name, val in zip(_FIELDS, values, strict=True):
            if not math.isfinite(val):
                raise ValueError(f"{path}: entry '{label}': {name.rstrip('_')} is {val}")
            if name != "costheta0" and val < 0.0:
                raise ValueError(
                    f"{path}: entry '{label}': illegal Stillinger-Weber parameter "
                    f"{name.rstrip('_')} = {val} (must be >= 0)"
                )
        entries.append((key, SWEntry(*values)))
    return entries


class StillingerWeber(torch.nn.Module):
    """Stillinger–Weber site energies, identical to LAMMPS ``pair_style sw``.

    Args:
        entries: parameters for every ordered triplet of ``elements``.
        elements: chemical symbols in the order used by ``Graph.species``.
        source: name used in messages (the file path when read from a file).

    Attributes:
        cutoff: the largest neighbour cutoff of the ``(i, j, j)`` entries, in Å.
        elements, source: as given.
        entries: the ``{(el1, el2, el3): SWEntry}`` used.
        pair_params: buffer ``(n_el², 8)``, row ``i·n_el + j`` from entry ``(i, j, j)``:
            ``Aε, B, σ, p, q, aσ, neighbour cutoff, γσ``.
        triplet_params: buffer ``(n_el³, 2)``, row ``(i·n_el + j)·n_el + k``: ``λε, cos θ0``.
    """

    #: ``ε_i`` (pairs and angles centred on ``i``) uses only the pairs that contain ``i``
    site_local = True

    # buffers (registered in ``__init__``)
    pair_params: torch.Tensor
    triplet_params: torch.Tensor

    def __init__(
        self,
        *,
        entries: Mapping[tuple[str, str, str], SWEntry],
        elements: Sequence[str],
        source: str = "StillingerWeber",
    ) -> None:
        super().__init__()
        elements = tuple(elements)
        if not elements or len(set(elements)) != len(elements):
            raise ValueError(f"{source}: elements must be distinct and non-empty, got {elements}")
        self.elements = elements
        self.source = str(source)
        used: dict[tuple[str, str, str], SWEntry] = {}
        for a in elements:
            for b in elements:
                for c in elements:
                    if (a, b, c) not in entries:
                        raise ValueError(
                            f"{self.source}: Stillinger-Weber parameters are missing the "
                            f"entry '{a} {b} {c}'"
                        )
                    used[(a, b, c)] = entries[(a, b, c)]
        self.entries = used

        # per ordered species pair (i, j), from the (i, j, j) entry, flattened as i*n + j
        pair_cols = [
            [e.A * e.epsilon, e.B, e.sigma, e.p, e.q, e.cut, e.neighbour_cut, e.sigma * e.gamma]
            for e in (used[(a, b, b)] for a in elements for b in elements)
        ]
        self.register_buffer("pair_params", torch.tensor(pair_cols, dtype=torch.float64))
        # per ordered triplet (i, j, k), flattened as (i*n + j)*n + k
        triplet_cols = [
            [used[(a, b, c)].lambda_ * used[(a, b, c)].epsilon, used[(a, b, c)].costheta0]
            for a in elements
            for b in elements
            for c in elements
        ]
        self.register_buffer("triplet_params", torch.tensor(triplet_cols, dtype=torch.float64))
        n = len(elements)
        t = self.triplet_params.reshape(n, n, n, 2)
        self._angular_symmetric = bool(torch.equal(t, t.transpose(1, 2)))
        cutoff = float(self.pair_params[:, _NCUT].max())
        if not cutoff > 0.0:
            raise ValueError(f"{self.source}: all Stillinger-Weber cutoffs a*sigma are zero")
        self.cutoff = cutoff

    @classmethod
    def from_file(cls, path: str | Path, elements: Sequence[str] | None = None) -> StillingerWeber:
        """Read a LAMMPS ``.sw`` file.

        Args:
            path: the file.
            elements: symbols to use, in ``Graph.species`` order (like the element list of
                ``pair_coeff * * file.sw ...``); None takes every element of the file in order
                of first appearance.

        Raises:
            FileNotFoundError: no such file.
            ValueError: an element is not in the file, an entry is missing or duplicated, or
                the file is malformed; the message names the file.
        """
        path = Path(path)
        raw = read_sw_file(path)
        in_file: list[str] = []
        for key, _ in raw:
            for el in key:
                if el not in in_file:
                    in_file.append(el)
        if elements is None:
            elements = tuple(in_file)
        else:
            elements = (elements,) if isinstance(elements, str) else tuple(elements)
            for el in elements:
                if el not in in_file:
                    raise ValueError(
                        f"{path}: element '{el}' is not in this Stillinger-Weber file "
                        f"(it has {', '.join(in_file) or 'no entries'})"
                    )
        wanted = set(elements)
        entries: dict[tuple[str, str, str], SWEntry] = {}
        for key, entry in raw:
            if set(key) <= wanted:
                if key in entries:
                    raise ValueError(f"{path}: duplicate Stillinger-Weber entry '{' '.join(key)}'")
                entries[key] = entry
        return cls(entries=entries, elements=elements, source=str(path))

    def extra_repr(self) -> str:
        """The source, the elements and the cutoff, for ``repr``."""
        return f"{self.source}, elements={self.elements}, cutoff={self.cutoff:.6g}"

    def forward(self, graph: Graph) -> torch.Tensor:
        """Site energies ``(n,)`` in eV."""
        vh = graph.vectors
        dtype, device = vh.dtype, vh.device
        n_el = len(self.elements)
        pair_params = self.pair_params.to(dtype)
        rh = torch.linalg.vector_norm(vh, dim=-1)

        # directed edges i→j inside the (i,j,j) neighbour cutoff, grouped by centre i
        if n_el == 1:
            keep = rh.detach() < pair_params[0, _NCUT]
            h = torch.nonzero(keep).squeeze(1)
            ci = torch.cat([graph.i[h], graph.j[h]])
            cj = torch.cat([graph.j[h], graph.i[h]])
            vk, rk = vh.index_select(0, h), rh.index_select(0, h)
            v = torch.cat([vk, -vk])
            r = torch.cat([rk, rk])
            params = pair_params[0]  # (8,), broadcast over the edges
            pair = None
        else:
            fi, fj, fv = graph.full()
            si_all, sj_all = graph.species[fi], graph.species[fj]
            pair_all = si_all * n_el + sj_all
            r_all = torch.cat([rh, rh])
            keep = r_all.detach() < pair_params[pair_all, _NCUT]
            h = torch.nonzero(keep).squeeze(1)
            ci, cj, pair = fi[h], fj[h], pair_all[h]
            v, r = fv.index_select(0, h), r_all.index_select(0, h)
        ci, order = torch.sort(ci, stable=True)
        cj, v, r = cj[order], v.index_select(0, order), r.index_select(0, order)
        if pair is not None:
            pair = pair[order]
            params = pair_params[pair].T  # (8, E): one row per parameter

        # radial factors; double where keeps r → aσ free of inf/NaN in every derivative
        sigma, cut = params[_SIGMA], params[_CUT]
        d = r - cut
        valid = d < -_SINGULAR_GUARD * cut
        d_safe = torch.where(valid, d, -torch.ones_like(d))
        zero = torch.zeros_like(d)
        exp2 = torch.where(valid, torch.exp(sigma / d_safe), zero)
        exp3 = torch.where(valid, torch.exp(params[_SGAMMA] / d_safe), zero)

        # two-body: ε_i += ½ φ2_(i,j,j)(r_ij) over the directed edges (each pair twice)
        sr = sigma / r
        phi2 = params[_AEPS] * (params[_B] * sr ** params[_P] - sr ** params[_Q]) * exp2
        energies = torch.zeros(graph.n_atoms, dtype=dtype, device=device)
        energies = energies.index_add(0, ci, 0.5 * phi2)

        # three-body: every unordered pair {j, k} of neighbours of each centre, once
        n_edges = ci.shape[0]
        counts = torch.bincount(ci, minlength=graph.n_atoms)
        first_of_centre = torch.cumsum(counts, 0) - counts
        local = torch.arange(n_edges, device=device) - first_of_centre[ci]
        n_later = counts[ci] - 1 - local  # edges after this one within its centre
        a = torch.repeat_interleave(torch.arange(n_edges, device=device), n_later)
        if a.shape[0] == 0:
            return energies
        start = torch.cumsum(n_later, 0) - n_later
        rank = torch.arange(a.shape[0], device=device) - torch.repeat_interleave(start, n_later)
        b = a + 1 + rank  # the partners of edge a: the later edges of the same centre

        u = v / r[:, None]
        cos = (u.index_select(0, a) * u.index_select(0, b)).sum(-1)
        triplet_params = self.triplet_params.to(dtype)
        if n_el == 1:
            lam, cos0 = triplet_params[0]
            ang = lam * (cos - cos0) ** 2
        else:
            sc, sj = graph.species[ci[a]], graph.species[cj]
            t = (sc * n_el + sj[a]) * n_el + sj[b]
            ang = triplet_params[t, 0] * (cos - triplet_params[t, 1]) ** 2
            if not self._angular_symmetric:
                t = (sc * n_el + sj[b]) * n_el + sj[a]
                ang = 0.5 * (ang + triplet_params[t, 0] * (cos - triplet_params[t, 1]) ** 2)
        e3 = ang * exp3.index_select(0, a) * exp3.index_select(0, b)
        return energies.index_add(0, ci[a], e3)
