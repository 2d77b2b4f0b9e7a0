"""HyperelasticProblem: patch test, derivatives against finite differences, weight and loads."""

import numpy as np
import pytest
from mpi4py import MPI

from continuum import (
    Ball,
    Box,
    Disk,
    HyperelasticProblem,
    LinearElasticLaw,
    Rectangle,
    graded_mesh,
    isotropic_stiffness,
)

LAM, MU = 0.6, 0.4  # eV/Å³


class NeoHookean:
    """Compressible neo-Hookean: W = μ/2 (tr FᵀF − 3) − μ ln J + λ/2 (ln J)²."""

    def __init__(self, *, lam, mu):
        self.lam, self.mu = lam, mu

    def __call__(self, F):
        J = np.linalg.det(F)
        lnJ = np.log(J)
        Finv = np.linalg.inv(F)
        FinvT = Finv.transpose(0, 2, 1)
        lam, mu = self.lam, self.mu
        W = 0.5 * mu * (np.einsum("nij,nij->n", F, F) - 3) - mu * lnJ + 0.5 * lam * lnJ**2
        P = mu * (F - FinvT) + lam * lnJ[:, None, None] * FinvT
        eye = np.eye(3)
        A = (
            mu * np.einsum("ik,JL->iJkL", eye, eye)[None]
            + (mu - lam * lnJ)[:, None, None, None, None] * np.einsum("nJk,nLi->niJkL", Finv, Finv)
            + lam * np.einsum("niJ,nkL->niJkL", FinvT, FinvT)
        )
        return W, P, A


LAWS = {
    "linear": LinearElasticLaw(isotropic_stiffness(lam=LAM, mu=MU)),
    "neo-hookean": NeoHookean(lam=LAM, mu=MU),
}
# 2.5D: the third column of F is e_z (F = I + [∂u/∂x, ∂u/∂y, 0]); anti-plane shear included
F_25D = np.eye(3) + np.array([[0.02, 0.012, 0.0], [-0.015, -0.01, 0.0], [0.03, -0.02, 0.0]])
F_3D = np.eye(3) + np.array([[0.02, 0.012, -0.01], [-0.015, -0.01, 0.008], [0.03, -0.02, 0.015]])


@pytest.fixture(scope="module")
def disk_mesh():
    return graded_mesh(
        comm=MPI.COMM_SELF,
        outer=Disk((0.0, 0.0), 6.0),
        hole=Disk((0.4, -0.2), 2.0),
        focus_radius=2.5,
        h_min=0.6,
        h_max=1.5,
    )


@pytest.fixture(scope="module")
def ball_mesh():
    return graded_mesh(
        comm=MPI.COMM_SELF,
        outer=Ball((0.0, 0.0, 0.0), 4.0),
        hole=Ball((0.2, 0.0, -0.1), 1.5),
        focus_radius=2.0,
        h_min=0.9,
        h_max=1.6,
    )


def setup(request, mode):
    mesh_data = request.getfixturevalue("disk_mesh" if mode == "2.5d" else "ball_mesh")
    F = F_25D if mode == "2.5d" else F_3D
    return mesh_data, F


def exact(problem, F):
    X = problem.dof_coordinates()
    return (X @ (F - np.eye(3)).T).ravel()


def test_neo_hookean_reference_law_is_consistent():
    """The test's own nonlinear law: P and A are the derivatives of W."""
    law = NeoHookean(lam=LAM, mu=MU)
    F = np.eye(3) + 0.1 * np.random.default_rng(1).standard_normal((3, 3, 3))
    W, P, A = law(F)
    h = 1e-6
    for k in range(3):
        for L in range(3):
            dF = np.zeros((3, 3))
            dF[k, L] = h
            (Wp, Pp, _), (Wm, Pm, _) = law(F + dF), law(F - dF)
            np.testing.assert_allclose((Wp - Wm) / (2 * h), P[:, k, L], atol=1e-9)
            np.testing.assert_allclose((Pp - Pm) / (2 * h), A[:, :, :, k, L], atol=1e-8)


