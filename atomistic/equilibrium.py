"""Equilibrium properties of a crystal under a potential.

==================================  ========================================================
quantity                            how
==================================  ========================================================
``a_0 = argmin_a E(a)/N``           scan ``E/N``, then polish to round-off: Newton on the
                                    Cauchy–Born mean stress for a project potential (so
                                    ``a_0`` is exactly the continuum's stress-free
                                    reference), Brent on ``tr σ(a)`` for any other ASE
                                    calculator (cubic lattices)
``E_f = E_vac − (N − 1)/N E_bulk``  the perfect supercell as is (no forces by symmetry),
                                    the atom nearest its centre removed and the rest
                                    relaxed at fixed cell
lattice plane spacings              the smallest positive coordinate of a site per axis
==================================  ========================================================
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import BaseCalculator

from atomistic.calculator import Calculator
from atomistic.cauchy_born import CauchyBorn
from atomistic.defects import vacancy
from atomistic.device import one_thread
from atomistic.lattice import crystal, unit_cell
from atomistic.potentials.protocol import Potential
from atomistic.relax import Progress, relax_fixed_cell

__all__ = [
    "NEAREST_NEIGHBOUR_FACTOR",
    "VacancyFormation",
    "equilibrium_lattice_constant",
    "lattice_plane_spacings",
    "nearest_neighbour_distance",
    "vacancy_formation_energy",
]

#: Nearest-neighbour distance in units of ``a`` for each lattice (hcp at ideal c/a).
NEAREST_NEIGHBOUR_FACTOR = {
    "fcc": np.sqrt(0.5),
    "bcc": np.sqrt(3.0) / 2.0,
    "diamond": np.sqrt(3.0) / 4.0,
    "hcp": 1.0,
}


def nearest_neighbour_distance(structure: str, a: float) -> float:
    """``r_nn`` in Å of a lattice with constant ``a`` (Å)."""
    return float(NEAREST_NEIGHBOUR_FACTOR[structure] * a)


def _scan(
    energy_per_atom: Callable[[float], float], grid: np.ndarray, what: str
) -> tuple[int, float, float]:
    energies = np.array([energy_per_atom(a) for a in grid])
    k = int(np.argmin(energies))
    if k in (0, len(grid) - 1):
        raise ValueError(
            f"{what}: no minimum of the energy per atom for a between "
            f"{grid[0]:.4f} and {grid[-1]:.4f} Å"
        )
    return k, grid[k - 1], grid[k + 1]


def equilibrium_lattice_constant(
    calculator: BaseCalculator | None = None,
    *,
    structure: str,
    element: str,
    potential: Potential | None = None,
    device: str | torch.device | None = None,
    a_guess: float | None = None,
    span: float = 0.1,
) -> float:
    """Minimise the energy per atom of the perfect crystal over the lattice constant.

    Args:
        calculator: any ASE calculator; default a :class:`~atomistic.calculator.Calculator`
            of ``potential``.
        structure: ``"fcc"``, ``"bcc"``, ``"diamond"`` or ``"hcp"`` (ideal c/a).
        element: chemical symbol.
        potential: a project potential. With it the result is polished by Newton on the
            Cauchy–Born mean stress; without it (an oracle) by Brent on the stress trace,
            which needs a cubic lattice.
        device: torch device of the default calculator and of Cauchy–Born.
        a_guess: scan ``a_guess (1 ± span)`` (21 points); None: nearest-neighbour distances
            from 0.3 to 0.95 of the potential's cutoff (66 points, no guess needed).
        span: relative half-width of the scan around ``a_guess``.

    Returns:
        ``a_0`` in Å, the same to the last bit whatever the number of CPU threads (it is
        computed on one), so that every lattice and mesh built from it is reproducible.

    Raises:
        ValueError: no minimum inside the scan, neither a guess nor a potential, or an
            oracle with a non-cubic lattice.
    """
    with one_thread():
        return _equilibrium_lattice_constant(
            calculator,
            structure=structure,
            element=element,
            potential=potential,
            device=device,
            a_guess=a_guess,
            span=span,
        )


def _equilibrium_lattice_constant(
    calculator: BaseCalculator | None,
    *,
    structure: str,
    element: str,
    potential: Potential | None,
    device: str | torch.device | None,
    a_guess: float | None,
    span: float,
) -> float:
    import scipy.optimize

    if calculator is None:
        if potential is None:
            raise ValueError("equilibrium_lattice_constant needs a calculator or a potential")
        calculator = Calculator(potential, device=device)

    def energy_per_atom(a: float) -> float:
        atoms = unit_cell(structure, element=element, a=float(a))
        atoms.calc = calculator
        return float(atoms.get_potential_energy()) / len(atoms)

    if a_guess is not None:
        grid = a_guess * np.linspace(1.0 - span, 1.0 + span, 21)
    elif potential is not None:
        grid = np.linspace(0.3, 0.95, 66) * potential.cutoff / NEAREST_NEIGHBOUR_FACTOR[structure]
    else:
        raise ValueError("equilibrium_lattice_constant: give a_guess for a bare calculator")
    k, lo, hi = _scan(energy_per_atom, grid, f"{structure} {element}")
    if potential is not None:
        cell = unit_cell(structure, element=element, a=float(grid[k]))
        a = float(grid[k] * CauchyBorn(potential, cell, device=device).stress_free_scale())
        if lo < a < hi:
            return a
    elif structure in ("fcc", "bcc", "diamond"):

        def trace(a: float) -> float:
            atoms = crystal(structure, element=element, a=float(a))
            atoms.calc = calculator
            return float(np.sum(atoms.get_stress(voigt=True)[:3]))

        if trace(lo) * trace(hi) <= 0:
            return float(scipy.optimize.brentq(trace, lo, hi, xtol=1e-13, rtol=1e-15))
    else:
        raise ValueError(f"{structure}: a bare calculator's a_0 needs a cubic lattice")
    best = scipy.optimize.minimize_scalar(
        energy_per_atom, bounds=(lo, hi), method="bounded", options={"xatol": 1e-10}
    )
    return float(best.x)


def lattice_plane_spacings(
    structure: str,
    element: str,
    a: float,
    orientation: Sequence[Sequence[int]] | np.ndarray | None,
) -> np.ndarray:
    """``(3,)`` spacing (Å) of the lattice planes normal to x, y, z.

    The spacing along an axis is the smallest positive coordinate of a site along it (a site
    sits at the origin).

    Args:
        structure: the lattice name.
        element: chemical symbol.
        a: lattice constant in Å.
        orientation: Miller axes as in :func:`~atomistic.lattice.crystal`.
    """
    block = crystal(structure, element=element, a=a, orientation=orientation)
    out = np.empty(3)
    for k in range(3):
        L = float(block.cell.lengths()[k])
        x = np.mod(block.positions[:, k] - block.positions[0, k], L)
        x = x[(x > 1e-6) & (x < L - 1e-6)]
        out[k] = x.min() if len(x) else L
    return out


@dataclass(frozen=True, kw_only=True)
class VacancyFormation:
    """A relaxed vacancy in a periodic supercell (energies in eV, forces in eV/Å).

    Attributes:
        formation_energy: ``E_f = E_vac − (N − 1)/N E_bulk``.
        e_bulk: energy of the perfect ``N``-site supercell.
        e_vacancy: energy of the relaxed supercell with one site removed.
        n_sites: ``N``.
        a: lattice constant in Å.
        max_force: largest force after relaxation.
        steps: force evaluations (LAMMPS: its iterations plus any evaluations after).
        converged: ``max_force <= fmax``.
        atoms: the relaxed defected atoms.
    """

    formation_energy: float
    e_bulk: float
    e_vacancy: float
    n_sites: int
    a: float
    max_force: float
    steps: int
    converged: bool
    atoms: Atoms

    def as_dict(self) -> dict[str, Any]:
        """The figures as a JSON-ready dict (no atoms)."""
        return {
            "formation_energy_eV": self.formation_energy,
            "n_sites": self.n_sites,
            "a_A": self.a,
            "e_bulk_eV": self.e_bulk,
            "e_vacancy_eV": self.e_vacancy,
            "max_force_eV_per_A": self.max_force,
            "steps": self.steps,
            "converged": self.converged,
        }


def vacancy_formation_energy(
    calculator: BaseCalculator,
    *,
    structure: str,
    element: str,
    a: float,
    size: int | tuple[int, int, int] = 4,
    fmax: float = 1e-4,
    max_steps: int = 10000,
    method: str = "lbfgs",
    progress: Progress | None = None,
) -> VacancyFormation:
    """``E_f = E_vac − (N − 1)/N E_bulk`` with any ASE calculator, relaxed at fixed cell.

    The atom nearest the centre of the perfect ``size`` supercell of conventional cells is
    removed and the rest relaxed to ``max |F| <= fmax``: by the calculator's own
    ``minimize`` when it has one (LAMMPS ``minimize``, cg), finished by
    :func:`~atomistic.relax.relax` should that stop above ``fmax``; by
    :func:`~atomistic.relax.relax` with ``method`` otherwise.

    Args:
        calculator: an ASE calculator.
        structure: the lattice name.
        element: chemical symbol.
        a: lattice constant in Å.
        size: conventional cells along x, y, z (one number: the same along each).
        fmax: force tolerance in eV/Å.
        max_steps: budget of force evaluations of the relaxation.
        method: ``"lbfgs"`` or ``"fire"``.
        progress: ``progress(step, energy, max_force)`` after each force evaluation.
    """
    cells = (size,) * 3 if isinstance(size, int) else tuple(size)
    bulk = crystal(structure, element=element, a=float(a), size=cells)
    bulk.calc = calculator
    n = len(bulk)
    e_bulk = float(bulk.get_potential_energy())
    atoms, energy, worst, steps = relax_fixed_cell(
        vacancy(bulk),
        calculator,
        fmax=fmax,
        max_steps=max_steps,
        method=method,
        progress=progress,
    )
    return VacancyFormation(
        formation_energy=energy - (n - 1) / n * e_bulk,
        e_bulk=e_bulk,
        e_vacancy=energy,
        n_sites=n,
        a=float(a),
        max_force=worst,
        steps=steps,
        converged=bool(worst <= fmax),
        atoms=atoms,
    )
