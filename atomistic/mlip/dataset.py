"""Labelled datasets: oracle labels on configurations, stored as extended XYZ.

A labelled frame is an :class:`ase.Atoms` (no calculator) carrying exactly

=========================  =========  ====================================================
key                        shape      meaning
=========================  =========  ====================================================
``info['energy']``         scalar     total energy, eV
``arrays['forces']``       (n, 3)     forces, eV/Å
``arrays['force_mask']``   (n,) bool  True where the force label is to be used
``info['stress']``         (6,)       Voigt xx yy zz yz xz xy, eV/Å³, positive in tension;
                                      only for fully periodic cells
``info['config_type']``    str        what generated it (``bulk``, ``cluster-vacancy``…)
``info['oracle']``         str        which oracle labelled it
=========================  =========  ====================================================

On disk it is ASE's extended XYZ. ASE's reader moves ``energy``, ``forces`` and ``stress``
into a ``SinglePointCalculator``; :func:`read_dataset` moves them back, so frames always
come back in the form above. Extended XYZ stores positions and forces with 8 decimals, so
:func:`label` rounds positions to 1e-8 Å before calling the oracle: the stored labels then
belong to the stored positions. Writes are atomic: a temporary file in the same folder
replaced onto the target with :func:`os.replace`, so readers never see a half-written file.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator

__all__ = [
    "DatasetError",
    "append_dataset",
    "label",
    "label_all",
    "read_dataset",
    "write_dataset",
]

_POSITION_DECIMALS = 8


class DatasetError(ValueError):
    """A frame lacks a label, or a dataset file cannot be read as one."""


def label(atoms: Atoms, calculator: Calculator, *, oracle: str) -> Atoms:
    """Label one configuration with an oracle (any ASE calculator).

    Args:
        atoms: the configuration; ``info['config_type']`` and ``arrays['force_mask']`` are
            kept when present (defaults ``"unknown"`` and all True).
        calculator: the oracle, e.g. from :func:`atomistic.mlip.oracles.make_oracle`.
        oracle: the name stored in ``info['oracle']``.

    Returns:
        A new labelled frame (see the module docstring); positions rounded to 1e-8 Å.
        Stress is asked for only when the cell is periodic along all three axes.
    """
    frame = Atoms(
        numbers=atoms.numbers,
        positions=np.round(atoms.positions, _POSITION_DECIMALS),
        cell=atoms.cell,
        pbc=atoms.pbc,
    )
    frame.calc = calculator
    energy = float(frame.get_potential_energy())
    forces = np.array(frame.get_forces(), dtype=np.float64)
    stress = np.array(frame.get_stress(voigt=True), dtype=np.float64) if all(atoms.pbc) else None
    frame.calc = None
    mask = atoms.arrays.get("force_mask")
    return _frame(
        frame,
        energy=energy,
        forces=forces,
        force_mask=np.ones(len(atoms), dtype=bool) if mask is None else mask,
        stress=stress,
        config_type=str(atoms.info.get("config_type", "unknown")),
        oracle=oracle,
    )


def label_all(
    configurations: Iterable[Atoms],
    calculator: Calculator,
    *,
    oracle: str,
    progress: Callable[[int], None] | None = None,
) -> list[Atoms]:
    """:func:`label` each configuration; ``progress(k)`` is called after the k-th."""
    frames = []
    for k, atoms in enumerate(configurations, start=1):
        frames.append(label(atoms, calculator, oracle=oracle))
        if progress is not None:
            progress(k)
    return frames


def _frame(
    geometry: Atoms,
    *,
    energy: float,
    forces: np.ndarray,
    force_mask: np.ndarray,
    stress: np.ndarray | None,
    config_type: str,
    oracle: str,
) -> Atoms:
    frame = Atoms(
        numbers=geometry.numbers, positions=geometry.positions, cell=geometry.cell, pbc=geometry.pbc
    )
    n = len(frame)
    forces = np.asarray(forces, dtype=np.float64)
    force_mask = np.asarray(force_mask)
    if forces.shape != (n, 3):
        raise DatasetError(f"forces must have shape ({n}, 3), got {forces.shape}")
    if force_mask.shape != (n,) or force_mask.dtype != bool:
        raise DatasetError(
            f"force_mask must be ({n},) bool, got {force_mask.shape} {force_mask.dtype}"
        )
    frame.info["energy"] = float(energy)
    if stress is not None:
        stress = np.asarray(stress, dtype=np.float64).reshape(-1)
        if stress.shape != (6,):
            raise DatasetError(f"stress must be 6 Voigt components, got {stress.shape}")
        frame.info["stress"] = stress
    frame.info["config_type"] = str(config_type)
    frame.info["oracle"] = str(oracle)
    frame.arrays["forces"] = forces.copy()
    frame.arrays["force_mask"] = force_mask.copy()
    return frame


def _checked(frame: Atoms, where: str) -> Atoms:
    """A clean copy of a labelled frame; :class:`DatasetError` naming ``where`` if not one."""
    missing = [k for k in ("energy", "config_type", "oracle") if k not in frame.info]
    missing += [k for k in ("forces", "force_mask") if k not in frame.arrays]
    if missing:
        raise DatasetError(f"{where}: missing label(s) {', '.join(missing)}")
    return _frame(
        frame,
        energy=frame.info["energy"],
        forces=frame.arrays["forces"],
        force_mask=frame.arrays["force_mask"],
        stress=frame.info.get("stress"),
        config_type=frame.info["config_type"],
        oracle=frame.info["oracle"],
    )


def _file_mode(path: Path) -> int:
    """The mode of the existing ``path``, else ``0666`` less the process umask."""
    if path.exists():
        return path.stat().st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _write_atomic(path: Path, frames: Sequence[Atoms], *, keep: Path | None) -> None:
    """Write ``keep``'s bytes (if given) then ``frames`` to a temporary file; replace ``path``."""
    import ase.io

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, _file_mode(path))  # mkstemp makes 0600; give the usual mode
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            if keep is not None:
                fh.write(keep.read_text(encoding="utf-8"))
            if frames:
                ase.io.write(fh, list(frames), format="extxyz", parallel=False)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_dataset(path: str | Path, frames: Sequence[Atoms]) -> None:
    """Write labelled frames to ``path`` (extended XYZ), atomically, replacing any file.

    Raises:
        DatasetError: a frame lacks a label (nothing is written).
    """
    clean = [_checked(f, f"frame {k}") for k, f in enumerate(frames)]
    _write_atomic(Path(path), clean, keep=None)


