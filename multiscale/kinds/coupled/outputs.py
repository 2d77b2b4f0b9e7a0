"""Writing a coupled run and a reference to the output folder (``summary.json`` last).

==================================  ==========================================================
file                                content
==================================  ==========================================================
``summary.json``                    status, energies, counts, forces, per-step iterations,
                                    ghost forces, ``reference_error`` when a reference exists
``case.resolved.toml``              every parameter with its origin and resolved ``"auto"``
``atoms/coupled.extxyz``            free + pad atoms at deformed positions; per-atom
                                    ``region`` (0 core, 1 handshake, 2 pad), ``beta``,
                                    ``displacement`` (OVITO, ASE)
``continuum/continuum*``            FE fields with ``beta`` (``.bp`` for ParaView, ``.xdmf``)
``reference/summary.json``          written by ``multiscale reference``
``reference/atoms.extxyz``          reference atoms, deformed positions; per-atom
                                    ``reference_position``, ``displacement``, ``fixed``
==================================  ==========================================================

Only rank 0 writes files, except the continuum fields (a collective write).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from multiscale import version
from multiscale.config import Case
from multiscale.kinds.coupled.reference import ReferenceResult
from multiscale.kinds.coupled.setup import CoupledSetup
from multiscale.kinds.coupled.solve import CoupledRun
from multiscale.outputs import resolved_toml, write_extxyz, write_json, write_text

__all__ = [
    "REFERENCE_DIR",
    "coupled_atoms",
    "coupled_summary",
    "reference_summary",
    "write_continuum",
    "write_coupled_outputs",
    "write_reference_outputs",
]

#: Folder of the reference, inside the output folder.
REFERENCE_DIR = "reference"


def _resolved(case: Case, setup: CoupledSetup, out: Path, override: str | None, **more: str) -> str:
    notes = dict(setup.notes) | {k.replace("__", "."): v for k, v in more.items()}
    if override is not None:
        notes["output.directory"] = "overridden by --output"
    values = {
        "potential.file": str(setup.potential.file),
        "output.directory": str(out.resolve()),
    }
    return resolved_toml(case, values=values, notes=notes, version=version())


def _case_record(case: Case, setup: CoupledSetup) -> dict[str, Any]:
    return {
        "kind": case.config.case.kind,
        "dimension": setup.dimension,
        "structure": setup.lattice.structure,
        "element": setup.lattice.element,
        "lattice_constant_A": setup.lattice.a,
        "potential": str(setup.potential.file),
        "cutoff_A": setup.potential.range,
        "slab_period_A": setup.lattice.period,
        "strain": setup.loading.strain.tolist(),
        "void_radius_A": setup.void_radius,
        "problem": setup.problem_key(),
        "device": str(setup.potential.device),
        "multiscale_version": version(),
    }


def write_continuum(run: CoupledRun, *, out: Path) -> None:
    """Write the FE fields with β into ``out/continuum`` (collective: call on every rank)."""
    from continuum.output import write_fields

    system = run.system
    write_fields(
        problem=system.problem,
        directory=out / "continuum",
        time=float(run.last.load_factor),
        beta=system.handshake.beta,
        stem="continuum",
    )


def coupled_atoms(run: CoupledRun) -> Any:
    """ASE ``Atoms`` of the free and pad atoms at the solution (collective: every rank)."""
    from ase import Atoms

    system = run.system
    u = system.atom_displacements()
    X = system.positions
    setup = run.setup
    cell = np.zeros((3, 3))
    pbc = (False, False, False)
    if setup.lattice.period is not None:
        cell = np.diag([0.0, 0.0, setup.lattice.period])
        pbc = (False, False, True)
    atoms = Atoms(symbols=system.symbols, positions=X + u, cell=cell, pbc=pbc)
    atoms.set_array("region", np.asarray(system.region, dtype=int))
    atoms.set_array("beta", np.asarray(system.beta, dtype=float))
    atoms.set_array("displacement", u)
    atoms.set_array("reference_position", X)
    atoms.info["n_free"] = int(system.n_free)
    return atoms


def dislocation_record(
    setup: CoupledSetup, positions: np.ndarray, displacements: np.ndarray
) -> dict:
    """``summary["dislocation"]``: Burgers vector, line and where its partials sit.

    The slip profile (:mod:`atomistic.dislocation`) is sampled on ``c_x ± (R + w − 1 Å)``,
    the reach of the coupled free atoms, for the coupled run and its reference alike.
    """
    from atomistic.dislocation import dissociation

    disl = setup.dislocation
    assert disl is not None
    record: dict[str, Any] = {
        "burgers_A": disl.burgers.tolist(),
        "center_A": disl.center.tolist(),
        "plane_spacing_A": disl.plane_spacing,
    }
    record.update(
        dissociation(
            positions,
            displacements,
            burgers=disl.burgers,
            center=disl.center,
            plane_spacing=disl.plane_spacing,
            half_width=setup.handshake.outer_radius - 1.0,
        )
    )
    return record


def crack_record(setup: CoupledSetup, positions: np.ndarray, displacements: np.ndarray) -> dict:
    """``summary["crack"]``: the load, the Griffith coefficient and where the tip is.

    The tip is the largest ``x`` whose opening across the crack plane exceeds half the plane
    spacing (:func:`coupling.crack.tip_position`), among the given sites (the coupled free
    atoms, or the reference's); ``tip_advance_A`` is that ``x`` minus the initial tip's.
    """
    from continuum.elastic_fields import MPA_SQRT_M_TO_EV_PER_A2_5 as K_UNIT
    from coupling.crack import tip_position

    crack, load = setup.crack, setup.loading
    assert crack is not None
    tip = tip_position(crack.tip, crack.plane_spacing, positions, displacements)
    return {
        "initial_tip_A": crack.tip.tolist(),
        "plane_spacing_A": crack.plane_spacing,
        "k_i_MPa_sqrt_m": [load.stress_intensity(k) / K_UNIT for k in range(1, load.steps + 1)],
        "energy_release_coefficient_A3_per_eV": crack.energy_release_coefficient(),
        "tip_x_A": tip,
        "tip_advance_A": None if tip is None else tip - float(crack.tip[0]),
    }


def coupled_summary(
    run: CoupledRun, case: Case, *, reference_error: dict | None, atoms: Any = None
) -> dict:
    """The ``summary.json`` of a coupled run.

    ``atoms`` (from :func:`coupled_atoms`) is needed for a dislocation's partials.
    """
    system, setup, last = run.system, run.setup, run.last
    n_atoms = len(system.positions)
    summary: dict[str, Any] = {
        "status": "converged"
        if run.converged and run.steps and run.last.step == setup.loading.steps
        else "not_converged",
        "energy_eV": last.energy,
        "n_atoms": n_atoms,
        "n_fe_dofs": int(system.problem.n_dofs),
        "max_force_eV_per_A": run.max_force,
        "wall_time_s": run.wall_time_s,
        "n_free_atoms": int(system.n_free),
        "n_pad_atoms": int(n_atoms - system.n_free),
        "relaxation_energy_eV": run.relaxation_energy,
        "predictor_energy_eV": last.predictor_energy,
        "energy_parts_eV": run.energy_parts,
        "max_atom_force_eV_per_A": last.max_atom_force,
        "max_fe_residual_eV_per_A": last.max_fe_residual,
        "ghost_force_eV_per_A": max(last.ghost_force_atoms, last.ghost_force_fe),
        "ghost_force_atoms_eV_per_A": last.ghost_force_atoms,
        "ghost_force_fe_eV_per_A": last.ghost_force_fe,
        "newton_iterations": [s.newton_iterations for s in run.steps],
        "krylov_iterations": [s.krylov_iterations for s in run.steps],
        "load_steps": [s.as_dict() for s in run.steps],
        "load_step_cuts": list(run.cuts),
        "load_factor_reached": last.load_factor,
        "fmax_eV_per_A": setup.solver.fmax,
        "kappa_eV_per_A2": setup.coupling.kappa,
        "ghost_force_correction": setup.coupling.ghost_force_correction,
        "correction_passes": [s.as_dict()["correction_passes"] for s in run.steps],
        "core_radius_A": setup.handshake.core_radius,
        "handshake_width_A": setup.handshake.width,
        "pad_width_A": setup.handshake.pad_width,
        "mpi_ranks": int(system.comm.size),
        "build_time_s": run.build_time_s,
    }
    summary.update(_case_record(case, setup))
    if setup.dislocation is not None and atoms is not None:
        n = int(system.n_free)
        summary["dislocation"] = dislocation_record(
            setup, atoms.arrays["reference_position"][:n], atoms.arrays["displacement"][:n]
        )
    if setup.crack is not None and atoms is not None:
        n = int(system.n_free)
        summary["crack"] = crack_record(
            setup, atoms.arrays["reference_position"][:n], atoms.arrays["displacement"][:n]
        )
    if reference_error is not None:
        summary["reference_error"] = reference_error
    if run.adaptive is not None:
        summary["adaptivity"] = run.adaptive.as_dict()
    return summary


def write_coupled_outputs(
    case: Case,
    run: CoupledRun,
    *,
    atoms: Any,
    out: Path,
    summary: dict,
    output_override: str | None,
    output_dir: Path | None = None,
) -> None:
    """Write ``atoms/coupled.extxyz``, ``case.resolved.toml``, then ``summary.json`` (rank 0).

    ``out`` is the folder written (the staging folder when staged), ``output_dir`` the run's
    output folder that ``case.resolved.toml`` names (``out`` when None).

    ``atoms`` comes from :func:`coupled_atoms` (a collective call); the continuum fields are
    written by :func:`write_continuum`, on every rank.
    """
    write_extxyz(out / "atoms" / "coupled.extxyz", atoms, results={"energy": run.last.energy})
    named = out if output_dir is None else output_dir
    write_text(out / "case.resolved.toml", _resolved(case, run.setup, named, output_override))
    write_json(out / "summary.json", summary)


def reference_summary(case: Case, setup: CoupledSetup, result: ReferenceResult) -> dict:
    """The ``reference/summary.json`` of a reference run (relaxed to ``reference.fmax``)."""
    ref = setup.reference
    summary: dict[str, Any] = {
        "status": "converged" if result.converged else "not_converged",
        "energy_eV": result.energy,
        "n_atoms": len(result.atoms),
        "max_force_eV_per_A": result.max_force,
        "wall_time_s": result.wall_time_s,
        "relaxation_energy_eV": result.relaxation_energy,
        "unrelaxed_energy_eV": result.unrelaxed_energy,
        "n_free_atoms": int(result.free.sum()),
        "n_held_atoms": int((~result.free).sum()),
        "fmax_eV_per_A": ref.fmax,
        "engine": result.engine,
        "method": result.method,
        "load_steps": result.steps,
    }
    summary.update(_case_record(case, setup))
    if setup.dislocation is not None:
        atoms = result.atoms
        summary["dislocation"] = dislocation_record(
            setup, atoms.arrays["reference_position"], atoms.arrays["displacement"]
        )
    if setup.crack is not None:
        atoms = result.atoms
        summary["crack"] = crack_record(
            setup,
            atoms.arrays["reference_position"][result.free],
            atoms.arrays["displacement"][result.free],
        )
    return summary


def write_reference_outputs(
    case: Case,
    setup: CoupledSetup,
    result: ReferenceResult,
    *,
    out: Path,
    output_override: str | None,
    folder: Path | None = None,
) -> dict:
    """Write ``reference/atoms.extxyz``, ``reference/case.resolved.toml``, then the summary.

    ``folder`` replaces ``out/reference`` as the folder written (the staging folder of
    :func:`multiscale.output_set.staged`).
    """
    folder = out / REFERENCE_DIR if folder is None else folder
    atoms = result.atoms
    write_extxyz(
        folder / "atoms.extxyz",
        atoms,
        results={"energy": result.energy, "forces": atoms.get_forces()},
    )
    fmax = setup.reference.fmax
    text = _resolved(case, setup, out, output_override, reference__fmax=f"used: {fmax:g}")
    write_text(folder / "case.resolved.toml", text)
    summary = reference_summary(case, setup, result)
    write_json(folder / "summary.json", summary)
    return summary


def read_reference(out: Path) -> tuple[dict, Any] | None:
    """``(summary, atoms)`` of the reference in ``out/reference``.

    ``atoms`` is None if its file is missing; the result is None if there is no summary.
    """
    import ase.io

    folder = out / REFERENCE_DIR
    if not (folder / "summary.json").is_file():
        return None
    summary = json.loads((folder / "summary.json").read_text())
    atoms_file = folder / "atoms.extxyz"
    # parallel=False: every rank reads for itself (ASE's default broadcasts from rank 0)
    return summary, ase.io.read(atoms_file, parallel=False) if atoms_file.is_file() else None
