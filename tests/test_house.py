"""The house rules that a refactor could quietly break.

- every shipped case passes ``multiscale check``;
- the README's Python examples run as written;
- no function in the four packages is longer than 80 lines;
- the case file's potential kinds are the library registry's;
- a module that moved tells where it went.
"""

import ast
import os
import pathlib
import re
import subprocess
import sys
import typing

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("atomistic", "continuum", "coupling", "multiscale")
MAX_FUNCTION_LINES = 80
CASES = sorted(p.parent.name for p in (ROOT / "cases").glob("*/case.toml"))


def test_every_case_is_seen():
    assert {"vacancy-cu", "patch-test", "void-cu-3d", "edge-dislocation-cu"} <= set(CASES)


@pytest.mark.parametrize("case", CASES)
def test_shipped_case_checks_clean(case):
    proc = subprocess.run(
        [sys.executable, "-m", "multiscale", "check", str(ROOT / "cases" / case)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"ok: {ROOT / 'cases' / case / 'case.toml'} is valid" in proc.stdout


def readme_examples() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_readme_has_its_two_python_examples():
    assert len(readme_examples()) == 2


@pytest.mark.parametrize("index", [0, 1])
def test_readme_python_example_runs(index, tmp_path):
    code = readme_examples()[index]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


def long_functions(root: pathlib.Path) -> list[str]:
    found = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    lines = node.end_lineno - node.lineno + 1
                    if lines > MAX_FUNCTION_LINES:
                        where = path.relative_to(root)
                        found.append(f"{where}:{node.lineno} {node.name} ({lines} lines)")
    return found


def test_no_function_is_longer_than_a_screen():
    assert not long_functions(ROOT), "\n".join(long_functions(ROOT))


def test_the_length_check_sees_a_long_function(tmp_path):
    package = tmp_path / "coupling"
    package.mkdir()
    body = "".join(f"    x{k} = {k}\n" for k in range(MAX_FUNCTION_LINES))
    (package / "m.py").write_text(f"def f():\n{body}")
    assert long_functions(tmp_path) == [f"coupling/m.py:1 f ({MAX_FUNCTION_LINES + 1} lines)"]


def test_case_file_potential_kinds_are_the_registry():
    from atomistic.potentials import POTENTIAL_KINDS
    from multiscale.config.sections import PotentialSection

    kind = typing.get_type_hints(PotentialSection)["kind"]
    assert set(typing.get_args(kind)) == set(POTENTIAL_KINDS)


def test_a_moved_module_names_its_new_home():
    import atomistic  # noqa: F401  (installs the finder)

    with pytest.raises(ModuleNotFoundError, match=r"atomistic\.eam has moved to "):
        import atomistic.eam  # noqa: F401
    with pytest.raises(ImportError, match=r"renamed; use atomistic\.resolve_device"):
        from atomistic import default_device  # noqa: F401
    from atomistic import EAM, MLIP, Calculator, CauchyBorn, Committee, load_potential

    assert all(callable(x) for x in (EAM, MLIP, Calculator, CauchyBorn, Committee, load_potential))
