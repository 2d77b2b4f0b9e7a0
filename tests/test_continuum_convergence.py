"""P1 convergence rates against the Lamé thick-walled cylinder (plane strain, 2.5D).

A cylinder ``a < r < b`` under inner pressure ``p`` has ``u = (C r + D/r) e_r`` with
``C = p a² / (2 (λ+μ)(b² − a²))`` and ``D = p a² b² / (2 μ (b² − a²))`` (traction-free outer
surface). The FE problem imposes the exact ``u`` on ``r = b`` and the traction
``t = σ n = p e_r`` on the hole (``n = −e_r``) through ``add_traction``.
"""

import numpy as np
import ufl
from dolfinx import fem
from mpi4py import MPI

from continuum import Disk, HyperelasticProblem, LinearElasticLaw, graded_mesh, isotropic_stiffness

A_IN, B_OUT, PRESSURE = 1.0, 4.0, 0.01  # Å, Å, eV/Å³
LAM, MU = 0.6, 0.4  # eV/Å³
C = PRESSURE * A_IN**2 / (2 * (LAM + MU) * (B_OUT**2 - A_IN**2))
D = PRESSURE * A_IN**2 * B_OUT**2 / (2 * MU * (B_OUT**2 - A_IN**2))


def exact_numpy(X):
    r2 = X[0] ** 2 + X[1] ** 2
    s = C + D / r2
    return np.stack([s * X[0], s * X[1], np.zeros_like(r2)])


def errors(h):
    mesh_data = graded_mesh(
        comm=MPI.COMM_SELF,
        outer=Disk((0.0, 0.0), B_OUT),
        hole=Disk((0.0, 0.0), A_IN),
        focus_radius=B_OUT,
        h_min=h,
        h_max=h,
    )
    law = LinearElasticLaw(isotropic_stiffness(lam=LAM, mu=MU))
    problem = HyperelasticProblem(mesh_data=mesh_data, law=law, mode="2.5d")
    problem.set_dirichlet(tag=mesh_data.outer_tag, displacement=exact_numpy)
    problem.add_traction(
        tag=mesh_data.inner_tag,
        traction=lambda x: PRESSURE * x / np.sqrt(x[0] ** 2 + x[1] ** 2),
    )
    result = problem.solve()
    assert result["converged"] and result["iterations"] == 1

    x = ufl.SpatialCoordinate(mesh_data.mesh)
    s = C + D / (x[0] ** 2 + x[1] ** 2)
    u_exact = ufl.as_vector([s * x[0], s * x[1], 0.0])
    e = problem.u - u_exact
    dx = ufl.dx(domain=mesh_data.mesh, metadata={"quadrature_degree": 6})
    l2 = np.sqrt(fem.assemble_scalar(fem.form(ufl.inner(e, e) * dx)))
    h1 = np.sqrt(fem.assemble_scalar(fem.form(ufl.inner(ufl.grad(e), ufl.grad(e)) * dx)))
    norm = np.sqrt(fem.assemble_scalar(fem.form(ufl.inner(u_exact, u_exact) * dx)))
    return l2 / norm, h1


def test_lame_cylinder_rates_are_two_in_l2_and_one_in_energy():
    hs = [0.4, 0.2, 0.1]
    l2, h1 = np.array([errors(h) for h in hs]).T
    rate_l2 = np.polyfit(np.log(hs), np.log(l2), 1)[0]
    rate_h1 = np.polyfit(np.log(hs), np.log(h1), 1)[0]
    assert l2[-1] < 5e-3
    assert 1.8 < rate_l2 < 2.3, (l2, rate_l2)
    assert 0.85 < rate_h1 < 1.25, (h1, rate_h1)
