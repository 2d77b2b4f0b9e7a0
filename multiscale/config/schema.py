"""Strict conversion of TOML tables into frozen dataclasses, remembering each value's origin.

A section of ``case.toml`` is a ``@dataclass(frozen=True, kw_only=True)`` whose fields are
declared with :func:`option`. Field annotations drive the checks: ``str``, ``int``, ``float``
(an integer is accepted), ``bool``, ``Literal[...]``, ``tuple[int, int, int]``,
``tuple[T, ...]``, unions of these, and nested section dataclasses (sub-tables). Every
problem raises :class:`~multiscale.errors.CaseError` with one line that names the file (or
the ``--set`` option), the dotted key, and what is allowed.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from multiscale.errors import CaseError

__all__ = [
    "read_toml",
    "summary",
    "ORIGIN_DEFAULT",
    "ORIGIN_SET",
    "ORIGIN_USER",
    "Context",
    "build_section",
    "describe",
    "option",
    "toml_value",
]

ORIGIN_USER = "user"
ORIGIN_DEFAULT = "default"
ORIGIN_SET = "--set"


def read_toml(file: Path, what: str) -> dict[str, Any]:
    """The TOML table of ``file``.

    Raises:
        CaseError: ``file`` is missing (``what`` names the kind of file) or not valid TOML.
    """
    if not file.is_file():
        raise CaseError(f"{file}: no such {what}")
    try:
        with file.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as err:
        raise CaseError(f"{file}: not valid TOML: {err}") from None
    except UnicodeDecodeError as err:
        raise CaseError(
            f"{file}: not valid TOML: byte {err.start} is not UTF-8 (save the file as UTF-8)"
        ) from None
    except OSError as err:
        raise CaseError(f"{file}: cannot read the {what} ({err.strerror})") from None


def option(
    default: Any = dataclasses.MISSING,
    *,
    doc: str,
    unit: str | None = None,
    check: Callable[[Any], str | None] | None = None,
    choices: Callable[[], Sequence[str]] | None = None,
    default_doc: str | None = None,
) -> Any:
    """Declare a case-file key.

    The declaration is the key's only documentation: the key tables of ``README.md`` and
    ``docs/`` are generated from it (:mod:`multiscale.config.tables`).

    Args:
        default: the value used when the key is absent; omit for a required key.
        doc: what the key means, in Markdown (code spans for values and formulas); as many
            sentences as it takes. The first sentence also explains a missing required key.
        unit: unit of a number, e.g. ``"Å"`` or ``"eV/Å"``.
        check: returns a problem (``"must be > 0"``) or None for a converted value.
        choices: returns the allowed strings, for lists that live in the library.
        default_doc: what the default stands for when its value does not say it: what
            ``"auto"`` becomes, or what an absent key (default None) means.
    """
    meta = {
        "doc": doc,
        "unit": unit,
        "check": check,
        "choices": choices,
        "default_doc": default_doc,
    }
    return dataclasses.field(default=default, metadata=meta)


def summary(doc: str) -> str:
    """The first sentence of a key's ``doc``, without Markdown code marks, for messages."""
    return doc.split(". ", 1)[0].rstrip(".").replace("`", "")


