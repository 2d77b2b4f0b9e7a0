"""Vacancy formation energy in a periodic supercell at fixed cell.

    E_f = E_vac − (N − 1)/N · E_bulk

=============  =================================================================
symbol         code
=============  =================================================================
``E_bulk``     energy of the perfect ``N``-atom supercell (no relaxation needed:
               every atom sits at a centre of symmetry)
``E_vac``      energy of the supercell with its centre atom removed, positions
               relaxed at fixed cell to ``relax.fmax``
=============  =================================================================
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from multiscale.config import Case
from multiscale.errors import CaseError
from multiscale.progress import Reporter

__all__ = ["VacancyResult", "run_vacancy"]


@dataclass(frozen=True, kw_only=True)
class VacancyResult:
    """Outcome of :func:`run_vacancy`.

    Attributes:
        formation_energy: ``E_f`` in eV.
        e_bulk: energy of the perfect supercell in eV.
        e_defect: energy of the relaxed defected supercell in eV.
        n_sites: atoms in the perfect supercell (``N``).
        lattice_constant: ``a`` in Å (as given, or the relaxed value).
        max_force: largest force norm after relaxation, eV/Å.
        steps: force evaluations of the relaxation.
        converged: whether ``max_force <= relax.fmax``.
        atoms: the relaxed defected atoms, calculator attached.
        potential_file: the potential file used.
        device: the torch device used.
        wall_time_s: seconds for the whole workflow.
    """

    formation_energy: float
    e_bulk: float
    e_defect: float
    n_sites: int
    lattice_constant: float
    max_force: float
    steps: int
    converged: bool
    atoms: Any
    potential_file: Path
    device: str
    wall_time_s: float


def torch_device(name: str) -> str:
    """Map ``run.device`` to a torch device name.

    Raises:
        CaseError: ``"cuda"`` asked for on a machine without CUDA.
    """
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise CaseError('run.device = "cuda", but torch sees no CUDA device here')
    return name


def run_vacancy(case: Case, *, reporter: Reporter) -> VacancyResult:
    """Compute the vacancy formation energy of a ``vacancy-formation`` case.

    Args:
        case: the loaded case.
        reporter: where progress and messages go.

    Raises:
        CaseError: the potential file, the element or the device is wrong.
    """
    from atomistic.calculator import Calculator
    from atomistic.defects import vacancy
    from atomistic.lattice import crystal
    from atomistic.relax import relax
    from multiscale.equilibrium import equilibrium_lattice_constant
    from multiscale.potentials import load_potential

    start = time.perf_counter()
    lattice, settings = case.config.lattice, case.config.relax
    assert lattice is not None and settings is not None and case.config.run is not None
    potential, path = load_potential(case)
    device = torch_device(case.config.run.device)
    calc = Calculator(potential, device=device)
    reporter.info(f"potential: {path} ({', '.join(potential.elements)}), device {device}")

    a = lattice.a
    if a == "relax":
        a = equilibrium_lattice_constant(
            structure=lattice.structure,
            element=lattice.element,
            potential=potential,
            calculator=calc,
        )
        reporter.info(f"equilibrium lattice constant: a = {a:.6f} Å")
    bulk = crystal(lattice.structure, element=lattice.element, a=float(a), size=lattice.size)
    bulk.calc = calc
    n = len(bulk)
    e_bulk = float(bulk.get_potential_energy())
    residual = float(np.linalg.norm(bulk.get_forces(), axis=1).max())
    reporter.info(
        f"perfect crystal: {n} atoms, E_bulk = {e_bulk:.8f} eV "
        f"({e_bulk / n:.8f} eV/atom), max|F| = {residual:.1e} eV/Å"
    )

    defected = vacancy(bulk)  # the atom nearest the cell centre
    defected.calc = calc
    label = f"relax vacancy ({settings.method})"
    result = relax(
        defected,
        method=settings.method,
        fmax=settings.fmax,
        max_steps=settings.max_steps,
        progress=lambda step, e, f: reporter.progress(label, step, e, f),
    )
    state = "converged" if result.converged else "NOT converged"
    reporter.info(
        f"{label}: {state} after {result.steps} steps, E_vac = {result.energy:.8f} eV, "
        f"max|F| = {result.max_force:.2e} eV/Å (fmax {settings.fmax:g})"
    )
    return VacancyResult(
        formation_energy=result.energy - (n - 1) / n * e_bulk,
        e_bulk=e_bulk,
        e_defect=result.energy,
        n_sites=n,
        lattice_constant=float(a),
        max_force=result.max_force,
        steps=result.steps,
        converged=result.converged,
        atoms=result.atoms,
        potential_file=path,
        device=device,
        wall_time_s=time.perf_counter() - start,
    )
