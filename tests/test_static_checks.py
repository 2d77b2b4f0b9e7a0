"""The type checker over the library packages: mypy with the settings of pyproject.toml."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ["atomistic", "continuum", "coupling"]


@pytest.mark.skipif(
    importlib.util.find_spec("mypy") is None,
    reason="mypy is not installed (pip install -e .[test])",
)
def test_mypy_reports_no_errors():
    # Run from the repository root so that pyproject.toml's [tool.mypy] applies and these
    # packages, not an installed copy, are the ones checked.
    result = subprocess.run(
        [sys.executable, "-m", "mypy", *PACKAGES],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        report = (result.stdout + result.stderr).strip()
        pytest.fail(f"mypy {' '.join(PACKAGES)} found errors:\n{report}", pytrace=False)
