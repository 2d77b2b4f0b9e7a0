"""What a case will need, estimated from its keys before any work, and refused beyond the machine.

==================  ==================================================================
quantity            estimate
==================  ==================================================================
atoms               ``n`` = number density × volume of the atoms (vacancy: the supercell;
                    coupled: the ball or slab cylinder to ``core + handshake + pad``;
                    reference: the whole domain)
neighbour pairs     ``n · ρ · (4/3) π r_c³`` (ordered pairs within the cutoff)
elements            ``k ∫ h(r)⁻ᵈ dV`` with the graded size ``h(r) = h_min`` up to the
                    atoms' reach, ``min(h_max, h_min + growth·(r − reach))`` beyond;
                    ``k = 6`` tetrahedra per cube in 3d, 2 triangles per square in 2.5d
memory              :data:`BYTES_BASELINE` + :data:`BYTES_PER_ATOM` · atoms +
                    :data:`BYTES_PER_PAIR` · pairs + :data:`BYTES_PER_ELEMENT` · elements
                    (:data:`BYTES_PER_PAIR_LAMMPS` per pair for a reference that LAMMPS
                    relaxes)
==================  ==================================================================

The per-item costs are round upper figures for float64 work (positions, forces, neighbour
lists and the autograd graph per pair; mesh, dofmap, sparse rows and Cauchy–Born tangents per
element); they only need to be right to within a few times, since a case is refused when its
estimate exceeds the machine's memory (physical memory, or the cgroup's limit when lower),
and the cases they are meant to catch are off by orders of magnitude. A lattice whose
neighbours per atom exceed :data:`MAX_NEIGHBOURS` (about 50–150 for a real crystal) is
refused on its own: no potential is meant for it. Every number is computed in log space, so
that ``a = 1e-300`` or a size of ``2**70`` give a message, not an overflow.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from multiscale.errors import CaseError

__all__ = [
    "BYTES_BASELINE",
    "BYTES_PER_ATOM",
    "BYTES_PER_ELEMENT",
    "BYTES_PER_PAIR",
    "BYTES_PER_PAIR_LAMMPS",
    "MAX_NEIGHBOURS",
    "Estimate",
    "check_estimate",
    "check_neighbours",
    "log_density",
    "log_neighbours",
    "machine_memory",
    "machine_text",
    "mesh_elements",
]

#: Bytes of the process before any work: the interpreter with torch, DOLFINx/PETSc, numba
#: and LAMMPS imported (docs/limits.md gives the measured figure).
BYTES_BASELINE = 700 * 2**20
#: Bytes per atom: positions, forces, site energies, masks, β, sparse interpolation rows.
BYTES_PER_ATOM = 2_000
#: Bytes per ordered neighbour pair: indices, vectors, distances and their autograd graph.
BYTES_PER_PAIR = 400
#: Bytes per ordered neighbour pair when LAMMPS relaxes the atoms (a reference with
#: ``reference.engine = "lammps"``): its half neighbour list keeps one 4-byte index per pair
#: within cutoff + skin, about 5 B per ordered pair within the cutoff; rounded up.
BYTES_PER_PAIR_LAMMPS = 16
#: Bytes per finite element: mesh, dofmap, sparse rows and Cauchy–Born data per cell.
BYTES_PER_ELEMENT = 5_000
#: Largest number of neighbours per atom within the cutoff that a case may have.
MAX_NEIGHBOURS = 10_000


def machine_memory() -> int:
    """Bytes of memory this process may use: physical memory, or the cgroup limit if lower."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for name in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(name).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return int(total)


def machine_text() -> str:
    """The machine's memory for messages, e.g. ``"23.5 GiB"``."""
    return bytes_text(math.log10(machine_memory()))


def _log10(x: float) -> float:
    return math.log10(x) if x > 0 else -math.inf


