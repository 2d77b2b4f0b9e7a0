"""Modules that moved when the package was split into ``potentials/`` and ``mlip/``.

Importing an old path fails with a message that names the new one, instead of a bare
``ModuleNotFoundError``. The names exported by ``atomistic`` itself did not move.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType

__all__ = ["MOVED", "RENAMED", "install"]

#: Old module → new module.
MOVED = {
    "atomistic.potential": "atomistic.potentials.protocol",
    "atomistic.eam": "atomistic.potentials.eam",
    "atomistic.sw": "atomistic.potentials.sw",
    "atomistic.pair": "atomistic.potentials.pair",
    "atomistic.mace": "atomistic.potentials.mace",
    "atomistic.serialization": "atomistic.mlip.serialization",
    "atomistic.acsf": "atomistic.mlip.acsf",
    "atomistic.moments": "atomistic.mlip.moments",
    "atomistic.descriptor_jacobian": "atomistic.mlip.jacobian",
    "atomistic.committee": "atomistic.mlip.committee",
    "atomistic.training_data": "atomistic.mlip.batches",
    "atomistic.training": "atomistic.mlip.training",
    "atomistic.dataset": "atomistic.mlip.dataset",
    "atomistic.configurations": "atomistic.mlip.configurations",
    "atomistic.oracles": "atomistic.mlip.oracles",
    "atomistic.validation": "atomistic.mlip.validation",
}


#: Old public name of ``atomistic`` → its new name.
RENAMED = {
    "default_device": "resolve_device",
    "resolve_potential_file": "find_potential_file",
}


class _MovedFinder:
    """A meta-path finder that only speaks up for the modules in :data:`MOVED`."""

    @staticmethod
    def find_spec(
        fullname: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        new = MOVED.get(fullname)
        if new is not None:
            raise ModuleNotFoundError(
                f"{fullname} has moved to {new}; import from there (or from atomistic)",
                name=fullname,
            )
        return None


def install() -> None:
    """Put the finder last on ``sys.meta_path`` (once): it runs only where nothing was found."""
    if not any(isinstance(f, _MovedFinder) for f in sys.meta_path):
        sys.meta_path.append(_MovedFinder())
