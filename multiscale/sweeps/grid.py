"""The points of a sweep: ``--grid key=v1,v2`` options, their product, names and validation.

A grid maps case-file keys (dotted, as for ``--set``) to the values to try. Its points are the
Cartesian product, the first key varying slowest. Each point is a set of ``--set``-style
overrides and a folder name made of its values (``coupling.kappa=5,geometry.h_min=2.3``),
reduced to characters that are safe in a file name on any system.

Every point is validated against the case schema (:func:`multiscale.config.load_case`) before
any of them runs; a bad key or value is a :class:`~multiscale.errors.CaseError` that names
``--grid`` and the key.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from multiscale.config import Case, load_case, parse_override
from multiscale.config.schema import toml_value
from multiscale.errors import CaseError

__all__ = [
    "Point",
    "grid_points",
    "parse_grid_option",
    "point_name",
    "split_values",
    "validate_points",
]

#: Keys a sweep sets itself: each point writes into its own folder's ``output``.
RESERVED_KEYS = ("output.directory",)

#: Longest folder name; longer ones are cut and end with a hash of the full name.
MAX_NAME = 120

_UNSAFE = re.compile(r"[^A-Za-z0-9._+=-]+")


@dataclass(frozen=True, kw_only=True)
class Point:
    """One point of a sweep.

    Attributes:
        values: grid key → value, in the grid's key order.
        name: the point's folder name.
    """

    values: Mapping[str, Any]
    name: str

    @property
    def overrides(self) -> list[str]:
        """The point's values as ``--set`` strings (``"coupling.kappa=5"``)."""
        return [f"{key}={toml_value(value)}" for key, value in self.values.items()]


def split_values(text: str) -> list[str]:
    """Split ``"1,[4,4,4],'a,b'"`` at the commas outside brackets, braces and quotes."""
    parts, depth, quote, start = [], 0, "", 0
    for i, char in enumerate(text):
        if quote:
            if char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts]


def parse_grid_option(text: str) -> tuple[str, list[Any]]:
    """Read one ``--grid`` option: ``"geometry.core_radius=14,18"`` → key and values.

    Each value is read as TOML, or as a bare string when it is not valid TOML (as ``--set``
    does); arrays are written as in TOML: ``--grid lattice.size=[4,4,4],[5,5,5]``.

    Raises:
        CaseError: no ``=``, an empty key or value, or a value given twice.
    """
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or not raw.strip():
        raise CaseError(
            f"--grid {text}: expected KEY=V1,V2,..., e.g. --grid geometry.core_radius=14,18"
        )
    values = []
    for item in split_values(raw):
        if not item:
            raise CaseError(f"--grid {key}: an empty value in {raw!r}")
        values.append(parse_override(f"{key}={item}")[1])
    return key, values


def point_name(values: Mapping[str, Any]) -> str:
    """The folder name of a point: ``key=value`` pairs joined by commas, made safe.

    Characters other than letters, digits and ``._+=-`` become ``_`` (``[4, 4, 4]`` →
    ``4_4_4``, quotes dropped); a name longer than :data:`MAX_NAME` is cut and ends with a
    hash of the whole.
    """
    pairs = []
    for key, value in values.items():
        text = value if isinstance(value, str) else toml_value(value)
        pairs.append(f"{key}={_UNSAFE.sub('_', text).strip('_') or '_'}")
    name = ",".join(pairs)
    if len(name) > MAX_NAME:
        digest = hashlib.sha256(name.encode()).hexdigest()[:12]
        name = f"{name[: MAX_NAME - 13]}-{digest}"
    return name


def grid_points(grid: Mapping[str, Sequence[Any]], *, overrides: Sequence[str] = ()) -> list[Point]:
    """The points of ``grid``: the product of its values, the first key varying slowest.

    Args:
        grid: dotted case-file key → the values to try.
        overrides: ``--set`` strings applied to every point (a key may not be in both).

    Raises:
        CaseError: an empty grid, a key without values, a value twice for one key, a key
            also given with ``--set``, ``output.directory``, or two points whose folder names
            are the same.
    """
    if not grid:
        raise CaseError("--grid: a sweep needs at least one --grid KEY=V1,V2,...")
    set_keys = {parse_override(text)[0] for text in overrides}
    for key, values in grid.items():
        if key in RESERVED_KEYS:
            raise CaseError(
                f"--grid {key}: the sweep sets {key} itself (each point writes into its "
                "folder's output/); choose the sweep's folder with --output"
            )
        if key in set_keys:
            raise CaseError(f"--grid {key}: also given with --set; give it in one place")
        if isinstance(values, str) or not values:
            raise CaseError(f"--grid {key}: needs a list of values, got {values!r}")
        texts = [toml_value(v) for v in values]
        twice = sorted({t for t in texts if texts.count(t) > 1})
        if twice:
            raise CaseError(f"--grid {key}: value {twice[0]} is given twice")
    keys = list(grid)
    points = [
        Point(values=dict(zip(keys, combo, strict=True)), name="")
        for combo in itertools.product(*(grid[k] for k in keys))
    ]
    points = [Point(values=p.values, name=point_name(p.values)) for p in points]
    names = [p.name for p in points]
    clash = next((n for n in names if names.count(n) > 1), None)
    if clash is not None:
        raise CaseError(f"--grid: two points would share the folder name {clash!r}")
    return points


def validate_points(
    case: str | Path, points: Sequence[Point], *, overrides: Sequence[str] = ()
) -> list[Case]:
    """Load the case once per point with its values applied, before anything runs.

    Returns:
        The loaded case of each point.

    Raises:
        CaseError: the first point the schema refuses; a message about a grid key names
            ``--grid KEY`` (not ``--set``), any other names the point.
    """
    for text in overrides:
        key = parse_override(text)[0]
        if key in RESERVED_KEYS:
            raise CaseError(
                f"--set {key}: the sweep sets {key} itself (each point writes into its "
                "folder's output/); choose the sweep's folder with --output"
            )
    cases = []
    for point in points:
        try:
            cases.append(load_case(case, overrides=[*overrides, *point.overrides]))
        except CaseError as err:
            raise _grid_error(str(err), point) from None
    return cases


def _grid_error(message: str, point: Point) -> CaseError:
    for key in point.values:
        prefix = f"--set {key}"
        if message.startswith(prefix + ":") or message.startswith(prefix + " "):
            return CaseError(f"--grid {key}{message[len(prefix) :]}")
    return CaseError(f"--grid point {point.name}: {message}")