@pytest.mark.parametrize("law_name", sorted(LAWS))
@pytest.mark.parametrize("mode", ["2.5d", "3d"])
def test_patch_test_homogeneous_deformation_is_exact(request, mode, law_name):
    mesh_data, F = setup(request, mode)
    problem = HyperelasticProblem(mesh_data=mesh_data, law=LAWS[law_name], mode=mode)
    for tag in (mesh_data.outer_tag, mesh_data.inner_tag):
        problem.set_dirichlet(tag=tag, displacement=F)
    u_exact = exact(problem, F)
    free = np.setdiff1d(np.arange(u_exact.size), problem.dirichlet_dofs())
    assert 0 < free.size < u_exact.size

    # the exact field is in equilibrium: no force on any interior DOF
    problem.u.x.array[:] = u_exact
    R = problem.residual().array
    scale = np.abs(R).max()  # boundary reactions ~ |P| h^(d-1)
    assert scale > 1e-4
    assert np.abs(R[free]).max() < 1e-10 * scale

    # Newton from zero interior displacement recovers it
    problem.u.x.array[:] = 0.0
    result = problem.solve()
    assert result["converged"]
    if law_name == "linear":
        assert result["iterations"] == 1
    else:
        assert result["iterations"] <= 5
    np.testing.assert_allclose(problem.u.x.array, u_exact, rtol=0, atol=1e-11)

    # and from a small perturbation of it, in at most two (quadratically converging) steps
    rng = np.random.default_rng(0)
    problem.u.x.array[free] += 1e-4 * rng.standard_normal(free.size)
    result = problem.solve()
    assert result["converged"] and 1 <= result["iterations"] <= 2
    np.testing.assert_allclose(problem.u.x.array, u_exact, rtol=0, atol=1e-11)


def smooth_weight(x):
    return 0.6 + 0.3 * np.sin(0.7 * x[:, 0]) * np.cos(0.5 * x[:, 1]) + 0.05 * x[:, 2]


@pytest.mark.parametrize("mode", ["2.5d", "3d"])
def test_residual_and_tangent_are_derivatives(request, mode):
    mesh_data, _ = setup(request, mode)
    problem = HyperelasticProblem(
        mesh_data=mesh_data, law=LAWS["neo-hookean"], mode=mode, weight=smooth_weight
    )
    problem.add_traction(tag=mesh_data.inner_tag, traction=lambda x: 0.01 * x)
    problem.add_traction(tag=mesh_data.outer_tag, traction=[0.002, -0.001, 0.003])
    rng = np.random.default_rng(7)
    u0 = 0.02 * rng.standard_normal(problem.u.x.array.size)
    problem.u.x.array[:] = u0
    R = problem.residual().array.copy()
    K = problem.tangent()
    h = 1e-6

    def at(u, f):
        problem.u.x.array[:] = u
        return f()

    # gradient: random directions and single DOFs
    directions = [rng.standard_normal(u0.size) for _ in range(3)]
    directions += [np.eye(1, u0.size, k).ravel() for k in rng.choice(u0.size, 10, replace=False)]
    for d in directions:
        fd = (at(u0 + h * d, problem.energy) - at(u0 - h * d, problem.energy)) / (2 * h)
        assert abs(fd - R @ d) < 1e-7 * (np.abs(R).max() * np.abs(d).sum())

    # Hessian: K d against the central difference of the residual
    d = rng.standard_normal(u0.size)
    fd = (
        at(u0 + h * d, lambda: problem.residual().array.copy())
        - at(u0 - h * d, lambda: problem.residual().array.copy())
    ) / (2 * h)
    x, y = K.createVecs()
    x.array[:] = d
    K.mult(x, y)
    np.testing.assert_allclose(y.array, fd, rtol=0, atol=1e-7 * np.abs(y.array).max())
    assert K.isSymmetric(1e-12 * K.norm())


