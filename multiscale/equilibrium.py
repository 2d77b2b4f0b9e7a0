"""The equilibrium lattice constant of a potential: ``a_0 = argmin_a E(a)/N`` of the crystal.

1. Scan the energy per atom of the unit cell over nearest-neighbour distances from 0.3 to
   0.95 of the cutoff (robust: finds the basin without a starting guess).
2. Polish with Newton on the Cauchy–Born mean stress (``CauchyBorn.stress_free_scale``), so
   that ``a_0`` is exactly the stress-free reference of the continuum, to round-off.
3. Should Newton leave the scan's bracket, fall back to a bounded Brent search on the energy.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["NEAREST_NEIGHBOUR_FACTOR", "equilibrium_lattice_constant"]

#: Nearest-neighbour distance in units of ``a`` for each lattice (hcp at ideal c/a).
NEAREST_NEIGHBOUR_FACTOR = {
    "fcc": np.sqrt(0.5),
    "bcc": np.sqrt(3.0) / 2.0,
    "diamond": np.sqrt(3.0) / 4.0,
    "hcp": 1.0,
}


def equilibrium_lattice_constant(
    *, structure: str, element: str, potential: Any, calculator: Any, points: int = 66
) -> float:
    """Minimise the energy per atom of the perfect crystal over the lattice constant.

    Args:
        structure: ``"fcc"``, ``"bcc"``, ``"diamond"`` or ``"hcp"`` (ideal c/a).
        element: chemical symbol.
        potential: the project potential (``cutoff`` in Å sets the scan range).
        calculator: an ASE calculator for the same potential.
        points: number of lattice constants in the scan.

    Returns:
        ``a_0`` in Å.

    Raises:
        ValueError: the energy per atom has no minimum inside the scanned range.
    """
    import scipy.optimize

    from atomistic.cauchy_born import CauchyBorn
    from atomistic.lattice import unit_cell

    def energy_per_atom(a: float) -> float:
        atoms = unit_cell(structure, element=element, a=float(a))
        atoms.calc = calculator
        return float(atoms.get_potential_energy()) / len(atoms)

    factor = NEAREST_NEIGHBOUR_FACTOR[structure]
    grid = np.linspace(0.3, 0.95, points) * potential.cutoff / factor
    energies = np.array([energy_per_atom(a) for a in grid])
    k = int(np.argmin(energies))
    if k in (0, len(grid) - 1):
        raise ValueError(
            f"{structure} {element}: no minimum of the energy per atom for a between "
            f"{grid[0]:.3f} and {grid[-1]:.3f} Å"
        )
    lo, hi = grid[k - 1], grid[k + 1]
    cb = CauchyBorn(
        potential,
        unit_cell(structure, element=element, a=float(grid[k])),
        device=getattr(calculator, "device", None),
    )
    a = float(grid[k] * cb.stress_free_scale())
    if lo < a < hi:
        return a
    best = scipy.optimize.minimize_scalar(
        energy_per_atom, bounds=(lo, hi), method="bounded", options={"xatol": 1e-10}
    )
    return float(best.x)
