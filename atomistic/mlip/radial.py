"""What the two descriptors share: the smooth cutoff, the radial G2 sums and their settings.

For atom ``i`` with neighbours ``j`` (``r_ij``, element ``b_j``), both descriptors start with

    G2_i[b, (η, R_s)] = Σ_{j ∈ b} exp(−η (r_ij − R_s)²) f_c(r_ij)

and add angular terms of their own (:mod:`atomistic.mlip.acsf`, :mod:`atomistic.mlip.moments`)
within an angular cutoff ``r_a ≤ r_cut``.

==================================  =========================================================
quantity                            code
==================================  =========================================================
``f(r)`` cosine, C¹                 ``½ (cos(π r/r_c) + 1)``
``f(r)`` polynomial, C²             ``1 − x³ (10 − 15x + 6x²)``, ``x = r/r_c``
G2 (half list, both ends)           two ``index_add`` into rows ``i·n_el + s_j``
==================================  =========================================================
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Self

import torch

from atomistic.neighbours import Graph

__all__ = ["CUTOFF_FUNCTIONS", "RadialDescriptor", "RadialSpec", "cutoff_function"]

#: The smooth cutoff functions :func:`cutoff_function` knows.
CUTOFF_FUNCTIONS = ("cosine", "polynomial")


def _default_radial_shifts() -> tuple[float, ...]:
    return tuple(round(1.5 + 0.5 * k, 6) for k in range(8))


def cutoff_function(r: torch.Tensor, r_cut: float, kind: str) -> torch.Tensor:
    """Smooth cutoff ``f(r)``: 1 at 0, 0 with zero slope from ``r_cut`` on (shape of ``r``)."""
    x = torch.clamp(r * (1.0 / r_cut), max=1.0)
    if kind == "cosine":
        return 0.5 * (torch.cos(math.pi * x) + 1.0)
    return 1.0 - x**3 * (10.0 + x * (-15.0 + 6.0 * x))


def broadcast(eta: tuple[float, ...], n: int) -> list[float]:
    """``eta`` as one width per shift: a single value repeated ``n`` times, else as given."""
    return list(eta) * (n if len(eta) == 1 else 1)


@dataclass(frozen=True, kw_only=True)
class RadialSpec:
    """The hyper-parameters every descriptor has (lengths in Å); see the subclasses.

    Attributes:
        cutoff: radial cutoff ``r_cut``.
        angular_cutoff: ``r_a`` of the angular terms (None: ``0.8 r_cut``).
        radial_eta: ``η`` of each G2 in Å⁻²; one value is broadcast to every shift.
        radial_shift: ``R_s`` of each G2.
        cutoff_function: ``"polynomial"`` (C²) or ``"cosine"`` (C¹).
    """

    #: How error messages name the descriptor.
    label: ClassVar[str] = "descriptor"
    #: The ``kind`` key :meth:`to_dict` writes (None: none).
    kind: ClassVar[str | None] = None

    cutoff: float = 5.0
    angular_cutoff: float | None = None
    radial_eta: tuple[float, ...] = (2.0,)
    radial_shift: tuple[float, ...] = field(default_factory=_default_radial_shifts)
    cutoff_function: str = "polynomial"

    def __post_init__(self) -> None:
        if self.cutoff <= 0:
            raise ValueError(f"{self.label} cutoff must be positive, got {self.cutoff}")
        if self.angular_cutoff is not None and not 0 < self.angular_cutoff <= self.cutoff:
            raise ValueError(
                f"{self.label} angular_cutoff must be in (0, cutoff={self.cutoff}], got "
                f"{self.angular_cutoff}"
            )
        self._check_widths("radial", self.radial_eta, self.radial_shift)
        if self.cutoff_function not in CUTOFF_FUNCTIONS:
            raise ValueError(
                f"{self.label} cutoff_function {self.cutoff_function!r} unknown; allowed: "
                f"{', '.join(CUTOFF_FUNCTIONS)}"
            )

    def _check_widths(self, name: str, eta: tuple[float, ...], shift: tuple[float, ...]) -> None:
        """Shifts ``{name}_shift`` not empty, and one width ``{name}_eta`` or one per shift."""
        if not shift:
            raise ValueError(f"{self.label} {name}_shift must not be empty")
        if len(eta) not in (1, len(shift)):
            raise ValueError(
                f"{self.label} {name}_eta has {len(eta)} values; give one or one per "
                f"{name}_shift ({len(shift)})"
            )

    @property
    def r_angular(self) -> float:
        """The angular cutoff ``r_a`` in Å."""
        if self.angular_cutoff is None:
            return 0.8 * self.cutoff
        return float(self.angular_cutoff)

    @property
    def n_radial(self) -> int:
        """G2 functions per neighbour element."""
        return len(self.radial_shift)

    def n_features(self, n_elements: int) -> int:
        """Descriptor length ``D`` for ``n_elements`` elements (G2 only, here)."""
        return n_elements * self.n_radial

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (lists, floats, strings) for saving, with ``kind`` where it has one."""
        out = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}
        return out if self.kind is None else {"kind": self.kind, **out}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Inverse of :meth:`to_dict`."""
        values: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k != "kind"
        }
        return cls(**values)


class RadialDescriptor(torch.nn.Module):
    """Base of the descriptors: G2 blocks by neighbour element (``n_el × n_radial``) first.

    Args:
        spec: the hyper-parameters.
        n_elements: number of elements (``graph.species`` runs over ``range(n_elements)``).
    """

    spec: RadialSpec
    radial_eta: torch.Tensor
    radial_shift: torch.Tensor

    def __init__(self, spec: RadialSpec, n_elements: int) -> None:
        super().__init__()
        self.spec = spec
        self.n_elements = int(n_elements)
        self.n_features = spec.n_features(self.n_elements)
        eta = broadcast(spec.radial_eta, spec.n_radial)
        self.register_buffer("radial_eta", torch.tensor(eta, dtype=torch.float64))
        self.register_buffer("radial_shift", torch.tensor(spec.radial_shift, dtype=torch.float64))

    def extra_repr(self) -> str:
        """Elements, length and hyper-parameters, for ``repr``."""
        return f"n_elements={self.n_elements}, n_features={self.n_features}, spec={self.spec}"

    def radial(
        self, graph: Graph, i: torch.Tensor, j: torch.Tensor, r: torch.Tensor
    ) -> torch.Tensor:
        """G2 ``(n, n_el·n_radial)`` from the pairs ``(i, j)`` at distances ``r`` (half list)."""
        spec, n_el = self.spec, self.n_elements
        fc = cutoff_function(r, spec.cutoff, spec.cutoff_function)
        g = torch.exp(-self.radial_eta * (r[:, None] - self.radial_shift) ** 2) * fc[:, None]
        s = graph.species
        out = torch.zeros((graph.n_atoms * n_el, spec.n_radial), dtype=r.dtype, device=r.device)
        out = out.index_add(0, i * n_el + s[j], g).index_add(0, j * n_el + s[i], g)
        return out.view(graph.n_atoms, n_el * spec.n_radial)
