"""The ``vacancy-formation`` case kind: a vacancy in a periodic supercell at fixed cell.

    E_f = E_vac − (N − 1)/N · E_bulk

=============  =================================================================
symbol         code
=============  =================================================================
``E_bulk``     energy of the perfect ``N``-atom supercell (no relaxation needed:
               every atom sits at a centre of symmetry)
``E_vac``      energy of the supercell with its centre atom removed, positions
               relaxed at fixed cell to ``relax.fmax``
=============  =================================================================

(:func:`atomistic.equilibrium.vacancy_formation_energy`.) Outputs: ``summary.json``,
``atoms/relaxed.extxyz`` (forces, site energies, ``region``) and ``case.resolved.toml``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from multiscale import version
from multiscale.config import Case
from multiscale.config.schema import ORIGIN_DEFAULT, ORIGIN_SET
from multiscale.kinds import Finished
from multiscale.outputs import resolved_toml, write_extxyz, write_json, write_text
from multiscale.progress import Reporter
from multiscale.resources import Estimate, machine_text

if TYPE_CHECKING:
    import torch

    from atomistic.equilibrium import VacancyFormation
    from atomistic.potentials.protocol import Potential

__all__ = ["VacancyResult", "VacancySetup", "describe", "resolve", "run", "write"]


@dataclass(frozen=True, kw_only=True)
class VacancySetup:
    """A vacancy case turned into objects.

    Attributes:
        potential: the potential, its element checked.
        potential_file: its file.
        device: the torch device.
    """

    potential: Potential
    potential_file: Path
    device: torch.device


@dataclass(frozen=True, kw_only=True)
class VacancyResult:
    """Outcome of :func:`run`.

    Attributes:
        formation: the relaxed vacancy and its energies.
        lattice_constant: ``a`` in Å (as given, or the relaxed value).
        wall_time_s: seconds for the whole workflow.
    """

    formation: VacancyFormation
    lattice_constant: float
    wall_time_s: float

    @property
    def converged(self) -> bool:
        """The relaxation reached ``relax.fmax``."""
        return bool(self.formation.converged)


def resolve(case: Case, *, comm: Any = None) -> VacancySetup:
    """Load the potential (checks the file and the element) and resolve the device.

    Raises:
        CaseError: a missing or unreadable potential file, a missing element, or CUDA asked
            for without it.
    """
    from multiscale.kinds.shared import case_device, load_case_potential

    potential, path = load_case_potential(case)
    device = case_device(case)
    check_resources(case, float(potential.cutoff))
    return VacancySetup(potential=potential, potential_file=path, device=device)


#: Neighbours per atom assumed for ``lattice.a = "relax"`` (a crystal at its equilibrium
#: lattice constant has 50-150 within a typical cutoff).
RELAXED_NEIGHBOURS = 150


def check_resources(case: Case, cutoff: float) -> None:
    """Refuse a supercell beyond the machine's memory, or too dense a lattice, before work.

    Too dense: more than :data:`~multiscale.resources.MAX_NEIGHBOURS` atoms within ``cutoff``
    (Å) of each (:mod:`multiscale.resources`); nothing is built before these checks.

    Raises:
        CaseError: naming ``lattice.a`` or ``lattice.size``, with the estimate.
    """
    from multiscale.config.schema import toml_value
    from multiscale.resources import check_estimate, check_neighbours, log_density

    lattice = case.config.lattice
    assert lattice is not None and isinstance(lattice.size, tuple)
    if lattice.a != "relax":
        check_neighbours(
            log_density=log_density(lattice.structure, float(lattice.a)),
            cutoff=cutoff,
            where=case.where("lattice.a"),
            key="lattice.a",
            value=toml_value(lattice.a),
        )
    check_estimate(
        _estimate(case, cutoff),
        where=case.where("lattice.size"),
        key="lattice.size",
        value=toml_value(list(lattice.size)),
        what="the supercell",
    )


def _estimate(case: Case, cutoff: float) -> Estimate:
    """Atoms and neighbour pairs of the supercell (:mod:`multiscale.resources`)."""
    import math

    from multiscale.resources import Estimate, log_density, log_neighbours

    lattice = case.config.lattice
    assert lattice is not None and isinstance(lattice.size, tuple)
    log_atoms = math.log10(_count_sites(lattice.structure, lattice.size))
    if lattice.a == "relax":
        return Estimate(log_atoms=log_atoms, log_pairs=log_atoms + math.log10(RELAXED_NEIGHBOURS))
    rho = log_density(lattice.structure, float(lattice.a))
    return Estimate(
        log_atoms=log_atoms, log_pairs=log_atoms + log_neighbours(log_density=rho, cutoff=cutoff)
    )


def _count_sites(structure: str, size: tuple[int, int, int]) -> int:
    """Sites of the supercell (exact integers: a size of ``2**70`` does not overflow)."""
    import math

    from atomistic.lattice import crystal

    return len(crystal(structure, element="Cu", a=1.0)) * math.prod(size)


def describe(case: Case, setup: VacancySetup, *, output: str | Path | None = None) -> list[str]:
    """Lines describing the case (``multiscale check`` and the run log)."""
    cfg = case.config
    lattice, pot, relax = cfg.lattice, cfg.potential, cfg.relax
    assert lattice is not None and pot is not None and relax is not None
    assert cfg.run is not None and isinstance(lattice.size, tuple)
    a = "relaxed under the potential" if lattice.a == "relax" else f"{lattice.a:g} Å"
    nx, ny, nz = lattice.size
    n = _count_sites(lattice.structure, lattice.size)
    elements = ", ".join(setup.potential.elements)
    pot_line = (
        f"{pot.kind} {setup.potential_file} (elements {elements}; "
        f"cutoff {setup.potential.cutoff:.4g} Å)"
    )
    overridden = [k for k, origin in case.origins.items() if origin == ORIGIN_SET]
    defaults = [k for k, origin in case.origins.items() if origin == ORIGIN_DEFAULT]
    return [
        f"case       {case.file} ({cfg.case.kind})",
        f"lattice    {lattice.structure} {lattice.element}, a {a}, "
        f"{nx} x {ny} x {nz} cells = {n} sites (vacancy: centre site removed)",
        f"potential  {pot_line}",
        f"relax      {relax.method} to max|F| <= {relax.fmax:g} eV/Å, "
        f"at most {relax.max_steps} steps",
        f"device     {cfg.run.device}",
        f"needs      {_estimate(case, float(setup.potential.cutoff)).text()} "
        f"(machine: {machine_text()})",
        f"output     {case.output_dir(output)}",
        f"--set      {', '.join(overridden) or '-'}",
        f"defaults   {', '.join(defaults) or '-'}",
    ]


def run(
    case: Case, setup: VacancySetup, *, comm: Any, reporter: Reporter, out: Path | None = None
) -> VacancyResult:
    """Compute the vacancy formation energy (``out`` is not used: the writer writes)."""
    from atomistic.calculator import Calculator
    from atomistic.equilibrium import vacancy_formation_energy
    from multiscale.kinds.shared import case_lattice_constant

    start = time.perf_counter()
    lattice, settings = case.config.lattice, case.config.relax
    assert lattice is not None and settings is not None and isinstance(lattice.size, tuple)
    potential, device = setup.potential, setup.device
    reporter.info(
        f"potential: {setup.potential_file} ({', '.join(potential.elements)}), device {device}"
    )
    a = case_lattice_constant(case, potential, device=device, comm=comm)
    if lattice.a == "relax":
        reporter.info(f"equilibrium lattice constant: a = {a:.6f} Å")
    label = f"relax vacancy ({settings.method})"
    formation = vacancy_formation_energy(
        Calculator(potential, device=device),
        structure=lattice.structure,
        element=lattice.element,
        a=a,
        size=lattice.size,
        fmax=settings.fmax,
        max_steps=settings.max_steps,
        method=settings.method,
        progress=lambda step, e, f: reporter.progress(label, step, e, f),
    )
    n = formation.n_sites
    reporter.info(
        f"perfect crystal: {n} atoms, E_bulk = {formation.e_bulk:.8f} eV "
        f"({formation.e_bulk / n:.8f} eV/atom)"
    )
    state = "converged" if formation.converged else "NOT converged"
    reporter.info(
        f"{label}: {state} after {formation.steps} steps, E_vac = {formation.e_vacancy:.8f} eV, "
        f"max|F| = {formation.max_force:.2e} eV/Å (fmax {settings.fmax:g})"
    )
    return VacancyResult(
        formation=formation, lattice_constant=a, wall_time_s=time.perf_counter() - start
    )


def write(
    case: Case,
    setup: VacancySetup,
    result: VacancyResult,
    *,
    out: Path,
    output_override: str | None,
    comm: Any,
    reporter: Reporter,
    stage: Path | None = None,
) -> Finished:
    """Write ``atoms/relaxed.extxyz``, ``case.resolved.toml`` and ``summary.json`` (last).

    The files go to ``stage`` when given (:func:`multiscale.output_set.staged`), else to
    ``out``.

    Returns:
        What the command prints and its exit status.
    """
    cfg = case.config
    assert cfg.lattice is not None and cfg.relax is not None and cfg.potential is not None
    formation = result.formation
    summary = _summary(case, setup, result)
    summary["mpi_ranks"] = 1 if comm is None else int(comm.size)
    dest = out if stage is None else stage
    if comm is None or comm.rank == 0:
        atoms = formation.atoms
        write_extxyz(
            dest / "atoms" / "relaxed.extxyz",
            atoms,
            results={
                "energy": atoms.get_potential_energy(),
                "forces": atoms.get_forces(),
                "energies": atoms.get_potential_energies(),
            },
        )
        notes = {"run.device": f"used: {setup.device}"}
        if cfg.lattice.a == "relax":
            notes["lattice.a"] = f"relaxed: {result.lattice_constant:.10f} Å"
        if output_override is not None:
            notes["output.directory"] = "overridden by --output"
        values = {
            "potential.file": str(setup.potential_file),
            "output.directory": str(out.resolve()),
        }
        text = resolved_toml(case, values=values, notes=notes, version=version())
        write_text(dest / "case.resolved.toml", text)
        write_json(dest / "summary.json", summary)
    lines = [
        f"vacancy formation energy: {formation.formation_energy:.6f} eV  "
        f"({summary['status']}, {formation.steps} steps, {result.wall_time_s:.1f} s)",
        f"outputs: {out}",
    ]
    warning = None
    if not result.converged:
        warning = (
            f"relaxation stopped at max|F| = {formation.max_force:.2e} eV/Å > relax.fmax = "
            f"{cfg.relax.fmax:g} after {formation.steps} steps; raise relax.max_steps"
        )
    return Finished(summary=summary, lines=lines, warning=warning, converged=result.converged)


def _summary(case: Case, setup: VacancySetup, result: VacancyResult) -> dict[str, Any]:
    cfg = case.config
    assert cfg.lattice is not None and cfg.relax is not None and cfg.potential is not None
    formation = result.formation
    return {
        "status": "converged" if result.converged else "not_converged",
        "kind": cfg.case.kind,
        "quantity": "vacancy formation energy E_f = E_vac - (N-1)/N E_bulk",
        "energy_eV": formation.formation_energy,
        "n_atoms": len(formation.atoms),
        "n_sites": formation.n_sites,
        "structure": cfg.lattice.structure,
        "element": cfg.lattice.element,
        "size": list(cfg.lattice.size),
        "lattice_constant_A": result.lattice_constant,
        "potential": str(setup.potential_file),
        "potential_kind": cfg.potential.kind,
        "e_bulk_eV": formation.e_bulk,
        "e_defect_eV": formation.e_vacancy,
        "max_force_eV_per_A": formation.max_force,
        "fmax_eV_per_A": cfg.relax.fmax,
        "method": cfg.relax.method,
        "steps": formation.steps,
        "device": str(setup.device),
        "wall_time_s": result.wall_time_s,
        "multiscale_version": version(),
    }