def append_dataset(path: str | Path, frames: Sequence[Atoms]) -> None:
    """Append labelled frames to the dataset at ``path`` (created if absent), atomically.

    The existing file is read first, so a file that is not a dataset is refused rather than
    extended.

    Raises:
        DatasetError: a frame lacks a label, or the existing file is not a dataset.
    """
    path = Path(path)
    clean = [_checked(f, f"frame {k}") for k, f in enumerate(frames)]
    keep = None
    if path.exists():
        read_dataset(path)
        keep = path
    _write_atomic(path, clean, keep=keep)


def read_dataset(path: str | Path) -> list[Atoms]:
    """Read a dataset written by :func:`write_dataset` (or any extxyz with these labels).

    Returns:
        Frames with exactly the keys of the module docstring and no calculator. Energy and
        forces are required; a file from elsewhere without ``force_mask``, ``config_type``
        or ``oracle`` gets all True, ``"unknown"`` and ``"unknown"``.

    Raises:
        FileNotFoundError: no such file.
        DatasetError: the file is not extended XYZ, or a frame lacks a label.
    """
    import ase.io

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such dataset file")
    if path.stat().st_size == 0:
        return []
    try:
        # parallel=False: ASE's default broadcasts from rank 0 under MPI, a collective that
        # hangs (or desynchronises the ranks) when one rank reads alone (the adaptive loop's
        # labelling does)
        raw = ase.io.read(path, index=":", format="extxyz", parallel=False)
    except Exception as err:  # ASE raises several types for malformed files
        raise DatasetError(f"{path}: not an extended XYZ dataset ({err})") from None
    frames = []
    for k, atoms in enumerate(raw):
        results = dict(atoms.calc.results) if atoms.calc is not None else {}
        atoms.calc = None
        for key in ("energy", "stress"):
            if key in results:
                atoms.info[key] = results[key]
        if "forces" in results:
            atoms.arrays["forces"] = np.asarray(results["forces"])
        mask = atoms.arrays.get("force_mask", np.ones(len(atoms), dtype=bool))
        atoms.arrays["force_mask"] = np.asarray(mask).astype(bool)
        atoms.info.setdefault("config_type", "unknown")
        atoms.info.setdefault("oracle", "unknown")
        frames.append(_checked(atoms, f"{path}: frame {k}"))
    return frames
