"""The one-way layering of the packages, and no import cycles.

``atomistic`` and ``continuum`` never import each other; ``coupling`` imports both; only
``multiscale`` imports ``coupling``. Checked twice: statically, over every import statement
of every module (inside functions and ``TYPE_CHECKING`` blocks too), and at run time, in a
fresh interpreter that imports every module of a package.
"""

import ast
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("atomistic", "continuum", "coupling", "multiscale")

#: Package → modules (and their submodules) it must never import.
FORBIDDEN = {
    "atomistic": ["dolfinx", "ufl", "petsc4py", "basix", "continuum", "coupling", "multiscale"],
    "continuum": ["torch", "vesin", "atomistic", "coupling", "multiscale"],
    "coupling": ["multiscale"],
}


def module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def modules() -> dict[str, pathlib.Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def imports_of(name: str, path: pathlib.Path, known: set[str]) -> set[str]:
    """Every module ``name`` imports: ``import a.b`` gives ``a.b``; ``from a import b`` gives
    ``a.b`` when that is a module, else ``a``; relative imports are resolved."""
    out = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            if base == "__future__":
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                out.add(sub if sub in known else base)
    return out


def graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    return {name: imports_of(name, path, known) for name, path in found.items()}


def test_every_module_is_seen():
    found = modules()
    assert {"atomistic.potentials.eam", "coupling.system", "multiscale.kinds.coupled.solve"} <= set(
        found
    )


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_forbidden_import_anywhere_in_the_package(package):
    bad = []
    for name, targets in graph().items():
        if name != package and not name.startswith(package + "."):
            continue
        for target in targets:
            if any(target == f or target.startswith(f + ".") for f in FORBIDDEN[package]):
                bad.append(f"{name} imports {target}")
    assert not bad, "\n".join(bad)


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in edges:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles():
    found = cycles(graph())
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_the_cycle_finder_finds_a_cycle():
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(edges) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_a_function_level_import_is_seen(tmp_path):
    path = tmp_path / "m.py"
    path.write_text("def f():\n    from coupling.system import homogeneous\n")
    assert imports_of("atomistic.m", path, {"coupling.system"}) == {"coupling.system"}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_import_does_not_pull_forbidden_modules(package):
    code = (
        f"import sys, {package}, pkgutil, importlib\n"
        f"for m in pkgutil.walk_packages({package}.__path__, '{package}.'):\n"
        "    importlib.import_module(m.name)\n"
        f"bad = [m for m in {FORBIDDEN[package]!r} if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"importing {package} pulled in: {out.stdout.strip()}"


def test_a_kind_keeps_its_run_function_once_its_modules_are_imported():
    # a submodule named like a kind's entry point (``run``) would replace the package's
    # function by the module once imported, and a second run in one process would then fail
    import importlib
    import pkgutil

    import multiscale.kinds as kinds

    for info in pkgutil.iter_modules(kinds.__path__):
        kind = importlib.import_module(f"multiscale.kinds.{info.name}")
        if not hasattr(kind, "run"):
            continue
        if info.ispkg:
            for sub in pkgutil.iter_modules(kind.__path__):
                importlib.import_module(f"{kind.__name__}.{sub.name}")
        assert callable(kind.run), kind.__name__