def _log_add(*logs: float) -> float:
    """log10 of the sum of ``10**l`` for ``l`` in ``logs``."""
    top = max(logs)
    if not math.isfinite(top):
        return top
    return top + math.log10(sum(10 ** (lg - top) for lg in logs))


def count_text(log_value: float) -> str:
    """A count from its log10, e.g. ``"4.0e+09"`` or ``"1e+912"`` (past float range)."""
    if log_value < 6:
        return f"{round(10**log_value):d}"
    if log_value < 300:
        return f"{10**log_value:.1e}"
    if not math.isfinite(log_value):
        return "more than 1e+308"
    return f"1e+{int(log_value)}"


def bytes_text(log_bytes: float) -> str:
    """A size from log10 of bytes: ``"3.2 GiB"``, ``"24 TiB"``, ``"1e+912 bytes"``."""
    if log_bytes >= 21:
        return f"{count_text(log_bytes)} bytes"
    size = 10**log_bytes
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        if size < 1024 or unit == "EiB":
            return f"{size:.3g} {unit}"
        size /= 1024
    raise AssertionError


@dataclass(frozen=True, kw_only=True)
class Estimate:
    """What a case will need, each count as its log10 (so that nothing overflows).

    Attributes:
        log_atoms: atoms.
        log_pairs: ordered neighbour pairs.
        log_elements: finite elements (``-inf`` when there is no mesh).
        bytes_per_pair: memory per ordered pair: :data:`BYTES_PER_PAIR`, or
            :data:`BYTES_PER_PAIR_LAMMPS` when LAMMPS holds the pairs.
    """

    log_atoms: float
    log_pairs: float
    log_elements: float = -math.inf
    bytes_per_pair: float = BYTES_PER_PAIR

    @property
    def log_bytes(self) -> float:
        """log10 of the memory estimate in bytes."""
        return _log_add(
            math.log10(BYTES_BASELINE),
            self.log_atoms + math.log10(BYTES_PER_ATOM),
            self.log_pairs + math.log10(self.bytes_per_pair),
            self.log_elements + math.log10(BYTES_PER_ELEMENT),
        )

    @property
    def mesh_dominates(self) -> bool:
        """The elements' share of the memory is larger than the atoms'."""
        atoms = _log_add(
            self.log_atoms + math.log10(BYTES_PER_ATOM),
            self.log_pairs + math.log10(self.bytes_per_pair),
        )
        return self.log_elements + math.log10(BYTES_PER_ELEMENT) > atoms

    def text(self) -> str:
        """``"about 4.0e+09 atoms, 3.4e+11 neighbour pairs[, N elements]: about 130 TiB"``."""
        parts = [
            f"about {count_text(self.log_atoms)} atoms",
            f"{count_text(self.log_pairs)} neighbour pairs",
        ]
        if math.isfinite(self.log_elements):
            parts.append(f"{count_text(self.log_elements)} mesh elements")
        return ", ".join(parts) + f": about {bytes_text(self.log_bytes)} of memory"


def log_density(structure: str, a: float) -> float:
    """log10 of the number density (atoms per Å³) of ``structure`` with lattice constant ``a``."""
    from atomistic.lattice import crystal

    cell = crystal(structure, element="Cu", a=1.0)  # any element: only the geometry counts
    return math.log10(len(cell) / cell.get_volume()) - 3.0 * _log10(a)


def log_neighbours(*, log_density: float, cutoff: float) -> float:
    """log10 of the neighbours per atom within ``cutoff`` (Å) at ``10**log_density`` per Å³."""
    return log_density + _log10(4.0 / 3.0 * math.pi * _power(cutoff, 3))


def check_neighbours(
    *, log_density: float, cutoff: float, where: str, key: str, value: str
) -> None:
    """Refuse a lattice with more than :data:`MAX_NEIGHBOURS` neighbours per atom.

    Raises:
        CaseError: naming ``where`` and ``key = value`` and the estimate.
    """
    log_n = log_neighbours(log_density=log_density, cutoff=cutoff)
    if log_n > math.log10(MAX_NEIGHBOURS):
        raise CaseError(
            f"{where}: {key} = {value} puts about {count_text(log_n)} atoms within the "
            f"potential's cutoff {cutoff:.4g} Å of each atom (a crystal has 50-150; the limit "
            f"is {MAX_NEIGHBOURS})"
        )


