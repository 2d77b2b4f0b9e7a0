"""The case file, ``case.toml``, loaded strictly into frozen dataclasses.

One section per table. ``[case] kind`` says what to compute and which other sections it
uses (:data:`KINDS`); every key of a used section has a documented type and, unless
required, a default, declared with :func:`~multiscale.config.schema.option` in the module of
its kind (:mod:`~multiscale.config.vacancy`, :mod:`~multiscale.config.coupled`) or, when every
kind shares it, in :mod:`~multiscale.config.sections`. The key tables of the documentation
are generated from those declarations (``python -m multiscale.config.tables``). A section
that the chosen kind does not use is an error, so a typo cannot be silently ignored.
``--set key=value`` overrides any key (the value is read as TOML, or as a bare string when
it is not valid TOML).
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from multiscale.config.adaptivity import AdaptivitySection, check_adaptivity
from multiscale.config.coupled import (
    BoundarySection,
    CoupledCaseSection,
    CoupledLatticeSection,
    CouplingSection,
    DefectSection,
    GeometrySection,
    LoadingSection,
    ReferenceSection,
    SolverSection,
    check_coupled,
)
from multiscale.config.schema import ORIGIN_SET, Context, build_section, read_toml, toml_value
from multiscale.config.sections import (
    LATTICE_NAMES,
    KindSection,
    OutputSection,
    PotentialSection,
    RunSection,
)
from multiscale.config.vacancy import CaseSection, LatticeSection, RelaxSection
from multiscale.errors import CaseError

__all__ = [
    "CASE_FILE",
    "KINDS",
    "LATTICE_NAMES",
    "SECTIONS",
    "Case",
    "CaseConfig",
    "case_table",
    "find_case_file",
    "load_case",
    "parse_override",
]

CASE_FILE = "case.toml"


#: Case kind → its sections (``[case]`` first), each with its dataclass.
KINDS: dict[str, dict[str, type]] = {
    "vacancy-formation": {
        "case": CaseSection,
        "lattice": LatticeSection,
        "potential": PotentialSection,
        "relax": RelaxSection,
        "run": RunSection,
        "output": OutputSection,
    },
    "coupled": {
        "case": CoupledCaseSection,
        "lattice": CoupledLatticeSection,
        "potential": PotentialSection,
        "geometry": GeometrySection,
        "defect": DefectSection,
        "boundary": BoundarySection,
        "loading": LoadingSection,
        "coupling": CouplingSection,
        "solver": SolverSection,
        "reference": ReferenceSection,
        "adaptivity": AdaptivitySection,
        "run": RunSection,
        "output": OutputSection,
    },
}

#: Sections that are None when the case file leaves them out (their absence means "off").
OPTIONAL_SECTIONS = frozenset({"adaptivity"})

#: Checks across the keys of a kind that need no potential: ``check(sections, ctx)``.
_KIND_CHECKS = {"coupled": check_coupled}


@dataclass(frozen=True, kw_only=True)
class CaseConfig:
    """A whole case file; sections the kind does not use are None."""

    case: CaseSection | CoupledCaseSection
    lattice: LatticeSection | CoupledLatticeSection | None = None
    potential: PotentialSection | None = None
    relax: RelaxSection | None = None
    geometry: GeometrySection | None = None
    defect: DefectSection | None = None
    boundary: BoundarySection | None = None
    loading: LoadingSection | None = None
    coupling: CouplingSection | None = None
    solver: SolverSection | None = None
    reference: ReferenceSection | None = None
    adaptivity: AdaptivitySection | None = None
    run: RunSection | None = None
    output: OutputSection | None = None

    def sections(self) -> Iterator[tuple[str, Any]]:
        """``(name, section)`` for every section the kind uses, in file order."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is not None:
                yield f.name, value


#: Every section name of any kind, in the order they are written out.
SECTIONS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(CaseConfig))


@dataclass(frozen=True, kw_only=True)
class Case:
    """A loaded case.

    Attributes:
        file: the case file that was read.
        config: its validated content, with ``--set`` overrides applied.
        origins: dotted key → ``"user"``, ``"default"`` or ``"--set"``, for every key used.
        options: dotted key → the command-line option that set it (``run.device`` →
            ``--device``), named in messages instead of ``--set KEY``.
    """

    file: Path
    config: CaseConfig
    origins: Mapping[str, str]
    options: Mapping[str, str] = dataclasses.field(default_factory=dict)

    @property
    def folder(self) -> Path:
        """The case folder (relative paths in the case file start here)."""
        return self.file.parent

    def where(self, key: str) -> str:
        """Name the source of ``key`` for messages: the case file, ``--set KEY`` or the option."""
        if key in self.options:
            return self.options[key]
        return f"--set {key}" if self.origins.get(key) == ORIGIN_SET else str(self.file)

    def output_dir(self, override: str | Path | None = None) -> Path:
        """The output folder.

        ``override`` as given (e.g. ``--output``), else ``output.directory`` relative to the
        case folder.
        """
        if override is not None:
            return Path(override)
        assert self.config.output is not None
        return self.folder / Path(self.config.output.directory).expanduser()


