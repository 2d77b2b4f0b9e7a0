"""Writing a finished run to its output folder (``summary.json`` last, as the commit mark)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from multiscale import version
from multiscale.config import Case
from multiscale.outputs import resolved_toml, write_extxyz, write_json, write_text
from multiscale.vacancy import VacancyResult

__all__ = ["write_vacancy_outputs"]


def write_vacancy_outputs(
    case: Case, result: VacancyResult, *, out: Path, output_override: str | None = None
) -> dict[str, Any]:
    """Write ``atoms/relaxed.extxyz``, ``case.resolved.toml`` and ``summary.json``.

    Args:
        case: the case that was run.
        result: what :func:`multiscale.vacancy.run_vacancy` returned.
        out: the output folder.
        output_override: the ``--output`` folder, if one was given.

    Returns:
        The summary that was written.
    """
    cfg = case.config
    assert cfg.lattice is not None and cfg.relax is not None and cfg.potential is not None
    atoms = result.atoms
    write_extxyz(
        out / "atoms" / "relaxed.extxyz",
        atoms,
        results={
            "energy": atoms.get_potential_energy(),
            "forces": atoms.get_forces(),
            "energies": atoms.get_potential_energies(),
        },
    )
    notes = {}
    if cfg.lattice.a == "relax":
        notes["lattice.a"] = f"relaxed: {result.lattice_constant:.10f} Å"
    notes["run.device"] = f"used: {result.device}"
    if output_override is not None:
        notes["output.directory"] = "overridden by --output"
    values = {
        "potential.file": str(result.potential_file),
        "output.directory": str(out.resolve()),
    }
    write_text(
        out / "case.resolved.toml",
        resolved_toml(case, values=values, notes=notes, version=version()),
    )
    summary = {
        "status": "converged" if result.converged else "not_converged",
        "kind": cfg.case.kind,
        "quantity": "vacancy formation energy E_f = E_vac - (N-1)/N E_bulk",
        "energy_eV": result.formation_energy,
        "n_atoms": len(atoms),
        "n_sites": result.n_sites,
        "structure": cfg.lattice.structure,
        "element": cfg.lattice.element,
        "size": list(cfg.lattice.size),
        "lattice_constant_A": result.lattice_constant,
        "potential": str(result.potential_file),
        "potential_kind": cfg.potential.kind,
        "e_bulk_eV": result.e_bulk,
        "e_defect_eV": result.e_defect,
        "max_force_eV_per_A": result.max_force,
        "fmax_eV_per_A": cfg.relax.fmax,
        "method": cfg.relax.method,
        "steps": result.steps,
        "device": result.device,
        "wall_time_s": result.wall_time_s,
        "multiscale_version": version(),
    }
    write_json(out / "summary.json", summary)
    return summary
