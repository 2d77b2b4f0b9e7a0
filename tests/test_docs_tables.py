"""The key tables of README.md and docs/case-coupled.md are generated from the option()
declarations (``python -m multiscale.config.tables``) and must not drift from them."""

import dataclasses
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest

from multiscale.config import KINDS
from multiscale.config.schema import option
from multiscale.config.tables import TARGETS, key_rows, key_table, main, render, update
from multiscale.config.vacancy import RelaxSection

ROOT = Path(__file__).resolve().parents[1]


def test_generated_tables_are_up_to_date():
    """Fails when a declaration changed without ``python -m multiscale.config.tables``, or a
    table was edited by hand."""
    assert update(ROOT, check=True) == {}, "run: python -m multiscale.config.tables"
    run = subprocess.run(
        [sys.executable, "-m", "multiscale.config.tables", "--check"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_every_key_of_every_kind_is_in_its_table():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    coupled = (ROOT / "docs" / "case-coupled.md").read_text(encoding="utf-8")
    for text, kind in ((readme, "vacancy-formation"), (coupled, "coupled")):
        for name, cls in KINDS[kind].items():
            for field in dataclasses.fields(cls):
                assert f"| `{name}.{field.name}` |" in text


@pytest.fixture
def docs_copy(tmp_path):
    for name in TARGETS:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, tmp_path / name)
    return tmp_path


def test_check_names_a_table_edited_by_hand_and_a_rewrite_restores_it(docs_copy, capsys):
    doc = docs_copy / "docs" / "case-coupled.md"
    original = doc.read_text(encoding="utf-8")
    row = "| `solver.max_iterations` | Newton iterations per load step;"
    assert row in original
    doc.write_text(original.replace(row, "| `solver.max_iterations` | Newton steps;"))
    assert main(["--check", "--root", str(docs_copy)]) == 1
    err = capsys.readouterr().err
    assert "docs/case-coupled.md" in err and "coupled" in err and "README.md" not in err
    assert doc.read_text(encoding="utf-8") != original  # --check writes nothing

    assert main(["--root", str(docs_copy)]) == 0
    assert doc.read_text(encoding="utf-8") == original
    assert main(["--check", "--root", str(docs_copy)]) == 0
    assert not list(doc.parent.glob(".*.tmp"))  # no temporary file left behind


@dataclass(frozen=True, kw_only=True)
class _RelaxWithNewKey(RelaxSection):
    line_search: Literal["armijo", "wolfe"] = option("wolfe", doc="line search of the minimiser")


def test_a_key_added_to_a_section_shows_up_in_the_table():
    kinds = {kind: dict(sections) for kind, sections in KINDS.items()}
    kinds["vacancy-formation"]["relax"] = _RelaxWithNewKey
    row = (
        '| `relax.line_search` | line search of the minimiser | `"armijo"` or `"wolfe"` '
        '| `"wolfe"` |'
    )
    assert row in key_table(kinds["vacancy-formation"])

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    new, changed = render(readme, kinds=kinds, where="README.md")
    assert changed == ["vacancy-formation"]
    assert row in new and row not in readme
    # the row sits after the keys declared before it, and nothing outside the block moves
    assert new.index("| `relax.max_steps` |") < new.index(row) < new.index("| `run.device` |")
    assert new.replace(row + "\n", "") == readme


def _positive(value):
    return None if value == "auto" or value > 0 else "must be > 0"


@dataclass(frozen=True, kw_only=True)
class _Inner:
    depth: int = option(2, doc="how deep")


@dataclass(frozen=True, kw_only=True)
class _Everything:
    name: str = option(doc="a required key")
    width: float | Literal["auto"] = option(
        "auto", unit="Å", check=_positive, doc="a width | with a pipe", default_doc="`2 r_cut`"
    )
    shape: str = option("b", doc="picked from a list", choices=lambda: ("a", "b"))
    radius: float | None = option(None, unit="Å", doc="only for disks")
    centre: tuple[float, float] | None = option(
        None, unit="Å", doc="where", default_doc="the origin"
    )
    tol: float = option(1e-6, unit="eV/Å", doc="tolerance")
    rows: tuple[tuple[int, int, int], ...] = option(((1, 0, 0),), doc="Miller rows")
    flag: bool = option(True, doc="on or off")
    inner: _Inner


def test_rows_say_required_auto_units_and_choices():
    rows = {
        key: (meaning, value, default)
        for key, meaning, value, default in key_rows({"x": _Everything})
    }
    assert rows["x.name"] == ("a required key", "string", "required")
    assert rows["x.width"][1:] == ('number in Å or `"auto"`', '`"auto"`: `2 r_cut`')
    assert rows["x.shape"][1:] == ('`"a"` or `"b"`', '`"b"`')
    assert rows["x.radius"][1:] == ("number in Å", "unset")
    assert rows["x.centre"][1:] == ("array of 2 numbers in Å", "the origin")
    assert rows["x.tol"][1:] == ("number in eV/Å", "`1e-6`")
    assert rows["x.rows"][1:] == ("array of arrays of 3 integers", "`[[1, 0, 0]]`")
    assert rows["x.flag"][1:] == ("`true` or `false`", "`true`")
    assert rows["x.inner.depth"] == ("how deep", "integer", "`2`")
    table = key_table({"x": _Everything})
    assert "a width \\| with a pipe" in table  # a pipe cannot end the cell


def test_a_file_without_markers_is_an_error():
    with pytest.raises(ValueError, match="no <!-- keys:KIND begin -->"):
        render("# nothing here\n", where="x.md")
    with pytest.raises(ValueError, match="unknown kind"):
        render("<!-- keys:nope begin -->\n<!-- keys:nope end -->\n", where="x.md")