def check_estimate(estimate: Estimate, *, where: str, key: str, value: str, what: str) -> None:
    """Refuse a case whose memory estimate exceeds :func:`machine_memory`.

    Args:
        estimate: what the case needs.
        where: the case file, or ``--set KEY``, for the message.
        key: the key to blame, e.g. ``"lattice.size"``.
        value: its value as written in TOML.
        what: what needs it, e.g. ``"the coupled problem"``, for the message.

    Raises:
        CaseError: the estimate exceeds the machine's memory.
    """
    have = machine_memory()
    if estimate.log_bytes > math.log10(have):
        raise CaseError(
            f"{where}: {key} = {value}: {what} would need {estimate.text()}; this machine has "
            f"{bytes_text(math.log10(have))} (estimate: docs/limits.md)"
        )


def _shell_measure(r: float, dimension: str) -> float:
    """Area (3d sphere) or length (2d circle) at radius ``r``."""
    return 4.0 * math.pi * r * r if dimension == "3d" else 2.0 * math.pi * r


def _ball_measure(r: float, dimension: str) -> float:
    return 4.0 / 3.0 * math.pi * r * r * r if dimension == "3d" else math.pi * r * r


def _power(x: float, d: int) -> float:
    """``x**d`` that overflows to inf instead of raising."""
    return x * x * x if d == 3 else x * x


def mesh_elements(
    *,
    dimension: str,
    hole: float,
    reach: float,
    inradius: float,
    log_domain: float,
    h_min: float,
    h_max: float,
    growth: float,
) -> float:
    """log10 of the estimated number of elements of the graded mesh.

    Args:
        dimension: ``"3d"`` (volume, tetrahedra) or ``"2.5d"`` (area, triangles).
        hole: radius of the hole in the mesh (the core), Å.
        reach: radius of the atoms' outer edge, Å; ``h = h_min`` up to it.
        inradius: radius of the largest ball (disk) about the origin inside the domain, Å.
        log_domain: log10 of the domain's volume (area in 2.5d), Å³ (Å²).
        h_min: the element size to the atoms' reach, Å.
        h_max: the largest element size, Å.
        growth: the slope ``dh/dr`` of the element size beyond the reach.
    """
    d = 3 if dimension == "3d" else 2
    k = 6.0 if d == 3 else 2.0
    log_k = math.log10(k)
    inner = max(_ball_measure(min(reach, inradius), dimension) - _ball_measure(hole, dimension), 0)
    terms = [log_k + _log10(inner) - d * math.log10(h_min)]
    # graded part: h grows from h_min at the reach to h_max at s_max = (h_max - h_min) / growth
    s_end = min(max(inradius - reach, 0.0), (h_max - h_min) / growth)
    if s_end > 0:
        s = [0.0] + [s_end * 10.0 ** (-6 + 6 * i / 400) for i in range(401)]
        f = [_shell_measure(reach + si, dimension) / _power(h_min + growth * si, d) for si in s]
        integral = sum(0.5 * (f[i] + f[i + 1]) * (s[i + 1] - s[i]) for i in range(len(s) - 1))
        terms.append(log_k + _log10(integral))
    # the rest of the domain, at the size reached at the edge of the graded part (an upper bound)
    h_far = min(h_max, h_min + growth * max(inradius - reach, 0.0))
    log_done = _log10(_ball_measure(reach + s_end, dimension))
    if log_domain > log_done:
        log_rest = log_domain + math.log10(1.0 - 10 ** min(log_done - log_domain, 0.0) + 1e-300)
        terms.append(log_k + log_rest - d * math.log10(h_far))
    return _log_add(*terms)
