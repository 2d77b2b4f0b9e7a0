"""MPI rank-count invariance: 1 and 2 ranks give the same continuum solution."""

import json
import pathlib
import subprocess
import sys
import textwrap

import pytest

MPIEXEC = pathlib.Path(sys.executable).parent / "mpiexec"

SCRIPT = textwrap.dedent(
    """
    import json, sys

    import dolfinx_solver  # noqa: F401
    import numpy as np
    from mpi4py import MPI

    from continuum import Ball, Disk, HyperelasticProblem, graded_mesh, write_fields


    class NeoHookean:
        def __init__(self, lam, mu):
            self.lam, self.mu = lam, mu

        def __call__(self, F):
            J = np.linalg.det(F)
            lnJ = np.log(J)
            Finv = np.linalg.inv(F)
            FiT = Finv.transpose(0, 2, 1)
            lam, mu, eye = self.lam, self.mu, np.eye(3)
            W = 0.5 * mu * (np.einsum("nij,nij->n", F, F) - 3) - mu * lnJ + 0.5 * lam * lnJ**2
            P = mu * (F - FiT) + lam * lnJ[:, None, None] * FiT
            A = (mu * np.einsum("ik,JL->iJkL", eye, eye)[None]
                 + (mu - lam * lnJ)[:, None, None, None, None]
                 * np.einsum("nJk,nLi->niJkL", Finv, Finv)
                 + lam * np.einsum("niJ,nkL->niJkL", FiT, FiT))
            return W, P, A


    comm = MPI.COMM_WORLD
    F = np.eye(3) + np.array([[0.02, 0.01, 0.0], [-0.01, -0.015, 0.0], [0.02, -0.01, 0.0]])
    cases = {
        "2.5d": dict(outer=Disk((0.0, 0.0), 8.0), hole=Disk((0.3, 0.1), 2.0),
                     focus_radius=3.0, h_min=0.5, h_max=2.0),
        "3d": dict(outer=Ball((0.0, 0.0, 0.0), 4.0), hole=Ball((0.0, 0.2, 0.0), 1.5),
                   focus_radius=2.0, h_min=0.9, h_max=1.6),
    }
    out = {}
    for mode, geometry in cases.items():
        mesh_data = graded_mesh(comm=comm, **geometry)
        problem = HyperelasticProblem(
            mesh_data=mesh_data, law=NeoHookean(0.6, 0.4), mode=mode,
            weight=lambda x: 0.7 + 0.3 * np.tanh(0.5 * (np.linalg.norm(x, axis=1) - 3.0)),
        )
        problem.set_dirichlet(tag=mesh_data.outer_tag, displacement=F)
        problem.add_traction(tag=mesh_data.inner_tag,
                             traction=lambda x: 0.02 * x / np.linalg.norm(x, axis=0))
        result = problem.solve(rtol=1e-13, atol=1e-13)
        u = problem.u.x.array[: 3 * problem.n_owned_nodes]
        out[mode] = dict(
            energy=result["energy"], converged=result["converged"],
            iterations=result["iterations"], n_dofs=problem.n_dofs,
            u_norm=float(np.sqrt(comm.allreduce(u @ u))),
            owned_cells=comm.allgather(mesh_data.mesh.topology.index_map(mesh_data.dim).size_local),
        )
    write_fields(problem=problem, directory=sys.argv[1], beta=lambda x: 0 * x[:, 0])
    if comm.rank == 0:
        print(json.dumps(out))
    """
)


def run(n, tmp_path):
    script = tmp_path / "continuum_mpi.py"
    script.write_text(SCRIPT)
    out = tmp_path / f"out{n}"
    proc = subprocess.run(
        [str(MPIEXEC), "-n", str(n), sys.executable, str(script), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "continuum.xdmf").stat().st_size > 0
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not MPIEXEC.exists(), reason="no mpiexec next to the Python interpreter")
def test_two_ranks_reproduce_the_serial_solution(tmp_path):
    serial, parallel = run(1, tmp_path), run(2, tmp_path)
    for mode in ("2.5d", "3d"):
        s, p = serial[mode], parallel[mode]
        assert s["converged"] and p["converged"]
        assert len(p["owned_cells"]) == 2 and min(p["owned_cells"]) > 0  # really distributed
        assert s["n_dofs"] == p["n_dofs"]
        assert abs(s["energy"] - p["energy"]) <= 1e-10 * abs(s["energy"])
        assert abs(s["u_norm"] - p["u_norm"]) <= 1e-9 * s["u_norm"]
