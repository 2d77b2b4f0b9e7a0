"""One registry of potential kinds: ``kind`` name → loader, file suffix → kind.

=========  =====================================  =============================================
kind       suffixes                               loader
=========  =====================================  =============================================
``eam``    ``.eam.alloy``, ``.eam.fs``, ``.eam``  ``potentials.eam.EAM.from_file``
``sw``     ``.sw``                                ``potentials.sw.StillingerWeber.from_file``
``mlip``   ``.pt``                                ``mlip.serialization.load_network``
``mace``   ``.model``                             ``potentials.mace.MACEPotential.from_file``
=========  =====================================  =============================================

The case file's ``[potential] kind`` and :func:`load_potential` (by suffix) both read this
table. Loaders are imported only when used, so naming a kind costs no import of its module.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from atomistic.potentials.protocol import Potential, PotentialFileError

__all__ = ["POTENTIAL_KINDS", "PotentialKind", "kind_of_file", "load_potential"]


@dataclass(frozen=True, kw_only=True)
class PotentialKind:
    """A kind of potential file.

    Attributes:
        name: the ``[potential] kind`` value.
        suffixes: file name endings that mean this kind.
        loader: ``"module:attribute"`` of a callable ``path -> potential``.
        description: one line for messages and documentation.
    """

    name: str
    suffixes: tuple[str, ...]
    loader: str
    description: str

    def load(self, path: str | Path) -> Potential:
        """Build the potential stored in ``path``."""
        module, attribute = self.loader.split(":")
        obj: Any = importlib.import_module(module)  # looked up by name: typed by ``loader``
        for part in attribute.split("."):
            obj = getattr(obj, part)
        load: Callable[[Path], Potential] = obj
        return load(Path(path))


#: ``kind`` → :class:`PotentialKind`, in the order messages list them.
POTENTIAL_KINDS: dict[str, PotentialKind] = {
    kind.name: kind
    for kind in (
        PotentialKind(
            name="eam",
            suffixes=(".eam.alloy", ".eam.fs", ".eam"),
            loader="atomistic.potentials.eam:EAM.from_file",
            description="LAMMPS eam/alloy or eam/fs file",
        ),
        PotentialKind(
            name="sw",
            suffixes=(".sw",),
            loader="atomistic.potentials.sw:StillingerWeber.from_file",
            description="LAMMPS Stillinger-Weber file",
        ),
        PotentialKind(
            name="mlip",
            suffixes=(".pt",),
            loader="atomistic.mlip.serialization:load_network",
            description="network potential or committee saved by multiscale train (.pt)",
        ),
        PotentialKind(
            name="mace",
            suffixes=(".model",),
            loader="atomistic.potentials.mace:MACEPotential.from_file",
            description="MACE model file (torch.save of the module; needs mace-torch)",
        ),
    )
}


def kind_of_file(path: str | Path) -> PotentialKind:
    """The kind that a file's suffix names.

    Raises:
        PotentialFileError: no kind has that suffix; the message lists the known ones.
    """
    name = Path(path).name
    for kind in POTENTIAL_KINDS.values():
        if name.endswith(kind.suffixes):
            return kind
    known = ", ".join(s for k in POTENTIAL_KINDS.values() for s in k.suffixes)
    raise PotentialFileError(f"{path}: suffix unknown; allowed: {known}")


def load_potential(path: str | Path, *, kind: str | None = None) -> Potential:
    """Load any project potential from a file.

    Args:
        path: the file.
        kind: a key of :data:`POTENTIAL_KINDS`; None: from the file's suffix.

    Raises:
        FileNotFoundError: no such file.
        PotentialFileError: unknown kind or suffix, or not a potential file of that kind.
        ModuleNotFoundError: a MACE file without mace-torch installed.
    """
    path = Path(path)
    if kind is None:
        entry = kind_of_file(path)
    elif kind in POTENTIAL_KINDS:
        entry = POTENTIAL_KINDS[kind]
    else:
        raise PotentialFileError(
            f"potential kind {kind!r} unknown; allowed: {', '.join(POTENTIAL_KINDS)}"
        )
    if not path.is_file():
        raise FileNotFoundError(f"potential file not found: {path}")
    return entry.load(path)
