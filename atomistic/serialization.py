"""Saving and loading project potentials.

A network potential is saved with ``torch.save`` of a plain dict (loadable with
``weights_only=True``, so loading a file runs no pickled code):

==================  ===============================================================
key                 value
==================  ===============================================================
``format``          ``"multiscale-potential"``
``kind``            ``"mlip"`` (one network) or ``"committee"``
``version``         :data:`FORMAT_VERSION`
``hyperparameters``  elements, descriptor, hidden layers, activation, members
``elements``        chemical symbols
``cutoff``          Å
``state_dict``      weights and buffers (normalisation, energy shift, calibration)
``calibration``     committee calibration factor (1.0 for one network)
``metadata``        free-form dict of plain values (training metrics, data files, …)
==================  ===============================================================

:func:`load_potential` also reads LAMMPS files by suffix: ``.eam.alloy`` / ``.eam.fs`` /
``.eam`` (:class:`~atomistic.eam.EAM`) and ``.sw`` (:class:`~atomistic.sw.StillingerWeber`),
and, when the optional mace-torch is installed, MACE models ``.model``
(:class:`~atomistic.mace.MACEPotential`; a pickle, read with ``weights_only=False``, while
``.pt`` files are always read with ``weights_only=True``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from atomistic.committee import Committee
from atomistic.mlip import MLIP, NetworkPotential, descriptor_spec_from_dict

__all__ = [
    "FORMAT_VERSION",
    "POTENTIAL_SUFFIX",
    "PotentialFileError",
    "SavedPotential",
    "load_potential",
    "save_potential",
]

FORMAT_VERSION = 1
#: Suffix of saved network potentials.
POTENTIAL_SUFFIX = ".pt"
_FORMAT = "multiscale-potential"


class PotentialFileError(ValueError):
    """A potential file cannot be read (unknown suffix, wrong format or version)."""


def save_potential(
    potential: NetworkPotential, path: str | Path, *, metadata: dict[str, Any] | None = None
) -> Path:
    """Write ``potential`` to ``path`` atomically (temporary file, then ``os.replace``).

    Args:
        potential: an :class:`MLIP` or a :class:`Committee`.
        path: the file, conventionally ending in ``.pt``.
        metadata: plain values (str, numbers, lists, dicts) stored alongside.

    Returns:
        The path written.
    """
    path = Path(path)
    kind = "committee" if isinstance(potential, Committee) else "mlip"
    state = {k: v.detach().cpu().clone() for k, v in potential.state_dict().items()}
    payload = {
        "format": _FORMAT,
        "kind": kind,
        "version": FORMAT_VERSION,
        "hyperparameters": potential.hyperparameters(),
        "elements": list(potential.elements),
        "cutoff": float(potential.cutoff),
        "dtype": str(next(potential.parameters()).dtype).removeprefix("torch."),
        "state_dict": state,
        "calibration": float(getattr(potential, "calibration", 1.0)),
        "metadata": dict(metadata or {}),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def _network_from_payload(payload: dict[str, Any], path: Path) -> NetworkPotential:
    if payload.get("format") != _FORMAT:
        raise PotentialFileError(f"{path}: not a multiscale potential file")
    version = payload.get("version")
    if version != FORMAT_VERSION:
        raise PotentialFileError(
            f"{path}: potential format version {version} unknown; this code reads {FORMAT_VERSION}"
        )
    hp = payload["hyperparameters"]
    common = {
        "elements": tuple(hp["elements"]),
        "descriptor": descriptor_spec_from_dict(hp["descriptor"]),
        "hidden": tuple(hp["hidden"]),
        "activation": hp["activation"],
    }
    if payload["kind"] == "committee":
        model: NetworkPotential = Committee(n_members=int(hp["n_members"]), **common)
    elif payload["kind"] == "mlip":
        model = MLIP(**common)
    else:
        raise PotentialFileError(f"{path}: potential kind {payload['kind']!r} unknown")
    model.load_state_dict(payload["state_dict"])
    model.metadata = payload.get("metadata", {})
    model.source = str(path)
    return model


def load_potential(path: str | Path) -> torch.nn.Module:
    """Load any project potential from a file.

    ``.pt``: a saved :class:`MLIP` or :class:`Committee` (float64, on the CPU; its
    ``metadata`` dict is restored as an attribute). ``.eam.alloy``, ``.eam.fs``, ``.eam``:
    :class:`~atomistic.eam.EAM`. ``.sw``: :class:`~atomistic.sw.StillingerWeber`.
    ``.model``: a MACE model, :class:`~atomistic.mace.MACEPotential` (needs mace-torch).

    Raises:
        FileNotFoundError: no such file.
        PotentialFileError: unknown suffix, or not a potential file of a known version.
        ModuleNotFoundError: a ``.model`` file without mace-torch installed.
    """
    path = Path(path)
    name = path.name
    if name.endswith((".eam.alloy", ".eam.fs", ".eam")):
        from atomistic.eam import EAM

        return EAM.from_file(path)
    if name.endswith(".sw"):
        from atomistic.sw import StillingerWeber

        return StillingerWeber.from_file(path)
    if name.endswith(".model"):
        from atomistic.mace import MACEPotential

        return MACEPotential.from_file(path)
    if not name.endswith(POTENTIAL_SUFFIX):
        raise PotentialFileError(
            f"{path}: suffix unknown; allowed: {POTENTIAL_SUFFIX}, .eam.alloy, .eam.fs, .eam, .sw, "
            ".model (MACE)"
        )
    if not path.is_file():
        raise FileNotFoundError(f"potential file not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for a foreign or damaged file
        raise PotentialFileError(f"{path}: cannot be read as a potential ({err})") from err
    if not isinstance(payload, dict):
        raise PotentialFileError(f"{path}: not a multiscale potential file")
    return _network_from_payload(payload, path)


class SavedPotential:
    """``[potential] kind = "mlip"``: the case-file registry entry for saved potentials."""

    @classmethod
    def from_file(cls, path: str | Path) -> torch.nn.Module:
        """Same as :func:`load_potential`."""
        return load_potential(path)
