"""The one-way layering of DESIGN.md §4, checked in fresh interpreters."""

import subprocess
import sys

import pytest

FORBIDDEN = {
    "atomistic": ["dolfinx", "ufl", "petsc4py", "basix", "continuum", "coupling", "multiscale"],
    "continuum": ["torch", "vesin", "atomistic", "coupling", "multiscale"],
}


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
