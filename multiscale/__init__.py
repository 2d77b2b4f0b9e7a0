"""multiscale: case files, command line, drivers and outputs (the top layer).

Submodules are imported explicitly (``multiscale.config``, ``multiscale.kinds.vacancy``...), so that
``import multiscale`` stays light and ``multiscale --version`` does not load torch.
"""

__all__ = ["version"]


def version() -> str:
    """The installed multiscale version (``"unknown"`` when not installed)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as _version

    try:
        return _version("multiscale")
    except PackageNotFoundError:
        return "unknown"
