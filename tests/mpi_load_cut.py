"""A crack whose first load step fails, run under mpiexec by test_load_cuts.py.

The failure is injected as in ``test_load_cuts._run``: the first solve's state is wrecked
(random displacements) and the step reported as not converged, so that the run must cut the
step, restore the state from before it on every rank and solve the two halves. Rank 0
writes the cuts, the loads, the energies and the crack tips to the JSON path given after
the case folder.
"""

import dataclasses
import json
import sys

import dolfinx_solver  # noqa: F401
import numpy as np
from mpi4py import MPI

import multiscale.kinds.coupled.solve as coupled_solve
from multiscale.config import load_case
from multiscale.kinds.coupled.setup import resolve_setup
from multiscale.progress import Reporter

comm = MPI.COMM_WORLD
setup = resolve_setup(load_case(sys.argv[1]), comm=comm)
setup = dataclasses.replace(setup, loading=dataclasses.replace(setup.loading, steps=1, max_cuts=2))
real, wrecked = coupled_solve.solve_step, []


def solve_step(setup, system, k, reporter, *, previous=None, **kwargs):
    record = real(setup, system, k, reporter, previous=previous, **kwargs)
    if not wrecked:
        wrecked.append(k)
        z = system.z.copy()
        rng = np.random.default_rng(comm.rank)
        z.array[:] += rng.normal(scale=0.3, size=z.array.shape)
        system.z = z
        return dataclasses.replace(record, converged=False, reason="DIVERGED_LINE_SEARCH")
    return record


coupled_solve.solve_step = solve_step
run = coupled_solve.run_coupled(setup, comm=comm, reporter=Reporter(enabled=False))
if comm.rank == 0:
    result = {
        "ranks": comm.size,
        "converged": bool(run.converged),
        "cuts": run.cuts,
        "steps": [s.step for s in run.steps],
        "energies": [s.energy for s in run.steps],
        "tips": [s.crack_tip_x for s in run.steps],
        "newton": [s.newton_iterations for s in run.steps],
    }
    with open(sys.argv[2], "w") as f:
        json.dump(result, f)