def test_weight_multiplies_the_energy_density():
    """E = W(F) ∫ w dx for a homogeneous F; polygonal domains make ∫ w exact."""
    a, b, c = 6.0, 4.0, 1.0
    mesh_data = graded_mesh(
        comm=MPI.COMM_SELF,
        outer=Rectangle((-a, -b), (a, b)),
        hole=Rectangle((-c, -c), (c, c)),
        focus_radius=1.5,
        h_min=0.7,
        h_max=1.5,
    )
    law = LAWS["neo-hookean"]
    problem = HyperelasticProblem(
        mesh_data=mesh_data,
        law=law,
        mode="2.5d",
        weight=lambda x: 1 + 0.1 * x[:, 0] + 0.05 * x[:, 1] ** 2,
    )
    problem.u.x.array[:] = exact(problem, F_25D)
    # ∫1 = 4ab − 4c², ∫x = 0, ∫y² = 2a·2b³/3 − 2c·2c³/3
    integral = 4 * a * b - 4 * c**2 + 0.05 * (4 * a * b**3 / 3 - 4 * c**4 / 3)
    W = law(F_25D[None])[0][0]
    assert W > 1e-5
    np.testing.assert_allclose(problem.energy(), W * integral, rtol=1e-12)


def test_weight_in_3d():
    a, c = 3.0, 1.0
    mesh_data = graded_mesh(
        comm=MPI.COMM_SELF,
        outer=Box((-a, -a, -a), (a, a, a)),
        hole=Box((-c, -c, -c), (c, c, c)),
        focus_radius=1.5,
        h_min=1.0,
        h_max=1.5,
    )
    law = LAWS["linear"]
    problem = HyperelasticProblem(
        mesh_data=mesh_data,
        law=law,
        mode="3d",
        weight=lambda x: 0.5 + 0.2 * x[:, 0] + 0.1 * x[:, 2] ** 2,
    )
    problem.u.x.array[:] = exact(problem, F_3D)
    cube_z2 = lambda s: (2 * s) ** 2 * 2 * s**3 / 3
    integral = 0.5 * (8 * a**3 - 8 * c**3) + 0.1 * (cube_z2(a) - cube_z2(c))
    W = law(F_3D[None])[0][0]
    np.testing.assert_allclose(problem.energy(), W * integral, rtol=1e-12)


def test_law_is_called_once_per_cell_and_only_when_u_changes(disk_mesh):
    """Once per cell, once in all at a homogeneous state, and only when ``u`` changed."""
    calls = []

    def law(F):
        calls.append(F.shape[0])
        return LAWS["neo-hookean"](F)

    problem = HyperelasticProblem(mesh_data=disk_mesh, law=law, mode="2.5d")
    n_cells = disk_mesh.mesh.topology.index_map(2).size_local
    problem.energy()
    problem.residual()
    problem.tangent()
    problem.energy()
    assert calls == [1]  # u = 0: one homogeneous F, evaluated once for every cell
    problem.u.x.array[5] = 1e-3
    problem.tangent()
    problem.residual()
    assert calls == [1, n_cells]
    assert problem.quadrature_points().shape == (n_cells * problem.material.n_points, 3)


