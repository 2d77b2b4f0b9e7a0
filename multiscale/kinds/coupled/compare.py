"""``reference_error`` of a coupled run: its solution against ``<output>/reference`` (if any).

The metrics are defined in :mod:`atomistic.strain`. A reference is used only when
it was computed for the same problem (lattice, potential, outer domain, defect, strain:
:meth:`~multiscale.kinds.coupled.setup.CoupledSetup.problem_key`), converged, and the coupled run
reached the full load; otherwise ``reference_error`` says why it was skipped.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from multiscale.kinds.coupled.run import CoupledRun

__all__ = ["reference_error"]


def _skip(reason: str, path: str) -> dict[str, Any]:
    return {"skipped": reason, "reference": path}


def reference_error(run: CoupledRun, summary: dict, atoms: Any, *, path: str) -> dict[str, Any]:
    """Energy and strain error of ``run`` against a reference (collective over the mesh).

    Args:
        run: the finished coupled run.
        summary: the reference's ``summary.json``.
        atoms: the reference's atoms (``reference_position``, ``displacement``, ``fixed``).
        path: the reference folder, recorded in the result.

    Returns:
        ``{"energy_error_eV", "strain_error_rel", ...}``, or ``{"skipped": why, ...}``.
    """
    from atomistic.strain import SHELL_FACTOR, coupled_displacements, strain_error

    setup = run.setup
    mine = setup.problem_key()
    theirs = summary.get("problem", {})
    differ = sorted(k for k in mine if mine[k] != theirs.get(k))
    if differ:
        return _skip(f"the reference is for another problem (differs in {', '.join(differ)})", path)
    if summary.get("status") != "converged":
        return _skip("the reference did not converge", path)
    if len(run.steps) != setup.steps or not run.converged:
        return _skip("the coupled run did not converge", path)
    if atoms is None:
        return _skip("the reference has no atoms.extxyz", path)
    X = np.asarray(atoms.arrays["reference_position"], dtype=float)
    u_ref = np.asarray(atoms.arrays["displacement"], dtype=float)
    free = np.asarray(atoms.arrays["fixed"]) == 0
    D = setup.strain
    far_field = setup.boundary_displacement(setup.steps)
    u_c = coupled_displacements(run.system, X, far_field=far_field, period=setup.period)
    cell = pbc = None
    if setup.period is not None:
        cell, pbc = np.diag([1.0, 1.0, setup.period]), (False, False, True)
    cutoff = SHELL_FACTOR * setup.r_nn
    err = strain_error(
        positions=X,
        reference=u_ref,
        approximation=u_c,
        strain=D,
        cutoff=cutoff,
        mask=free,
        cell=cell,
        pbc=pbc or (False, False, False),
        jump=None if setup.dislocation is None else setup.dislocation.jump,
    )
    partials = {}
    if setup.dislocation is not None and "dislocation" in summary:
        from multiscale.kinds.coupled.outputs import dislocation_record

        mine_d = dislocation_record(setup, X[free], u_c[free])
        ref_d = summary["dislocation"]["partial_positions_A"]
        partials = {
            "partial_positions_error_A": float(
                np.max(np.abs(np.subtract(mine_d["partial_positions_A"], ref_d)))
            ),
            "partial_positions_A": mine_d["partial_positions_A"],
            "reference_partial_positions_A": list(ref_d),
        }
    d_ref = float(summary["relaxation_energy_eV"])
    d_c = run.relaxation_energy
    diff = u_c[free] - u_ref[free]
    return {
        "energy_error_eV": abs(d_c - d_ref),
        "energy_error_rel": abs(d_c - d_ref) / abs(d_ref) if d_ref != 0 else float("nan"),
        "strain_error_rel": err,
        "relaxation_energy_coupled_eV": d_c,
        "relaxation_energy_reference_eV": d_ref,
        "max_displacement_error_A": float(np.linalg.norm(diff, axis=1).max(initial=0.0)),
        **partials,
        "n_sites": int(free.sum()),
        "neighbour_shell_A": cutoff,
        "reference": path,
    }
