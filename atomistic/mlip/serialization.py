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

:func:`load_network` reads them back; :func:`atomistic.load_potential` reads every kind
of potential file (:mod:`atomistic.potentials.registry`), these by their suffix ``.pt``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from atomistic.mlip.committee import Committee
from atomistic.mlip.network import MLIP, NetworkPotential, architecture_from_dict
from atomistic.potentials.protocol import PotentialFileError

__all__ = [
    "FORMAT_VERSION",
    "load_network",
    "save_potential",
]

FORMAT_VERSION = 1
_FORMAT = "multiscale-potential"


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
    common = architecture_from_dict(hp)
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


def load_network(path: str | Path) -> NetworkPotential:
    """Load a network potential saved by :func:`save_potential` (float64, on the CPU).

    Its ``metadata`` dict is restored as an attribute.

    Raises:
        FileNotFoundError: no such file.
        PotentialFileError: not a multiscale potential file of a known version.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"potential file not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for a foreign or damaged file
        raise PotentialFileError(f"{path}: cannot be read as a potential ({err})") from err
    if not isinstance(payload, dict):
        raise PotentialFileError(f"{path}: not a multiscale potential file")
    return _network_from_payload(payload, path)
