"""Case kinds: what ``multiscale run``, ``check`` and ``reference`` do for each ``case.kind``.

A kind is a module (imported only when a case of that kind is loaded) with

==============================================  ==============================================
function                                        does
==============================================  ==============================================
``resolve(case, *, comm) -> setup``             load the potential, resolve ``"auto"`` keys,
                                                make the checks that need them
``describe(case, setup, *, output) -> lines``   the summary ``check`` prints and ``log.txt``
                                                starts with
``run(case, setup, *, comm, reporter)``         compute (collective under MPI)
``write(case, setup, result, *, out, stage,``  write the outputs (rank 0 writes files) into
``...)``                                        ``stage`` (they replace ``out``'s as a set,
                                                :mod:`multiscale.output_set`) and return a
                                                :class:`Finished`
``reference(case, setup, *, out, ...)``         optional: the fully atomistic reference
==============================================  ==============================================

:data:`KINDS` is the registry; the case file's sections of each kind are declared in
:mod:`multiscale.config`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from multiscale.config import Case
from multiscale.config.schema import toml_value
from multiscale.errors import CaseError

__all__ = ["KINDS", "Finished", "case_kind"]

#: ``case.kind`` → the module that runs it.
KINDS = {
    "vacancy-formation": "multiscale.kinds.vacancy",
    "coupled": "multiscale.kinds.coupled",
}


@dataclass(frozen=True, kw_only=True)
class Finished:
    """What a finished run tells the user.

    Attributes:
        summary: the ``summary.json`` written (empty on ranks that write nothing).
        lines: printed on stdout by rank 0.
        warning: printed on stderr by rank 0 (``multiscale: warning: ...``), or None.
        converged: exit status 0 if True, 3 (finished, not converged) otherwise.
    """

    summary: dict[str, Any] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)
    warning: str | None = None
    converged: bool = True


def case_kind(case: Case, *, needs: str | None = None) -> ModuleType:
    """The module of ``case.kind``.

    Args:
        case: a loaded case.
        needs: a function the kind must have (e.g. ``"reference"``); the verb's name is
            taken from it for the message.

    Raises:
        CaseError: the kind has no ``needs`` function.
    """
    kind = case.config.case.kind
    module = importlib.import_module(KINDS[kind])
    if needs is not None and not hasattr(module, needs):
        raise CaseError(
            f"{case.where('case.kind')}: case.kind = {toml_value(kind)} has no fully atomistic "
            f"{needs}; multiscale {needs} needs case.kind = "
            + " or ".join(toml_value(k) for k in KINDS if hasattr(_load(k), needs))
        )
    return module


def _load(kind: str) -> ModuleType:
    return importlib.import_module(KINDS[kind])
