"""Validation of a project potential against an oracle: the figures of a potential's acceptance.

Any potential (a module with ``cutoff``, ``elements`` and site energies from a graph: EAM, an
MLIP, a committee, whose mean is the potential) is compared with any oracle (an ASE
calculator: :class:`~atomistic.mlip.oracles.LammpsCalculator`, ASE's EMT, ...). Every figure is
computed for both in the same run, by the methods below, and reported with the difference
``potential − oracle`` and the relative difference ``(potential − oracle)/|oracle|``.

=====================  ==============================================  ========================
figure                 potential                                       oracle
=====================  ==============================================  ========================
dataset RMSE           :class:`~atomistic.calculator.Calculator`       the oracle on each frame
``a_0`` (cubic)        energy scan, then root of ``tr σ(a)``           same
``C11, C12, C44``      :meth:`CauchyBorn.elastic_constants` at ``a_0``  central differences of σ
``E_f`` vacancy        :func:`~atomistic.relax.relax` (L-BFGS)         LAMMPS ``minimize``, else
                                                                       :func:`~atomistic.relax.relax`
``γ``, ``f`` surfaces  same, on (100), (110), (111) slabs              same
=====================  ==============================================  ========================

Dataset figures, over the frames of :func:`atomistic.mlip.dataset.read_dataset`:

- force RMSE per Cartesian component over the atoms with ``force_mask`` True,
  ``sqrt(Σ |F − F_label|² / (3 n_masked))`` (eV/Å and meV/Å);
- energy RMSE per atom over frames, ``sqrt(mean_k ((E_k − E_label,k)/n_k)²)`` (eV/atom and
  meV/atom), and the same after removing the mean per-atom error (a constant reference
  shift, which EMT and EAM differ by);
- for a committee (the Calculator gives ``forces_uncertainty``): the RMS over masked atoms of
  the calibrated spread ``c·s_i`` against the RMS of the error norm ``|F_i − F_label,i|``, and
  their ratio (1 for a spread calibrated on these labels).

The dataset is meant to be labelled by the oracle: the oracle's own errors on it are then
those of extended XYZ's 8 decimals (``1e-8/sqrt(12)`` = 2.9e-9 eV/Å RMS, the rounding of
the last digit), a check that labels and oracle agree. The dataset targets judge the
potential's errors against the labels.

``E_f = E(N−1) − (N−1)/N · E(N)`` in a periodic cubic supercell at each side's own ``a_0``,
positions relaxed at fixed cell to ``fmax``. The thresholds of :class:`Thresholds` turn the
figures into the booleans of ``targets``.

Surfaces (:func:`surface_figures`; reported, no target): a slab of whole oriented cells at
each side's own ``a_0``, periodic in plane, with vacuum along the normal wider than twice
the cutoff, relaxed at fixed cell like the vacancy. The surface energy is
``γ = (E_slab − N e_bulk) / 2A`` with ``e_bulk`` the energy per atom of the same oriented
cells without vacuum, and the surface stress ``f_αα = V σ_αα / 2A`` (in-plane ``α``; the bulk
stress vanishes at ``a_0``; positive: tensile), both in J/m².
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from ase import Atoms, units
from ase.calculators.calculator import Calculator as AseCalculator
from ase.calculators.calculator import all_changes
from ase.data import atomic_numbers, reference_states

from atomistic.calculator import Calculator
from atomistic.cauchy_born import CauchyBorn
from atomistic.equilibrium import equilibrium_lattice_constant, vacancy_formation_energy
from atomistic.lattice import crystal, unit_cell
from atomistic.mlip.configurations import LatticeSpec, surface_orientation
from atomistic.mlip.dataset import read_dataset
from atomistic.mlip.oracles import LammpsCalculator, lammps_elastic_constants
from atomistic.potentials.protocol import Potential
from atomistic.relax import relax, relax_fixed_cell

__all__ = [
    "CUBIC_STRUCTURES",
    "Thresholds",
    "compare",
    "cubic_constants",
    "dataset_errors",
    "finite_strain_elastic_constants",
    "oracle_elastic_constants",
    "oracle_name",
    "surface_figures",
    "validate",
]

CUBIC_STRUCTURES = ("fcc", "bcc", "diamond")
#: The low-index surfaces of the report.
SURFACES = ((1, 0, 0), (1, 1, 0), (1, 1, 1))
#: eV/Å² → J/m².
J_PER_M2 = units._e * 1e20
_VOIGT = [(0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)]
#: The RMSE figures of a dataset, compared between potential and oracle.
_RMSE_KEYS = (
    "force_rmse_eV_per_A",
    "force_rmse_meV_per_A",
    "energy_rmse_eV_per_atom",
    "energy_rmse_meV_per_atom",
    "energy_rmse_offset_removed_meV_per_atom",
)
T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class Thresholds:
    """Acceptance thresholds: what a potential must meet against its oracle.

    Attributes:
        force_rmse_meV_per_A: largest force RMSE of the potential on the dataset.
        energy_rmse_meV_per_atom: largest energy RMSE per atom of the potential.
        lattice_constant_rel: largest ``|Δa_0|/a_0`` against the oracle.
        elastic_rel: largest ``|ΔC_ij|/C_ij`` against the oracle, for each of C11, C12, C44.
        vacancy_eV: largest ``|ΔE_f|`` against the oracle.
        spread_factor: calibrated-spread RMS within this factor of the error RMS, either way.
    """

    force_rmse_meV_per_A: float = 30.0
    energy_rmse_meV_per_atom: float = 2.0
    lattice_constant_rel: float = 2e-3
    elastic_rel: float = 0.05
    vacancy_eV: float = 0.05
    spread_factor: float = 1.5


def compare(potential: float, oracle: float) -> dict[str, float | None]:
    """``{potential, oracle, difference, relative_difference}``; relative is None at oracle 0."""
    p, o = float(potential), float(oracle)
    return {
        "potential": p,
        "oracle": o,
        "difference": p - o,
        "relative_difference": (p - o) / abs(o) if o != 0.0 else None,
    }


def oracle_name(calculator: AseCalculator) -> str:
    """A short label: ``lammps eam/alloy Cu_mishin1.eam.alloy``, else the class name."""
    if isinstance(calculator, LammpsCalculator):
        file = "" if calculator.potential_file is None else " " + calculator.potential_file.name
        return f"lammps {calculator.pair_style}{file}"
    return type(calculator).__name__


# --------------------------------------------------------------------------- dataset


def _rmse_figures(force_sq: float, n_forces: int, e_per_atom: np.ndarray) -> dict[str, Any]:
    f = float(np.sqrt(force_sq / (3 * n_forces))) if n_forces else None
    e = float(np.sqrt(np.mean(e_per_atom**2))) if len(e_per_atom) else None
    shifted = e_per_atom - e_per_atom.mean() if len(e_per_atom) else e_per_atom
    e0 = float(np.sqrt(np.mean(shifted**2))) if len(e_per_atom) else None
    milli = lambda v: None if v is None else 1e3 * v
    return {
        "frames": int(len(e_per_atom)),
        "force_labels": int(n_forces),
        "force_rmse_eV_per_A": f,
        "force_rmse_meV_per_A": milli(f),
        "energy_rmse_eV_per_atom": e,
        "energy_rmse_meV_per_atom": milli(e),
        "energy_rmse_offset_removed_meV_per_atom": milli(e0),
    }


def dataset_errors(calculator: AseCalculator, frames: Sequence[Atoms]) -> dict[str, Any]:
    """Errors of any ASE calculator against the labels of a dataset.

    Args:
        calculator: an ASE calculator (the potential's :class:`Calculator` or an oracle).
        frames: labelled frames as :func:`atomistic.mlip.dataset.read_dataset` returns them.

    Returns:
        The figures of the module docstring, overall and under ``per_config_type``; with
        ``uncertainty`` (``spread_rms_eV_per_A``, ``error_norm_rms_eV_per_A``, ``ratio``)
        when the calculator gives ``forces_uncertainty``, else ``uncertainty`` is None.
    """
    types = [str(f.info.get("config_type", "unknown")) for f in frames]
    e_err = np.empty(len(frames))
    f_sq = np.empty(len(frames))
    n_f = np.empty(len(frames), dtype=np.int64)
    spread_sq, error_sq, n_spread = 0.0, 0.0, 0
    for k, frame in enumerate(frames):
        atoms = Atoms(
            numbers=frame.numbers, positions=frame.positions, cell=frame.cell, pbc=frame.pbc
        )
        atoms.calc = calculator
        calculator.calculate(atoms, ["energy", "forces"], all_changes)
        results = calculator.results
        mask = np.asarray(frame.arrays["force_mask"], dtype=bool)
        diff = (np.asarray(results["forces"]) - frame.arrays["forces"])[mask]
        e_err[k] = (float(results["energy"]) - float(frame.info["energy"])) / len(frame)
        f_sq[k] = float((diff**2).sum())
        n_f[k] = int(mask.sum())
        spread = results.get("forces_uncertainty")
        if spread is not None:
            spread_sq += float((np.asarray(spread)[mask] ** 2).sum())
            error_sq += f_sq[k]
            n_spread += n_f[k]
    out = _rmse_figures(float(f_sq.sum()), int(n_f.sum()), e_err)
    out["per_config_type"] = {}
    for t in sorted(set(types)):
        sel = np.array([u == t for u in types])
        out["per_config_type"][t] = _rmse_figures(
            float(f_sq[sel].sum()), int(n_f[sel].sum()), e_err[sel]
        )
    out["uncertainty"] = None
    if n_spread:
        s, e = np.sqrt(spread_sq / n_spread), np.sqrt(error_sq / n_spread)
        out["uncertainty"] = {
            "spread_rms_eV_per_A": float(s),
            "error_norm_rms_eV_per_A": float(e),
            "ratio": float(s / e) if e > 0 else None,
        }
    return out


# --------------------------------------------------------------------------- crystal


def _guess_a(structure: str, element: str, potential: Potential | None = None) -> float:
    """ASE's reference lattice constant when its structure matches, else the EAM file's."""
    ref = reference_states[atomic_numbers[element]]
    a = ref.get("a") if ref is not None and ref.get("symmetry") == structure else None
    if isinstance(a, int | float):
        return float(a)
    constants: Sequence[float] = getattr(potential, "lattice_constants", ())
    elements: Sequence[str] = getattr(potential, "elements", ())
    if element in elements and constants:
        return float(constants[list(elements).index(element)])
    raise ValueError(
        f"no lattice constant to start from for {structure} {element}; pass a_guess (Å)"
    )


def finite_strain_elastic_constants(
    calculator: AseCalculator, atoms: Atoms, *, strain: float = 1e-5, relax_internal: bool = False
) -> np.ndarray:
    """6×6 Voigt elastic constants (GPa) of any ASE calculator by central differences.

    ``C[:, k] = (σ(+ε_k) − σ(−ε_k)) / (2 strain)`` with ``F = I ± ε_k`` applied to cell and
    positions (engineering shear, as :func:`atomistic.mlip.oracles.lammps_elastic_constants`);
    with ``relax_internal`` the positions are relaxed at fixed cell (L-BFGS, 1e-8 eV/Å).

    Tabulated potentials have kinks in their higher derivatives at the spline knots, so the
    strain should stay small: for Cu_mishin1 through LAMMPS, ``strain = 1e-4`` is off the
    Cauchy–Born C11 by 7e-6 (relative) and ``1e-5`` by 1e-9 (measured).
    """
    c = np.zeros((6, 6))
    for k, (a, b) in enumerate(_VOIGT):
        stresses = []
        for sign in (1.0, -1.0):
            eps = np.zeros((3, 3))
            eps[a, b] = eps[b, a] = sign * strain if a == b else 0.5 * sign * strain
            f = np.eye(3) + eps
            strained = Atoms(
                numbers=atoms.numbers,
                positions=atoms.positions @ f.T,
                cell=atoms.cell.array @ f.T,
                pbc=True,
            )
            strained.calc = calculator
            if relax_internal:
                relaxed = relax(strained, fmax=1e-8).atoms
                assert isinstance(relaxed, Atoms)  # RelaxResult.atoms is annotated as object
                strained = relaxed
            stresses.append(np.array(strained.get_stress(voigt=True)))
        c[:, k] = (stresses[0] - stresses[1]) / (2.0 * strain)
    return c / units.GPa


def oracle_elastic_constants(
    calculator: AseCalculator, atoms: Atoms, *, strain: float, relax_internal: bool
) -> np.ndarray:
    """:func:`lammps_elastic_constants` for a LAMMPS file oracle, else finite strains."""
    if isinstance(calculator, LammpsCalculator) and calculator.potential_file is not None:
        return lammps_elastic_constants(
            atoms,
            pair_style=calculator.pair_style,
            potential_file=calculator.potential_file,
            elements=calculator.elements,
            relax_internal=relax_internal,
            strain=strain,
        )
    return finite_strain_elastic_constants(
        calculator, atoms, strain=strain, relax_internal=relax_internal
    )


def cubic_constants(c: np.ndarray) -> dict[str, float]:
    """C11, C12, C44 (same unit as ``c``): averages over the cubic-equivalent entries."""
    return {
        "C11": float(np.mean([c[i, i] for i in range(3)])),
        "C12": float(np.mean([c[0, 1], c[1, 0], c[0, 2], c[2, 0], c[1, 2], c[2, 1]])),
        "C44": float(np.mean([c[i, i] for i in range(3, 6)])),
    }


def surface_figures(
    calculator: AseCalculator,
    *,
    structure: str,
    element: str,
    a: float,
    miller: Sequence[int],
    cutoff: float,
    fmax: float = 1e-4,
    max_steps: int = 10000,
) -> dict[str, Any]:
    """Relaxed surface energy and surface stress of the ``miller`` plane, any ASE calculator.

    The slab (module docstring) has whole oriented cells at least ``max(15 Å, 3 cutoff)``
    thick and ``2 cutoff + 1 Å`` wide, and ``max(12 Å, 2 cutoff + 2 Å)`` of vacuum.

    Returns:
        ``energy_J_per_m2`` (γ), ``stress_J_per_m2`` (the mean of the two in-plane
        ``f_αα``), ``stress_xx_yy_J_per_m2``, ``n_atoms``, ``area_A2``, ``a_A``,
        ``max_force_eV_per_A``, ``steps``, ``converged``.
    """
    rows = surface_orientation(miller)
    lattice = LatticeSpec(structure=structure, element=element, a=float(a))
    period = lattice.build(1, orientation=rows).cell.lengths()
    width, thickness = 2.0 * cutoff + 1.0, max(15.0, 3.0 * cutoff)
    reps = np.maximum(1, np.ceil(np.array([width, width, thickness]) / period)).astype(int)
    bulk = lattice.build(tuple(int(r) for r in reps), orientation=rows)
    bulk.calc = calculator
    n = len(bulk)
    e_bulk = float(bulk.get_potential_energy()) / n
    slab = bulk.copy()
    slab.calc = None
    vacuum = max(12.0, 2.0 * cutoff + 2.0)
    cell = slab.cell.array.copy()
    cell[2, 2] += vacuum
    slab.set_cell(cell, scale_atoms=False)
    slab.positions = slab.positions + np.array([0.0, 0.0, 0.5 * vacuum])
    relaxed, energy, worst, steps = relax_fixed_cell(
        slab, calculator, fmax=fmax, max_steps=max_steps
    )
    relaxed = relaxed.copy()
    relaxed.calc = calculator
    area = float(np.linalg.norm(np.cross(cell[0], cell[1])))
    virial = relaxed.get_stress(voigt=False) * relaxed.get_volume()  # V σ, eV
    f = np.array([virial[0, 0], virial[1, 1]]) / (2.0 * area) * J_PER_M2
    return {
        "energy_J_per_m2": (energy - n * e_bulk) / (2.0 * area) * J_PER_M2,
        "stress_J_per_m2": float(f.mean()),
        "stress_xx_yy_J_per_m2": f.tolist(),
        "n_atoms": n,
        "area_A2": area,
        "a_A": float(a),
        "max_force_eV_per_A": float(worst),
        "steps": int(steps),
        "converged": bool(worst <= fmax),
    }


# --------------------------------------------------------------------------- all of it


@dataclass
class _Sides:
    """The potential (and its ASE calculator) and the oracle of one validation.

    Every figure is computed for both; the seconds each took go to ``times`` under
    ``<figure>_potential_s`` and ``<figure>_oracle_s``.
    """

    potential: Potential
    oracle: AseCalculator
    structure: str
    element: str
    device: str
    times: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.calc = Calculator(self.potential, device=self.device)

    def timed(self, key: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)``, its wall time stored under ``times[key]``."""
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        self.times[key] = time.perf_counter() - start
        return out

    def both(self, figure: str, fn: Callable[..., T], **kwargs: Any) -> tuple[T, T]:
        """``fn`` on the potential's calculator and on the oracle, each timed."""
        pot = self.timed(f"{figure}_potential_s", fn, self.calc, **kwargs)
        orc = self.timed(f"{figure}_oracle_s", fn, self.oracle, **kwargs)
        return pot, orc


def _paired_rmse(pot: dict[str, Any], orc: dict[str, Any] | None) -> dict[str, Any]:
    """The RMSE figures of :func:`_rmse_figures` for both sides, compared where both exist."""
    out: dict[str, Any] = {"frames": pot["frames"], "force_labels": pot["force_labels"]}
    for key in _RMSE_KEYS:
        if orc is None or pot[key] is None or orc[key] is None:
            out[key] = {"potential": pot[key], "oracle": None if orc is None else orc[key]}
        else:
            out[key] = compare(pot[key], orc[key])
    return out


def _dataset_section(
    sides: _Sides, dataset: str | Path | Sequence[Atoms], *, oracle_on_dataset: bool
) -> dict[str, Any]:
    """Dataset RMSEs of the potential (and of the oracle, if asked) against the labels."""
    if isinstance(dataset, str | Path):
        frames, path = read_dataset(dataset), str(dataset)
    else:
        frames, path = list(dataset), None
    pot = sides.timed("dataset_potential_s", dataset_errors, sides.calc, frames)
    orc = None
    if oracle_on_dataset:
        orc = sides.timed("dataset_oracle_s", dataset_errors, sides.oracle, frames)
    section = _paired_rmse(pot, orc)
    section["per_config_type"] = {
        t: _paired_rmse(v, None if orc is None else orc["per_config_type"][t])
        for t, v in pot["per_config_type"].items()
    }
    section["uncertainty"] = pot["uncertainty"]
    section["path"] = path
    return section


def _elastic_section(sides: _Sides, a_pot: float, a_orc: float, *, strain: float) -> dict:
    """C11, C12, C44: Cauchy–Born for the potential, finite strains for the oracle."""
    structure, element = sides.structure, sides.element
    cb = CauchyBorn(
        sides.potential, unit_cell(structure, element=element, a=a_pot), device=sides.device
    )
    c_pot = sides.timed("elastic_potential_s", cb.elastic_constants)
    c_orc = sides.timed(
        "elastic_oracle_s",
        oracle_elastic_constants,
        sides.oracle,
        crystal(structure, element=element, a=a_orc),
        strain=strain,
        relax_internal=len(unit_cell(structure, element=element, a=a_orc)) > 1,
    )
    cp, co = cubic_constants(c_pot), cubic_constants(c_orc)
    return {
        "unit": "GPa",
        **{k: compare(cp[k], co[k]) for k in cp},
        "voigt_potential": c_pot.tolist(),
        "voigt_oracle": c_orc.tolist(),
    }


def _vacancy_section(
    sides: _Sides, a_pot: float, a_orc: float, *, size: int, fmax: float
) -> dict[str, Any]:
    """Relaxed vacancy formation energies, each side at its own lattice constant."""
    kw = {"structure": sides.structure, "element": sides.element, "size": size, "fmax": fmax}
    pot = sides.timed("vacancy_potential_s", vacancy_formation_energy, sides.calc, a=a_pot, **kw)
    orc = sides.timed("vacancy_oracle_s", vacancy_formation_energy, sides.oracle, a=a_orc, **kw)
    v_pot, v_orc = pot.as_dict(), orc.as_dict()
    return {
        "unit": "eV",
        **compare(v_pot["formation_energy_eV"], v_orc["formation_energy_eV"]),
        "details": {"potential": v_pot, "oracle": v_orc},
    }


def _surfaces_section(sides: _Sides, a_pot: float, a_orc: float, *, fmax: float) -> dict:
    """Surface energy and stress of each of :data:`SURFACES`; slabs sized by the potential."""
    section: dict[str, Any] = {"unit": "J/m²"}
    cut = float(sides.potential.cutoff)
    for miller in SURFACES:
        kw: dict[str, Any] = {"structure": sides.structure, "element": sides.element}
        kw |= {"miller": miller, "fmax": fmax, "cutoff": cut}
        name = "".join(str(k) for k in miller)
        pot = sides.timed(f"surface_{name}_potential_s", surface_figures, sides.calc, a=a_pot, **kw)
        orc = sides.timed(f"surface_{name}_oracle_s", surface_figures, sides.oracle, a=a_orc, **kw)
        section[name] = {
            "energy": compare(pot["energy_J_per_m2"], orc["energy_J_per_m2"]),
            "stress": compare(pot["stress_J_per_m2"], orc["stress_J_per_m2"]),
            "details": {"potential": pot, "oracle": orc},
        }
    return section


def _header(sides: _Sides, settings: dict[str, Any]) -> dict[str, Any]:
    """The report's first entries: what was compared, on what lattice, with what settings."""
    potential = sides.potential
    return {
        "potential": {
            "type": type(potential).__name__,
            "source": str(getattr(potential, "source", "")),
            "elements": list(potential.elements),
            "cutoff_A": float(potential.cutoff),
        },
        "oracle": {"name": oracle_name(sides.oracle)},
        "lattice": {"structure": sides.structure, "element": sides.element},
        "settings": {**settings, "device": sides.device},
        "dataset": None,
    }


def validate(
    potential: Potential,
    oracle: AseCalculator,
    *,
    dataset: str | Path | Sequence[Atoms] | None = None,
    structure: str = "fcc",
    element: str | None = None,
    a_guess: float | None = None,
    vacancy_size: int = 4,
    fmax: float = 1e-4,
    strain: float = 1e-5,
    oracle_on_dataset: bool = True,
    thresholds: Thresholds = Thresholds(),
    device: str = "cpu",
    surfaces: bool = True,
) -> dict[str, Any]:
    """All figures of the module docstring for ``potential`` and ``oracle``, JSON-able.

    Args:
        potential: a project potential (``cutoff``, ``elements``, site energies).
        oracle: any ASE calculator giving energy, forces and stress.
        dataset: a dataset file or its frames; None skips the dataset figures.
        structure: cubic lattice of the crystal figures (``fcc``, ``bcc``, ``diamond``).
        element: its element; default ``potential.elements[0]``.
        a_guess: centre of the lattice-constant scan (Å); default ASE's reference value.
        vacancy_size: repeats of the cubic cell of the vacancy supercell (4: 256 fcc sites).
        fmax: force tolerance of the vacancy relaxations, eV/Å.
        strain: finite strain of the oracle's elastic constants.
        oracle_on_dataset: also evaluate the oracle on every frame (its errors against the
            labels: zero when it labelled them).
        thresholds: what ``targets`` compares against.
        device: torch device of the potential.
        surfaces: also the (100), (110), (111) surface energies and stresses (reported,
            no target; both sides use the potential's cutoff to size the slabs).

    Returns:
        ``potential``, ``oracle``, ``lattice``, ``settings``, ``dataset`` (or None),
        ``lattice_constant``, ``elastic_constants`` (C11, C12, C44 and the 6×6 matrices),
        ``vacancy_formation``, ``surfaces`` (with ``surfaces``: per plane ``"100"``,
        ``"110"``, ``"111"``, ``energy`` and ``stress`` in J/m² and their ``details``),
        ``targets`` (booleans; None where a figure is missing),
        ``thresholds`` and ``wall_time_s``. Paired figures are :func:`compare` dicts.
    """
    element = element or potential.elements[0]
    if structure not in CUBIC_STRUCTURES:
        raise ValueError(f"validate: structure {structure!r} not one of {CUBIC_STRUCTURES}")
    guess = a_guess if a_guess is not None else _guess_a(structure, element, potential)
    sides = _Sides(potential, oracle, structure, element, device)
    start = time.perf_counter()
    settings = {"a_guess_A": guess, "a_guess_origin": "user" if a_guess is not None else "default"}
    settings |= {"vacancy_size": vacancy_size, "fmax_eV_per_A": fmax, "strain": strain}
    report = _header(sides, settings)
    if dataset is not None:
        report["dataset"] = _dataset_section(sides, dataset, oracle_on_dataset=oracle_on_dataset)
    kw = {"structure": structure, "element": element, "a_guess": guess}
    a_pot, a_orc = sides.both("lattice_constant", equilibrium_lattice_constant, **kw)
    report["lattice_constant"] = {"unit": "Å", **compare(a_pot, a_orc)}
    report["elastic_constants"] = _elastic_section(sides, a_pot, a_orc, strain=strain)
    report["vacancy_formation"] = _vacancy_section(
        sides, a_pot, a_orc, size=vacancy_size, fmax=fmax
    )
    if surfaces:
        report["surfaces"] = _surfaces_section(sides, a_pot, a_orc, fmax=fmax)
    report["targets"] = _targets(report, thresholds)
    report["thresholds"] = asdict(thresholds)
    sides.times["total_s"] = time.perf_counter() - start
    report["wall_time_s"] = sides.times
    return report


def _targets(report: dict[str, Any], th: Thresholds) -> dict[str, bool | None]:
    """The booleans of ``targets``: each figure within its threshold (None: not computed)."""
    ds = report["dataset"]

    def below(entry: str, limit: float) -> bool | None:
        value = None if ds is None else ds[entry]["potential"]
        return None if value is None else bool(value <= limit)

    out: dict[str, bool | None] = {
        "force_rmse": below("force_rmse_meV_per_A", th.force_rmse_meV_per_A),
        "energy_rmse": below("energy_rmse_meV_per_atom", th.energy_rmse_meV_per_atom),
        "lattice_constant": bool(
            abs(report["lattice_constant"]["relative_difference"]) <= th.lattice_constant_rel
        ),
    }
    for key in ("C11", "C12", "C44"):
        rel = report["elastic_constants"][key]["relative_difference"]
        out[key] = bool(rel is not None and abs(rel) <= th.elastic_rel)
    out["vacancy_formation"] = bool(abs(report["vacancy_formation"]["difference"]) <= th.vacancy_eV)
    unc = None if ds is None else ds["uncertainty"]
    ratio = None if unc is None else unc["ratio"]
    out["calibrated_spread"] = (
        None if ratio is None else bool(1.0 / th.spread_factor <= ratio <= th.spread_factor)
    )
    decided = [v for v in out.values() if v is not None]
    out["all"] = bool(decided) and all(decided)
    return out
