"""multiscale: case files, command line, drivers and outputs (the top layer).

Submodules are imported explicitly (``multiscale.config``, ``multiscale.kinds.vacancy``...), so that
``import multiscale`` stays light and ``multiscale --version`` does not load torch.
``multiscale.sweep`` (:func:`multiscale.sweeps.sweep`) runs a case over a grid of values.
"""

from typing import Any

__all__ = ["sweep", "version"]


def __getattr__(name: str) -> Any:
    # ``multiscale.sweep`` (multiscale.sweeps.sweep), imported on first use
    if name == "sweep":
        from multiscale.sweeps import sweep

        return sweep
    raise AttributeError(f"module 'multiscale' has no attribute {name!r}")


def version() -> str:
    """The installed multiscale version (``"unknown"`` when not installed)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as _version

    try:
        return _version("multiscale")
    except PackageNotFoundError:
        return "unknown"