def test_tractions_do_the_external_work():
    a, b = 6.0, 4.0
    mesh_data = graded_mesh(
        comm=MPI.COMM_SELF,
        outer=Rectangle((-a, -b), (a, b)),
        hole=Disk((0.0, 0.0), 1.0),
        focus_radius=1.0,
        h_min=0.8,
        h_max=1.6,
    )
    problem = HyperelasticProblem(mesh_data=mesh_data, law=LAWS["linear"], mode="2.5d")
    shift = np.array([0.3, -0.2, 0.1])
    problem.u.x.array[:] = np.tile(shift, problem.u.x.array.size // 3)  # rigid: W = 0
    perimeter = 4 * (a + b)
    t = np.array([0.01, 0.02, -0.03])
    problem.add_traction(tag=1, traction=t)
    np.testing.assert_allclose(problem.energy(), -perimeter * t @ shift, rtol=1e-12)
    # replacing the traction of a tag; linear fields are exact in P1, ∫x ds = 0 by symmetry
    problem.add_traction(tag=1, traction=lambda x: np.stack([x[0] + 10.0, 0 * x[0], 0 * x[0]]))
    np.testing.assert_allclose(problem.energy(), -10.0 * perimeter * shift[0], rtol=1e-12)


def test_dirichlet_dofs_are_the_boundary_nodes(disk_mesh):
    problem = HyperelasticProblem(mesh_data=disk_mesh, law=LAWS["linear"], mode="2.5d")
    assert problem.dirichlet_dofs().size == 0
    problem.set_dirichlet(tag=2, displacement=lambda X: np.stack([X[1], -X[0], 0 * X[0]]))
    dofs = problem.dirichlet_dofs()
    assert dofs.size % 3 == 0 and np.array_equal(dofs, np.unique(dofs))
    X = problem.dof_coordinates()[dofs[::3] // 3]
    np.testing.assert_allclose(np.linalg.norm(X[:, :2] - [0.4, -0.2], axis=1), 2.0, atol=1e-9)
    problem.apply_dirichlet_values()
    u = problem.u.x.array.reshape(-1, 3)
    np.testing.assert_allclose(u[dofs[::3] // 3], np.stack([X[:, 1], -X[:, 0], 0 * X[:, 0]], 1))
    assert np.all(np.delete(u, dofs[::3] // 3, axis=0) == 0.0)
    assert problem.n_dofs == 3 * disk_mesh.mesh.geometry.x.shape[0]


def test_invalid_arguments_are_rejected(disk_mesh):
    with pytest.raises(ValueError, match="needs a 3D mesh"):
        HyperelasticProblem(mesh_data=disk_mesh, law=LAWS["linear"], mode="3d")
    problem = HyperelasticProblem(mesh_data=disk_mesh, law=LAWS["linear"], mode="2.5d")
    with pytest.raises(ValueError, match="tag 7"):
        problem.set_dirichlet(tag=7, displacement=np.eye(3))
    with pytest.raises(ValueError, match="3×3"):
        problem.set_dirichlet(tag=1, displacement=np.eye(2))
    with pytest.raises(ValueError, match="weight must return"):
        problem.set_weight(weight=lambda x: x)


def test_background_gradient_enters_the_deformation_gradient():
    """u = 0 with background G equals the same problem with u = G·X (and no background)."""
    from mpi4py import MPI as _MPI

    from continuum.geometry import Disk as _Disk
    from continuum.laws import LinearElasticLaw, isotropic_stiffness
    from continuum.mesh import graded_mesh as _graded
    from continuum.problem import HyperelasticProblem as _Problem

    md = _graded(
        comm=_MPI.COMM_WORLD,
        outer=_Disk(center=(0, 0), radius=10.0),
        hole=_Disk(center=(0, 0), radius=3.0),
        focus_radius=4.0,
        h_min=1.5,
        h_max=3.0,
    )
    law = LinearElasticLaw(isotropic_stiffness(E=1.0, nu=0.3))
    G = np.array([[0.01, 0.02, 0.0], [-0.005, 0.015, 0.0], [0.003, -0.002, 0.0]])
    with_bg = _Problem(mesh_data=md, law=law, mode="2.5d", with_background=True)
    with_bg.set_background(gradient=lambda x: np.broadcast_to(G, (len(x), 3, 3)))
    plain = _Problem(mesh_data=md, law=law, mode="2.5d")
    plain.u.interpolate(lambda x: G @ np.vstack([x[0], x[1], 0 * x[0]]))
    assert with_bg.energy() == pytest.approx(plain.energy(), rel=1e-12)
    r1, r2 = with_bg.residual().getArray(), plain.residual().getArray()
    np.testing.assert_allclose(r1, r2, atol=1e-12 * np.abs(r2).max())
    with_bg.set_background(gradient=None)
    assert with_bg.energy() == pytest.approx(0.0, abs=1e-14)


def test_weight_residual_is_the_residual_tested_with_w_v_minus_the_weighted_one(disk_mesh):
    """``∫ P : ∇(w v) = ∫ w P : ∇v + ∫ (P ∇w) · v``, node by node, on a non-uniform field,
    with ``∫ P : ∇(w v)`` assembled independently from a UFL form in the mesh coordinates
    (the problem's ``∇w`` comes from central differences of the weight callable)."""
    import ufl
    from dolfinx import fem

    law = LAWS["neo-hookean"]
    weight = lambda x: 1 + 0.1 * x[:, 0] + 0.05 * x[:, 1] ** 2  # noqa: E731
    problem = HyperelasticProblem(mesh_data=disk_mesh, law=law, mode="2.5d", weight=weight)
    X = problem.dof_coordinates()
    u = np.stack([0.02 * X[:, 1] ** 2, 0.01 * X[:, 0] * X[:, 1], 0.015 * X[:, 0] ** 2], axis=1)
    problem.u.x.array[:] = (u / 36.0).ravel()
    x = ufl.SpatialCoordinate(disk_mesh.mesh)
    w = 1 + 0.1 * x[0] + 0.05 * x[1] ** 2
    v = ufl.TestFunction(problem.V)
    g = ufl.grad(w * v)
    grad3 = ufl.as_matrix([[g[a, 0], g[a, 1], 0] for a in range(3)])
    dx = ufl.Measure("dx", domain=disk_mesh.mesh, metadata={"quadrature_degree": 2})
    problem.residual()  # material at the current field
    tested = fem.assemble_vector(fem.form(ufl.inner(problem.material.P, grad3) * dx))
    n = problem.n_owned_nodes * 3
    expected = tested.array[:n] - problem.residual().getArray(readonly=True)[:n]
    got = problem.weight_residual()
    assert np.abs(got).max() > 1e-4
    np.testing.assert_allclose(got, expected, atol=1e-9 * np.abs(got).max())


def test_newton_reports_the_two_norm_of_the_free_residual(disk_mesh):
    """``residual_norm`` and ``initial_residual_norm`` are ``‖R_free‖₂`` (eV/Å), as documented
    in :mod:`continuum.newton`: the Euclidean norm of the assembled residual with the rows of
    the Dirichlet DOFs zeroed, at the returned (and at the Dirichlet-corrected initial) field."""
    from continuum.newton import newton_solve

    problem = HyperelasticProblem(mesh_data=disk_mesh, law=LAWS["neo-hookean"], mode="2.5d")
    problem.set_dirichlet(tag=disk_mesh.outer_tag, displacement=F_25D)
    problem.add_traction(tag=disk_mesh.inner_tag, traction=[0.01, -0.02, 0.005])
    fixed = problem.dirichlet_dofs()
    n = problem.n_owned_nodes * 3

    def free_norm():
        R = problem.residual().getArray(readonly=True)[:n].copy()
        R[fixed[fixed < n]] = 0.0
        return float(np.linalg.norm(R)), float(np.abs(R).max())

    rng = np.random.default_rng(3)
    u0 = 0.05 * rng.standard_normal(problem.u.x.array.size)
    problem.u.x.array[:] = u0
    start = newton_solve(problem, max_iter=0)  # only writes the Dirichlet values
    two, inf = free_norm()
    assert not start["converged"] and start["iterations"] == 0
    assert two > 3 * inf  # many free DOFs carry force: the norms are far apart
    assert start["initial_residual_norm"] == pytest.approx(two, rel=1e-12)
    assert start["residual_norm"] == pytest.approx(two, rel=1e-12)

    problem.u.x.array[:] = u0
    partial = newton_solve(problem, max_iter=1)
    assert not partial["converged"] and partial["iterations"] == 1
    assert partial["initial_residual_norm"] == pytest.approx(two, rel=1e-12)
    assert partial["residual_norm"] == pytest.approx(free_norm()[0], rel=1e-10)

    problem.u.x.array[:] = u0
    done = newton_solve(problem, rtol=1e-9, atol=1e-14)
    assert done["converged"]
    now = free_norm()[0]
    assert done["residual_norm"] == pytest.approx(now, rel=1e-6, abs=1e-15)
    assert now <= 1e-9 * two


def test_a_law_refusing_F_in_cells_without_weight_leaves_the_energy_finite(disk_mesh):
    """Cells whose weight and its gradient vanish carry no energy: a non-finite W, P or A of
    the law there (a Cauchy–Born law refusing a squashed F) counts as 0, not NaN."""
    law = LAWS["neo-hookean"]

    def refusing(F):
        W, P, A = law(F)
        bad = F[:, 0, 0] > 1.55
        W, P, A = W.copy(), P.copy(), A.copy()
        W[bad], P[bad], A[bad] = np.inf, np.nan, np.nan
        return W, P, A

    problem = HyperelasticProblem(
        mesh_data=disk_mesh, law=refusing, mode="2.5d", weight=lambda x: np.maximum(x[:, 0], 0) ** 3
    )
    x = problem.V.tabulate_dof_coordinates()
    u = problem.u.x.array.reshape(-1, 3)
    u[:, 0] = np.where(x[:, 0] < -0.5 * np.abs(x[:, 0]).max(), 0.6 * x[:, 0], 0.0)
    F = problem.material.deformation_gradients()
    assert (F[..., 0, 0] > 1.55).any()  # the law refuses some cells
    assert problem.material.inactive is not None and problem.material.inactive.any()
    assert problem.energy() == 0.0  # F = I wherever the weight is not 0
    assert np.all(np.isfinite(problem.residual().array))
    problem.material.update_tangent()
    assert np.all(np.isfinite(problem.material.A.x.array))


@pytest.mark.parametrize("mode", ["2.5d", "3d"])
def test_per_cell_storage_equals_per_point_storage(request, mode):
    """W, P, A stored once per cell (DG0, the default on P1 simplices, integrated with one
    point a cell and the cell mean of the weight) give the energy, residual, weight residual
    and tangent of the same law stored at every quadrature point and integrated with the
    full rule (the path a background gradient takes), under a weight that varies inside
    each cell."""
    mesh_data, _ = setup(request, mode)
    kw = dict(mesh_data=mesh_data, law=LAWS["neo-hookean"], mode=mode, weight=smooth_weight)
    cells, points = HyperelasticProblem(**kw), HyperelasticProblem(**kw, with_background=True)
    points.set_background(gradient=None)
    assert cells.material.A.x.array.size * cells.material.n_points == pytest.approx(
        points.material.A.x.array.size, rel=0.2
    )
    u0 = 0.02 * np.random.default_rng(3).standard_normal(cells.u.x.array.size)
    for p in (cells, points):
        p.u.x.array[:] = u0
    assert cells.energy() == pytest.approx(points.energy(), rel=1e-13)
    r1, r2 = cells.residual().array, points.residual().array
    np.testing.assert_allclose(r1, r2, rtol=0, atol=1e-13 * np.abs(r2).max())
    w1, w2 = cells.weight_residual(), points.weight_residual()
    np.testing.assert_allclose(w1, w2, rtol=0, atol=1e-13 * np.abs(w2).max())
    K1, K2 = cells.tangent(), points.tangent()
    K1.axpy(-1.0, K2)
    assert K1.norm() < 1e-13 * K2.norm()


def test_linearised_far_field_is_the_quadratic_expansion_of_the_law(disk_mesh):
    """Where ``max |F − F0| ≤ bound`` the material is the second-order Taylor expansion of
    the law at ``F0`` (checked against the expansion written out here and against finite
    differences of the law's stress); elsewhere, and with the bound 0, it is the law."""
    law = LAWS["neo-hookean"]
    F0 = F_25D
    lin = HyperelasticProblem(mesh_data=disk_mesh, law=law, mode="2.5d")
    plain = HyperelasticProblem(mesh_data=disk_mesh, law=law, mode="2.5d")
    X = lin.dof_coordinates()
    # the far field F0 plus a perturbation that grows with the distance from the origin
    rng = np.random.default_rng(11)
    u = (
        exact(lin, F0)
        + 1e-3 * (np.linalg.norm(X, axis=1)[:, None] ** 2 * rng.standard_normal(X.shape)).ravel()
    )
    for p in (lin, plain):
        p.u.x.array[:] = u
    bound = 8e-3
    lin.material.linearise(about=F0, within=bound)
    F = lin.material.deformation_gradients()[:, 0]
    d = (F - F0).reshape(-1, 9)
    near = np.abs(d).max(axis=1) <= bound
    assert 0 < near.sum() < len(near)

    lin.material.update_tangent()
    plain.material.update_tangent()
    dofs = lin.material._dofs
    got = {k: getattr(lin.material, k).x.array.reshape(len(F), -1) for k in "WPA"}
    ref = {k: getattr(plain.material, k).x.array.reshape(len(F), -1) for k in "WPA"}
    assert all(np.array_equal(dofs[k].ravel(), np.arange(len(F))) for k in "WPA")
    # far cells: the law itself
    for k in "WPA":
        np.testing.assert_array_equal(got[k][~near], ref[k][~near])
    # near cells: W0 + P0:d + ½ d:A0:d, P0 + A0:d, A0
    W0, P0, A0 = law(F0[None])
    P0, A0 = P0.reshape(9), A0.reshape(9, 9)
    dn = d[near]
    np.testing.assert_allclose(
        got["W"][near, 0], W0[0] + dn @ P0 + 0.5 * np.einsum("ni,ij,nj->n", dn, A0, dn), 1e-13
    )
    np.testing.assert_allclose(got["P"][near], P0 + dn @ A0.T, rtol=0, atol=1e-13)
    np.testing.assert_allclose(got["A"][near], np.tile(A0.reshape(81), (near.sum(), 1)), 1e-14)
    # and it differs from the law's stress by second order in F − F0 only: the law's own
    # stress along F0 + t d, by central differences, matches the expansion's slope
    t = 1e-6
    k = np.flatnonzero(near)[np.argmax(np.abs(d[near]).max(axis=1))]
    dk = d[k].reshape(3, 3)
    slope = (law((F0 + t * dk)[None])[1] - law((F0 - t * dk)[None])[1])[0].ravel() / (2 * t)
    np.testing.assert_allclose(A0 @ d[k], slope, rtol=0, atol=1e-7)
    gap = np.abs(got["P"][near] - ref["P"][near]).max()
    assert 0 < gap < 10 * bound**2
    # residual and tangent of the linearised problem are its energy's derivatives
    R = lin.residual().array.copy()
    h, v = 1e-6, rng.standard_normal(u.size)

    def energy_at(x):
        lin.u.x.array[:] = x
        return lin.energy()

    fd = (energy_at(u + h * v) - energy_at(u - h * v)) / (2 * h)
    assert abs(fd - R @ v) < 1e-7 * np.abs(R).max() * np.abs(v).sum()
    # bound 0: back to the law
    lin.u.x.array[:] = u
    lin.material.linearise(about=None)
    assert lin.energy() == pytest.approx(plain.energy(), rel=1e-14)
    np.testing.assert_allclose(lin.residual().array, plain.residual().array, rtol=0, atol=1e-14)


def test_frozen_linearisation_keeps_its_cells_wherever_F_goes(disk_mesh):
    """After ``freeze_linearisation`` the cells within the bound then keep the expansion
    (also for the tangent of a subset of cells), the others the law, as ``u`` moves on."""
    law = LAWS["neo-hookean"]
    problem = HyperelasticProblem(mesh_data=disk_mesh, law=law, mode="2.5d")
    X = problem.dof_coordinates()
    bump = (1e-3 * np.linalg.norm(X, axis=1)[:, None] ** 2 * np.array([1.0, -0.5, 0.3])).ravel()
    u = exact(problem, F_25D) + bump
    problem.u.x.array[:] = u
    m = problem.material
    assert not m.freeze_linearisation()  # nothing to freeze without a linearisation
    bound = 5e-3
    m.linearise(about=F_25D, within=bound)
    assert m.freeze_linearisation()
    F = m.deformation_gradients()[:, 0].reshape(-1, 9)
    frozen = np.abs(F - F_25D.reshape(9)).max(axis=1) <= bound
    assert 0 < frozen.sum() < len(frozen)
    problem.u.x.array[:] = exact(problem, F_25D) + 3.0 * bump  # every cell moves away
    m.update_tangent()
    assert m.linearised_points == frozen.sum()
    F = m.deformation_gradients()[:, 0].reshape(-1, 9)
    W0, P0, A0 = law(F_25D[None])
    d = F[frozen] - F_25D.reshape(9)
    P = m.P.x.array.reshape(len(F), 9)
    np.testing.assert_allclose(P[frozen], P0.reshape(9) + d @ A0.reshape(9, 9).T, atol=1e-13)
    np.testing.assert_allclose(P[~frozen], law(F[~frozen].reshape(-1, 3, 3))[1].reshape(-1, 9))
    A = m.A.x.array.reshape(len(F), 81)
    np.testing.assert_array_equal(A[frozen], np.tile(A0.reshape(81), (frozen.sum(), 1)))
    # a new linearisation lets every evaluation decide again
    m.linearise(about=None)
    m.linearise(about=F_25D, within=bound)
    m.update()
    near = np.abs(F - F_25D.reshape(9)).max(axis=1) <= bound
    assert m.linearised_points == near.sum() != frozen.sum()


def test_linearisation_report_says_when_frozen_cells_left_the_bound(disk_mesh):
    """The report counts the cells taking the expansion and gives the largest ``|F − F0|``
    entry among them, computed here from the deformation gradients themselves."""
    law = LAWS["neo-hookean"]
    problem = HyperelasticProblem(mesh_data=disk_mesh, law=law, mode="2.5d")
    X = problem.dof_coordinates()
    bump = (1e-3 * np.linalg.norm(X, axis=1)[:, None] ** 2 * np.array([1.0, -0.5, 0.3])).ravel()
    problem.u.x.array[:] = exact(problem, F_25D) + bump
    m = problem.material
    assert m.linearisation_report() is None  # no linearisation
    bound = 5e-3
    m.linearise(about=F_25D, within=bound)

    def deviations():
        return np.abs(m.deformation_gradients()[:, 0].reshape(-1, 9) - F_25D.reshape(9)).max(1)

    dev = deviations()
    near = dev <= bound
    report = m.linearisation_report()
    assert report == {
        "bound": bound,
        "cells": int(near.sum()),
        "cells_total": len(dev),
        "max_deviation": pytest.approx(dev[near].max(), rel=1e-14),
    }
    assert report["max_deviation"] <= bound
    assert m.freeze_linearisation()
    problem.u.x.array[:] = exact(problem, F_25D) + 3.0 * bump  # the frozen cells move on
    report = m.linearisation_report()
    assert report["cells"] == int(near.sum())  # the frozen set, not the cells near now
    assert report["max_deviation"] == pytest.approx(deviations()[near].max(), rel=1e-14)
    assert report["max_deviation"] > bound
