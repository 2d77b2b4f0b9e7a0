"""What every case kind needs from its case file, turned from keys into objects.

The potential, the device, the lattice constant and the output folder, each with one-line
errors that name the key.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from multiscale.config import Case
from multiscale.config.schema import toml_value
from multiscale.errors import CaseError

if TYPE_CHECKING:
    import torch

__all__ = [
    "case_device",
    "case_lattice_constant",
    "find_case_potential_file",
    "load_case_potential",
    "output_folder",
    "output_where",
]


def find_case_potential_file(case: Case) -> Path:
    """Find ``potential.file``: as given if absolute, else in the case folder, then in LAMMPS's.

    Raises:
        CaseError: the file is in none of those places (the message names them).
    """
    from atomistic.potentials import PotentialFileNotFoundError, find_potential_file

    assert case.config.potential is not None
    name = case.config.potential.file
    try:
        return find_potential_file(name, folders=[case.folder])
    except PotentialFileNotFoundError as err:
        where = case.where("potential.file")
        looked = ", ".join(err.looked)
        raise CaseError(
            f"{where}: potential.file = {toml_value(name)} not found (looked in {looked})"
        ) from None


def load_case_potential(case: Case) -> tuple[Any, Path]:
    """Build the potential of a case and check that it describes the lattice's element.

    Returns:
        The potential (a torch module with ``elements`` and ``cutoff``) and its file.

    Raises:
        CaseError: missing or malformed file, or ``lattice.element`` not in the file.
    """
    import warnings

    from atomistic.potentials import load_potential
    from atomistic.potentials.registry import POTENTIAL_KINDS

    section, lattice = case.config.potential, case.config.lattice
    assert section is not None and lattice is not None
    path = find_case_potential_file(case)
    named = [k.name for k in POTENTIAL_KINDS.values() if path.name.endswith(k.suffixes)]
    if named and section.kind not in named:
        raise CaseError(
            f"{case.where('potential.kind')}: potential.kind = {toml_value(section.kind)} but "
            f"potential.file = {toml_value(section.file)} is named as a kind "
            f"{toml_value(named[0])} file; "
            f"allowed: potential.kind = {toml_value(named[0])}, or a "
            f"{', '.join(POTENTIAL_KINDS[section.kind].suffixes)} file"
        )
    try:
        with warnings.catch_warnings():  # third-party loaders warn before failing on a bad file
            warnings.simplefilter("ignore")
            potential = load_potential(path, kind=section.kind)
    except ImportError as err:  # an optional dependency (mace-torch) is missing
        raise CaseError(
            f"{case.where('potential.kind')}: potential.kind = {toml_value(section.kind)} "
            f"cannot be used: {err}"
        ) from err
    except (ValueError, OSError) as err:
        raise CaseError(
            f"{case.where('potential.file')}: potential.file = {toml_value(section.file)} "
            f"cannot be read as potential.kind = {toml_value(section.kind)}: {_short(err)}"
        ) from err
    if lattice.element not in potential.elements:
        raise CaseError(
            f"{case.where('lattice.element')}: lattice.element = {toml_value(lattice.element)} "
            f"is not in potential file {path.name} (it has {', '.join(potential.elements)})"
        )
    return potential, path


def _short(err: BaseException, limit: int = 240) -> str:
    """The exception's text on one line, cut at ``limit`` characters (torch's run long)."""
    text = " ".join(str(err).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def case_device(case: Case) -> torch.device:
    """The torch device of ``run.device``.

    Raises:
        CaseError: CUDA asked for on a machine without it.
    """
    from atomistic.device import DeviceError, resolve_device

    assert case.config.run is not None
    try:
        return resolve_device(case.config.run.device)
    except DeviceError as err:
        raise CaseError(
            f"{case.where('run.device')}: run.device = {toml_value(case.config.run.device)}: "
            f'{err}; allowed here: "cpu" or "auto"'
        ) from None


def case_lattice_constant(case: Case, potential: Any, *, device: Any, comm: Any = None) -> float:
    """``lattice.a``, or with ``"relax"`` the potential's equilibrium lattice constant.

    Args:
        case: the loaded case.
        potential: its potential.
        device: the torch device to compute on.
        comm: MPI communicator; the relaxed value is computed on rank 0 and broadcast, so
            every rank builds the same lattice. None: serial.
    """
    from atomistic.equilibrium import equilibrium_lattice_constant

    lattice = case.config.lattice
    assert lattice is not None
    if lattice.a != "relax":
        return float(lattice.a)
    a = None
    if comm is None or comm.rank == 0:
        a = equilibrium_lattice_constant(
            structure=lattice.structure,
            element=lattice.element,
            potential=potential,
            device=device,
        )
    return float(a if comm is None else comm.bcast(a, root=0))


def output_folder(case: Case, override: str | None) -> Path:
    """The output folder (``--output`` or ``output.directory``), created.

    Raises:
        CaseError: it cannot be created (the message names the key or ``--output``).
    """
    where = output_where(case, override)
    given = override if override is not None else case.config.output.directory  # type: ignore[union-attr]
    if not str(given).strip():
        raise CaseError(f"{where}: the output folder is empty; give a folder name")
    out = case.output_dir(override)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CaseError(f"{where}: cannot create the output folder {out} ({err.strerror})") from err
    return out


def output_where(case: Case, override: str | None) -> str:
    """``--output DIR``, or the case file and ``output.directory``, for messages."""
    if override is not None:
        return f"--output {override!r}"
    return f"{case.where('output.directory')}: output.directory"