def find_case_file(path: str | Path) -> Path:
    """Return the case file for a case folder (or a case file given directly).

    Raises:
        CaseError: the folder does not exist or holds no ``case.toml``.
    """
    p = Path(path)
    if p.is_dir():
        if not (p / CASE_FILE).is_file():
            raise CaseError(f"{p}: no {CASE_FILE} in this folder (is it a case folder?)")
        return p / CASE_FILE
    if p.is_file():
        return p
    raise CaseError(f"{p}: no such case folder")


def parse_override(text: str) -> tuple[str, Any]:
    """Split ``"lattice.size=[4,4,4]"`` into a dotted key and a TOML value.

    A value that is not valid TOML is taken as a bare string (``--set run.device=cpu``).

    Raises:
        CaseError: no ``=``, or an empty key.
    """
    key, sep, raw = text.partition("=")
    key = key.strip()
    parts = key.split(".")
    if not sep or not all(p.strip() for p in parts) or not raw.strip():
        raise CaseError(f"--set {text}: expected KEY=VALUE, e.g. --set lattice.size=[4,4,4]")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return ".".join(p.strip() for p in parts), value


def _apply(raw: dict, key: str, value: Any) -> None:
    table = raw
    parts = key.split(".")
    for depth, part in enumerate(parts[:-1]):
        table = table.setdefault(part, {})
        if not isinstance(table, dict):
            where = ".".join(parts[: depth + 1])
            raise CaseError(f"--set {key}: {where} is {toml_value(table)}, not a table")
    table[parts[-1]] = value


def _dotted_keys(table: Mapping, prefix: str = "") -> set[str]:
    keys = set()
    for k, v in table.items():
        name = f"{prefix}{k}"
        keys.add(name)
        if isinstance(v, Mapping):
            keys |= _dotted_keys(v, name + ".")
    return keys


def case_table(path: str | Path, *, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """The case file's TOML table with ``overrides`` applied, not validated.

    What a copy of the case with these values holds (:mod:`multiscale.sweeps` writes it).

    Raises:
        CaseError: a missing or unreadable case file, or a malformed override.
    """
    raw = read_toml(find_case_file(path), "case file")
    for text in overrides:
        _apply(raw, *parse_override(text))
    return raw


def load_case(
    path: str | Path, *, overrides: Sequence[str] = (), options: Mapping[str, str] | None = None
) -> Case:
    """Read and validate a case.

    Args:
        path: a case folder (holding ``case.toml``) or a case file.
        overrides: ``"key=value"`` strings, as given to ``--set``.
        options: dotted key → the option (e.g. ``--device``) that gave its override, for
            messages.

    Raises:
        CaseError: anything wrong with the folder, the file or the overrides; the one-line
            message names the file (or ``--set KEY``), the key and what is allowed.
    """
    file = find_case_file(path)
    raw = read_toml(file, "case file")
    ctx = Context(file=str(file), file_keys=frozenset(_dotted_keys(raw)))
    set_keys = set()
    for text in overrides:
        key, value = parse_override(text)
        _apply(raw, key, value)
        set_keys.add(key)
    ctx.set_keys = frozenset(set_keys)
    config = _build_config(raw, ctx)
    return Case(file=file, config=config, origins=dict(ctx.origins), options=dict(options or {}))


def _build_config(raw: dict, ctx: Context) -> CaseConfig:
    for name in raw:
        if name not in SECTIONS:
            ctx.fail(name, f"unknown section [{name}]; allowed sections: {', '.join(SECTIONS)}")
    table = raw.get("case", {})
    # kind alone first: it picks the class of every section, [case] included
    if isinstance(table, Mapping):
        table = {k: v for k, v in table.items() if k == "kind"}
    kind = build_section(KindSection, table, prefix="case", ctx=ctx).kind
    used = KINDS[kind]
    for name in raw:
        if name not in used:
            ctx.fail(
                name,
                f"section [{name}] is not used by case.kind = {toml_value(kind)}; "
                f"it uses: {', '.join(n for n in used if n != 'case')}",
            )
    sections = {
        name: build_section(cls, raw.get(name, {}), prefix=name, ctx=ctx)
        for name, cls in used.items()
        if name not in OPTIONAL_SECTIONS or name in raw
    }
    check = _KIND_CHECKS.get(kind)
    if check is not None:
        check(sections, ctx)
    if "adaptivity" in sections:
        check_adaptivity(sections["adaptivity"], ctx)
    return CaseConfig(**sections)