def toml_value(value: Any) -> str:
    """Format a scalar or array as TOML (also used to quote values in messages)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"
    return json.dumps(str(value))


def describe(tp: Any) -> str:
    """Say in words what a field annotation accepts."""
    origin = get_origin(tp)
    if origin is Literal:
        return " or ".join(toml_value(v) for v in get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe(arm) for arm in get_args(tp) if arm is not type(None))
    if origin is tuple:
        args = get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"an array of {_plural(args[0])}"
        return f"an array of {len(args)} {_plural(args[0])}"
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}
    return names.get(tp, getattr(tp, "__name__", str(tp)))


def _plural(tp: Any) -> str:
    return {str: "strings", int: "integers", float: "numbers", bool: "booleans"}.get(tp, "values")


class _Mismatch(Exception):
    pass


def _convert(value: Any, tp: Any) -> Any:
    origin = get_origin(tp)
    if origin is Literal:
        if any(type(value) is type(v) and value == v for v in get_args(tp)):
            return value
        raise _Mismatch
    if origin in (typing.Union, types.UnionType):
        for arm in get_args(tp):
            try:
                return _convert(value, arm)
            except _Mismatch:
                continue
        raise _Mismatch
    if origin is tuple:
        args = get_args(tp)
        if not isinstance(value, list | tuple):
            raise _Mismatch
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0]) for v in value)
        if len(value) != len(args):
            raise _Mismatch
        return tuple(_convert(v, a) for v, a in zip(value, args, strict=True))
    if tp is bool and isinstance(value, bool):
        return value
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if tp is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if tp is str and isinstance(value, str):
        return value
    raise _Mismatch


@dataclasses.dataclass(kw_only=True)
class Context:
    """Where values come from while sections are built.

    Attributes:
        file: the case file, named in messages about keys it holds.
        file_keys: every dotted key and table name present in the file.
        set_keys: dotted keys given with ``--set`` (named as ``--set KEY`` in messages).
        origins: filled in by :func:`build_section`: dotted key → ``"user"``, ``"default"``
            or ``"--set"``.
    """

    file: str
    file_keys: frozenset[str] = frozenset()
    set_keys: frozenset[str] = frozenset()
    origins: dict[str, str] = dataclasses.field(default_factory=dict)

    def where(self, key: str) -> str:
        """The file, or ``--set KEY`` when the key (or everything below it) came from there."""
        if key in self.set_keys:
            return f"--set {key}"
        below = sorted(k for k in self.set_keys if k.startswith(key + "."))
        if below and key not in self.file_keys:
            return f"--set {below[0]}"
        return self.file

    def fail(self, key: str, problem: str) -> typing.NoReturn:
        """Raise a :class:`CaseError` about ``key``."""
        raise CaseError(f"{self.where(key)}: {problem}")


def _is_section(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def build_section(cls: type, table: Any, *, prefix: str, ctx: Context) -> Any:
    """Build section dataclass ``cls`` from a TOML table, checking every key.

    Args:
        cls: a frozen, keyword-only dataclass whose fields were made with :func:`option`.
        table: the parsed TOML table (or a missing section: an empty dict).
        prefix: the dotted name of the table, e.g. ``"lattice"``.
        ctx: file and ``--set`` bookkeeping; ``ctx.origins`` is filled in.

    Raises:
        CaseError: for an unknown or missing key, or a value of the wrong type or range.
    """
    if not isinstance(table, Mapping):
        ctx.fail(prefix, f"{prefix} must be a table [{prefix}], got {toml_value(table)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in table:
        if key not in fields:
            ctx.fail(
                f"{prefix}.{key}",
                f"unknown key '{prefix}.{key}'; allowed keys in [{prefix}]: {', '.join(fields)}",
            )
    values = {}
    for name, field in fields.items():
        key = f"{prefix}.{name}"
        tp = hints[name]
        if _is_section(tp):
            values[name] = build_section(tp, table.get(name, {}), prefix=key, ctx=ctx)
        elif name in table:
            values[name] = _checked(table[name], tp, field, key, ctx)
            ctx.origins[key] = ORIGIN_SET if key in ctx.set_keys else ORIGIN_USER
        elif field.default is not dataclasses.MISSING:
            values[name] = field.default
            ctx.origins[key] = ORIGIN_DEFAULT
        else:
            ctx.fail(key, f"missing key '{key}' ({summary(field.metadata['doc'])})")
    return cls(**values)


def _checked(value: Any, tp: Any, field: dataclasses.Field, key: str, ctx: Context) -> Any:
    meta = field.metadata
    unit = f" (numbers in {meta['unit']})" if meta.get("unit") else ""
    try:
        out = _convert(value, tp)
    except _Mismatch:
        if get_origin(tp) is Literal:
            ctx.fail(key, f"{key} = {toml_value(value)} is not allowed; allowed: {describe(tp)}")
        ctx.fail(key, f"{key} must be {describe(tp)}{unit}, got {toml_value(value)}")
    choices = meta.get("choices")
    if choices is not None and out not in choices():
        ctx.fail(key, f"{key} = {toml_value(value)} is not known; allowed: {', '.join(choices())}")
    check = meta.get("check")
    problem = check(out) if check is not None else None
    if problem:
        ctx.fail(key, f"{key} {problem}, got {toml_value(value)}")
    return out
