"""Newton and Krylov iteration counts of the coupled solver as the FE mesh is refined.

A 2.5D void in Cu (Cu_mishin1 EAM, Cauchy–Born continuum) under biaxial strain is solved on
graded meshes whose element sizes are halved level by level. The preconditioner holds the
assembled FE tangent, so the counts should stay flat. Prints JSON:

    .venv/bin/python bench/solver_scaling.py [--levels 3] [--linear-solver auto|gamg|mumps]
        [--tangent-tolerance TOL]

``auto`` (the solver's default) factorises with MUMPS on these 2D meshes; ``gamg`` shows the
multigrid alternative (its counts grow here: 42, 53, 75 CG iterations with the default plain
aggregation; 37, 39, 63 with smoothed aggregation, PETSC_OPTIONS=
"-multiscale_newton_gamg_pc_gamg_agg_nsmooths 1", whose coarse operators cost more to build
and apply).
"""

import argparse
import dataclasses
import json
import time

import dolfinx_solver  # noqa: F401
import numpy as np
from mpi4py import MPI

from atomistic import EAM, CauchyBorn, Cylinder, finite_cluster, unit_cell
from continuum.geometry import Disk
from continuum.mesh import graded_mesh
from continuum.problem import HyperelasticProblem
from coupling.handshake import Handshake
from coupling.solver import LINEAR_SOLVERS, SolverOptions
from coupling.system import build_coupled_system, homogeneous

A0 = 3.614925


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", type=int, default=3)
    parser.add_argument("--linear-solver", choices=LINEAR_SOLVERS, default="auto")
    parser.add_argument(
        "--tangent-tolerance", type=float, default=None, help="default: the solver's"
    )
    args = parser.parse_args()
    comm = MPI.COMM_WORLD
    eam = EAM.from_file("Cu_mishin1.eam.alloy")
    law = CauchyBorn(eam, unit_cell("fcc", element="Cu", a=A0))
    rc = eam.cutoff
    hs = Handshake(shape="cylinder", center=(0, 0, 0), core_radius=12.0, width=2 * rc, pad_width=rc)
    region = Cylinder(center=(0, 0, 0), radius=hs.atom_radius + 1, axis=2)
    perfect = finite_cluster("fcc", element="Cu", a=A0, region=region, periodic_axes=(2,))
    atoms = perfect[np.linalg.norm(perfect.positions[:, :2], axis=1) > 4.0]
    F = np.diag([1.01, 1.01, 1.0])
    t = perfect.cell[2, 2]  # continuum energy per slab period, like the atoms
    rows = []
    for level in range(args.levels):
        scale = 0.5**level
        md = graded_mesh(
            comm=comm,
            outer=Disk(center=(0, 0), radius=150.0),
            hole=Disk(center=(0, 0), radius=hs.core_radius),
            focus_radius=hs.atom_radius,
            h_min=2.5 * scale,
            h_max=25.0 * scale,
            growth=0.3,
        )
        problem = HyperelasticProblem(
            mesh_data=md, law=law, mode="2.5d", weight=lambda x: t * hs.continuum_weight(x)
        )
        system = build_coupled_system(
            potential=eam,
            atoms=atoms,
            handshake=hs,
            problem=problem,
            kappa=1.0,
            perfect_atoms=perfect,
        )
        system.set_boundary(homogeneous(F), predictor=homogeneous(F))
        system.z = system.state_from(homogeneous(F))
        t0 = time.perf_counter()
        options = SolverOptions(fmax=1e-8, linear_solver=args.linear_solver)
        if args.tangent_tolerance is not None:
            options = dataclasses.replace(options, tangent_tolerance=args.tangent_tolerance)
        result = system.solve(options)
        rows.append(
            {
                "level": level,
                "h_min_A": 2.5 * scale,
                "n_fe_dofs": problem.n_dofs,
                "n_free_atoms": system.n_free,
                "newton": result.newton_iterations,
                "krylov": result.krylov_iterations,
                "preconditioner_builds": result.preconditioner_builds,
                "converged": result.converged,
                "energy_eV": result.energy,
                "time_s": round(time.perf_counter() - t0, 2),
            }
        )
    if comm.rank == 0:
        case = {"case": "2.5D void in Cu, biaxial 1 %", "linear_solver": args.linear_solver}
        print(json.dumps({**case, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
