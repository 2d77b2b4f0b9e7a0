"""``reference_error`` of a coupled run: its solution against ``<output>/reference`` (if any).

The metrics are :func:`atomistic.strain.strain_error` and :func:`atomistic.strain.energy_error`.
A reference is used only when it was computed for the same problem (lattice, potential,
outer domain, defect, strain: :meth:`~multiscale.kinds.coupled.setup.CoupledSetup.problem_key`),
converged, and the coupled run reached the full load; otherwise ``reference_error`` says why it
was skipped.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from multiscale.kinds.coupled.solve import CoupledRun

__all__ = ["reference_error"]


def _skip(reason: str, path: str) -> dict[str, Any]:
    return {"skipped": reason, "reference": path}


def _why_not(run: CoupledRun, summary: dict, atoms: Any) -> str | None:
    """Why the reference cannot be compared with, or None."""
    setup = run.setup
    mine = setup.problem_key()
    theirs = summary.get("problem", {})
    differ = sorted(k for k in mine if mine[k] != theirs.get(k))
    if differ:
        return f"the reference is for another problem (differs in {', '.join(differ)})"
    if summary.get("status") != "converged":
        return "the reference did not converge"
    if not run.steps or run.last.step != setup.loading.steps or not run.converged:
        return "the coupled run did not converge"
    if atoms is None:
        return "the reference has no atoms.extxyz"
    return None


def _partials(run: CoupledRun, summary: dict, X: np.ndarray, u: np.ndarray) -> dict[str, Any]:
    """Where the run's partials sit against the reference's (a dislocation only)."""
    setup = run.setup
    if setup.dislocation is None or "dislocation" not in summary:
        return {}
    from multiscale.kinds.coupled.outputs import dislocation_record

    mine = dislocation_record(setup, X, u)["partial_positions_A"]
    ref = summary["dislocation"]["partial_positions_A"]
    return {
        "partial_positions_error_A": float(np.max(np.abs(np.subtract(mine, ref)))),
        "partial_positions_A": mine,
        "reference_partial_positions_A": list(ref),
    }


def reference_error(run: CoupledRun, summary: dict, atoms: Any, *, path: str) -> dict[str, Any]:
    """Energy and strain error of ``run`` against a reference (collective over the mesh).

    Args:
        run: the finished coupled run.
        summary: the reference's ``summary.json``.
        atoms: the reference's atoms (``reference_position``, ``displacement``, ``fixed``).
        path: the reference folder, recorded in the result.

    Returns:
        ``{"energy_error_eV", "energy_error_rel", "strain_error_rel", ...}``, or
        ``{"skipped": why, ...}``.
    """
    from atomistic.strain import SHELL_FACTOR, energy_error, strain_error

    reason = _why_not(run, summary, atoms)
    if reason is not None:
        return _skip(reason, path)
    setup = run.setup
    period = setup.lattice.period
    X = np.asarray(atoms.arrays["reference_position"], dtype=float)
    u_ref = np.asarray(atoms.arrays["displacement"], dtype=float)
    free = np.asarray(atoms.arrays["fixed"]) == 0
    far_field = setup.boundary_displacement(setup.loading.steps)
    u_c = run.system.displacement_at(X, far_field=far_field, period=period)
    cell = pbc = None
    if period is not None:
        cell, pbc = np.diag([1.0, 1.0, period]), (False, False, True)
    cutoff = SHELL_FACTOR * setup.lattice.r_nn
    err = strain_error(
        positions=X,
        reference=u_ref,
        approximation=u_c,
        strain=setup.loading.strain,
        cutoff=cutoff,
        mask=free,
        cell=cell,
        pbc=pbc or (False, False, False),
        jump=None if setup.dislocation is None else setup.dislocation.jump,
    )
    d_ref = float(summary["relaxation_energy_eV"])
    d_c = run.relaxation_energy
    diff = u_c[free] - u_ref[free]
    return {
        **energy_error(d_c, d_ref),
        "strain_error_rel": err,
        "relaxation_energy_coupled_eV": d_c,
        "relaxation_energy_reference_eV": d_ref,
        "max_displacement_error_A": float(np.linalg.norm(diff, axis=1).max(initial=0.0)),
        **_partials(run, summary, X[free], u_c[free]),
        "n_sites": int(free.sum()),
        "neighbour_shell_A": cutoff,
        "reference": path,
    }
