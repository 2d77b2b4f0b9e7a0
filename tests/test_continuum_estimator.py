"""The continuum's residual indicators against what they must be.

- a homogeneous state has no residual and no gradient jump (3D, 2.5D, with a background);
- on a uniform mesh the gradient jumps of a quadratic field are known in closed form: in 2D
  every interior cell carries exactly ``|∇²u|² |K|``, in 3D (six Kuhn tetrahedra per cube,
  ``h_e`` the hypotenuse ``√2 h`` of the cube-face triangles) the total is
  ``(1/√2) |∇²u|² (1 − 1/n) L³``;
- every cell's value equals an independent numpy loop over the facets (P1 gradients from
  the nodal values, normals from the facet vertices);
- the stress residual of a smooth field falls as ``h²`` under uniform refinement;
- the slope of the recovered gradient of a quadratic field is its Hessian away from the
  boundary;
- the global sums on two ranks equal those of the same mesh on one (the test re-runs itself
  under ``mpiexec -n 2``).
"""

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from dolfinx import mesh as dmesh
from mpi4py import MPI

from continuum import LinearElasticLaw, MeshData, isotropic_stiffness
from continuum.estimator import cell_indicators, recovered_slope
from continuum.output import write_cell_fields
from continuum.problem import HyperelasticProblem

LAW = LinearElasticLaw(isotropic_stiffness(lam=0.6, mu=0.4))
SHARED = dmesh.GhostMode.shared_facet


def tagged(mesh):
    """Mesh data with every exterior facet marked outer (tag 1)."""
    tdim = mesh.topology.dim
    mesh.topology.create_entities(tdim - 1)
    mesh.topology.create_connectivity(tdim - 1, tdim)
    facets = dmesh.exterior_facet_indices(mesh.topology)
    return MeshData(mesh=mesh, facet_tags=dmesh.meshtags(mesh, tdim - 1, facets, 1), dim=tdim)


def square(n, comm=MPI.COMM_WORLD, length=1.0):
    """``[0, L]²`` in ``2n²`` right-diagonal triangles."""
    box = [[0.0, 0.0], [length, length]]
    return tagged(dmesh.create_rectangle(comm, box, [n, n], ghost_mode=SHARED))


def cube(n, comm=MPI.COMM_WORLD, length=1.0):
    """``[0, L]³`` in ``6n³`` tetrahedra."""
    box = [[0.0, 0.0, 0.0], [length] * 3]
    return tagged(dmesh.create_box(comm, box, [n, n, n], ghost_mode=SHARED))


def problem_with(md, field, **kwargs):
    mode = "3d" if md.dim == 3 else "2.5d"
    problem = HyperelasticProblem(mesh_data=md, law=LAW, mode=mode, **kwargs)
    problem.u.interpolate(field)
    return problem


def total(values, comm=MPI.COMM_WORLD):
    return comm.allreduce(float(np.sum(values)), op=MPI.SUM)


H = np.array([[0.01, 0.004, 0.0], [-0.003, 0.02, 0.0], [0.005, -0.002, 0.0]])


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("background", [False, True])
def test_a_homogeneous_state_has_no_residual(dim, background):
    md = square(4) if dim == 2 else cube(2)
    Hu = H if dim == 2 else H + np.array([[0, 0, 0.003], [0, 0, 0.001], [0, 0, -0.01]])
    G0 = 0.5 * Hu.T if background else np.zeros((3, 3))
    problem = problem_with(md, lambda x: Hu @ x, with_background=background)
    if background:
        problem.set_background(gradient=lambda x: np.broadcast_to(G0, (len(x), 3, 3)))
    ind = cell_indicators(problem)
    n = ind.volume.shape[0]
    P = LAW((np.eye(3) + Hu + G0)[None])[1][0]
    np.testing.assert_allclose(ind.mean_gradient, np.broadcast_to(Hu + G0, (n, 3, 3)), atol=1e-14)
    np.testing.assert_allclose(ind.mean_stress, np.broadcast_to(P, (n, 3, 3)), atol=1e-14)
    np.testing.assert_allclose(ind.weight, 1.0, rtol=1e-13)
    assert total(ind.volume) == pytest.approx(1.0, rel=1e-13)
    # a stress of size |P| jumping by round-off: |P|² · 1e-30 would already be generous
    assert ind.stress_residual.max(initial=0.0) < 1e-28 * np.sum(P**2)
    assert ind.gradient_jump.max(initial=0.0) < 1e-28
    assert total(ind.on_outer_boundary) > 0


def test_gradient_jump_of_a_quadratic_field_is_its_hessian_on_a_uniform_2d_mesh():
    """``u = (x², 0, y²)``: ``|∇²u|² = 2² + 2² = 8``; the P1 gradient jumps by ``2h`` across
    every interior vertical (``∂u_x/∂x``) and horizontal (``∂u_z/∂y``) edge and nowhere else,
    and each triangle has one of each: ``2 · ½ (2h)²/h · h = 4h² = 8 |K|``."""
    n = 8
    problem = problem_with(square(n), lambda x: np.stack([x[0] ** 2, 0 * x[0], x[1] ** 2]))
    ind = cell_indicators(problem)
    ratio = ind.gradient_jump / ind.volume
    x, y = ind.centroid[:, 0], ind.centroid[:, 1]
    interior = (x > 1 / n) & (x < 1 - 1 / n) & (y > 1 / n) & (y < 1 - 1 / n)
    np.testing.assert_allclose(ratio[interior], 8.0, rtol=1e-12)
    assert np.all(ratio <= 8.0 * (1 + 1e-12))  # boundary cells miss their boundary halves
    # the total tends to ∫|∇²u|² = 8 with the boundary strip's deficit 8/n
    assert total(ind.gradient_jump) == pytest.approx(8.0 * (1 - 1 / n), rel=1e-12)


def test_gradient_jump_total_matches_the_closed_form_on_a_uniform_3d_mesh():
    """``u = (x², 0, 0)`` on ``n³`` cubes of six tetrahedra: ``∂u_x/∂x`` jumps by ``2h``
    only across the ``2n²(n−1)`` interior x-plane faces (right triangles of area ``h²/2``,
    ``h_e = √2 h``), each worth ``(2h)²/(√2 h) · h²/2 = √2 h³``."""
    n, L = 3, 2.0
    problem = problem_with(cube(n, length=L), lambda x: np.stack([x[0] ** 2, 0 * x[0], 0 * x[0]]))
    ind = cell_indicators(problem)
    h = L / n
    assert total(ind.gradient_jump) == pytest.approx(2 * n**2 * (n - 1) * np.sqrt(2) * h**3)
    assert total(ind.volume) == pytest.approx(L**3, rel=1e-13)


def test_recovered_slope_of_a_quadratic_field_is_its_hessian_away_from_the_boundary():
    """``u`` quadratic with a general constant ``∇²u`` on ``n³`` cubes of six tetrahedra: each
    interior vertex's patch is centrally symmetric, so the volume-weighted mean of the P1 cell
    gradients around it is ``∇u`` there exactly, and in a cell with no boundary vertex the
    recovered gradient's slope is ``∇²u``: ``|∇(Π Ḡ)|² = Σ_ijk (∂_j ∂_k u_i)²``. Also on two
    ranks (the vertex means must sum over the cells of both)."""
    n, L = 6, 1.5
    A = np.array([[0.3, -0.2, 0.1], [0.05, 0.4, -0.15], [-0.25, 0.1, 0.2]])
    B = np.array([[0.0, 0.2, -0.1], [0.1, 0.0, 0.3], [0.2, -0.3, 0.0]])

    def field(x):  # u_i = A_ij x_j² + B_ij x_j x_(j+1)
        sq = x**2
        cross = x * np.roll(x, -1, axis=0)
        return A @ sq + B @ cross

    hessian2 = 0.0
    for i in range(3):
        Hi = np.diag(2 * A[i])
        for j in range(3):
            k = (j + 1) % 3
            Hi[j, k] += B[i, j]
            Hi[k, j] += B[i, j]
        hessian2 += float(np.sum(Hi**2))
    problem = problem_with(cube(n, length=L), field)
    ind = cell_indicators(problem)
    slope2 = recovered_slope(problem, ind.mean_gradient)
    h = L / n
    c = ind.centroid
    interior = np.all((c > 1.01 * h) & (c < L - 1.01 * h), axis=1)
    assert total(interior) > 0
    np.testing.assert_allclose(slope2[interior], hessian2, rtol=1e-10)


def reference_indicators(problem, weight):
    """Cell indicators by a numpy loop over the facets of a serial 2D mesh (linear weight)."""
    mesh = problem.mesh
    mesh.topology.create_connectivity(1, 2)
    x = mesh.geometry.x
    cells = mesh.geometry.dofmaps[0]  # P1 on an affine mesh: geometry nodes are the dofs' points
    u = problem.u.x.array.reshape(-1, 3)
    V_nodes = problem.V.dofmap.list
    G = np.zeros((len(cells), 3, 3))
    area = np.zeros(len(cells))
    for c, (nodes, dofs) in enumerate(zip(cells, V_nodes, strict=True)):
        X = x[nodes, :2]
        T = np.array([X[1] - X[0], X[2] - X[0]]).T  # columns: edges
        area[c] = 0.5 * abs(np.linalg.det(T))
        U = u[dofs]
        G[c, :, :2] = np.array([U[1] - U[0], U[2] - U[0]]).T @ np.linalg.inv(T)
    P = LAW(np.eye(3) + G)[1]
    centroid = x[cells].mean(axis=1)
    w = weight(centroid)
    stress = np.zeros(len(cells))
    jump = np.zeros(len(cells))
    f2c = mesh.topology.connectivity(1, 2)
    n_facets = mesh.topology.index_map(1).size_local
    facet_nodes = dmesh.entities_to_geometry(mesh, 1, np.arange(n_facets, dtype=np.int32))
    for f in range(n_facets):
        adjacent = f2c.links(f)
        if len(adjacent) != 2:
            continue
        a, b = x[facet_nodes[f]]
        length = np.linalg.norm(b - a)
        normal = np.array([(b - a)[1], -(b - a)[0], 0.0]) / length
        k, l = adjacent
        traction = (P[k] - P[l]) @ normal
        w_facet = 0.5 * (w[k] + w[l])
        for c in adjacent:
            stress[c] += 0.25 * length * length * w_facet**2 * traction @ traction
            jump[c] += 0.5 * np.sum((G[k] - G[l]) ** 2)
    return stress, jump, G, area


@pytest.mark.skipif(MPI.COMM_WORLD.size > 1, reason="the reference loop is serial")
def test_every_cell_matches_an_independent_facet_loop():
    b = np.array([0.3, -0.2, 0.0])
    weight = lambda x: 0.5 + x @ b
    md = tagged(dmesh.create_rectangle(MPI.COMM_SELF, [[0, 0], [1.0, 0.8]], [5, 4]))
    field = lambda x: np.stack(
        [0.1 * x[0] ** 2, 0.05 * x[0] * x[1], 0.08 * x[1] ** 2 - 0.02 * x[0]]
    )
    problem = problem_with(md, field, weight=weight)
    ind = cell_indicators(problem)
    stress, jump, G, area = reference_indicators(problem, weight)
    np.testing.assert_allclose(ind.volume, area, rtol=1e-12)
    np.testing.assert_allclose(ind.mean_gradient, G, rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(ind.stress_residual, stress, rtol=1e-9)
    np.testing.assert_allclose(ind.gradient_jump, jump, rtol=1e-9, atol=1e-18)
    assert stress.min() > 0 and jump.max() > 0


@pytest.mark.parametrize("dim", [2, 3])
def test_stress_residual_falls_as_h_squared(dim):
    """A smooth field with a smooth weight: the weighted jumps ``{w̄}²|[[P̄]]n|² h_e |e|``
    with ``[[P̄]] ~ h`` sum to ``O(h²)``; the rate is measured on two refinements."""
    field = lambda x: np.stack([0.02 * x[0] ** 2, 0.01 * x[0] * x[1], 0.015 * x[1] ** 2 + x[2]])
    weight = lambda x: 1.0 - 0.5 * np.exp(-np.sum((x - 0.3) ** 2, axis=1))
    sizes = (4, 8, 16) if dim == 2 else (2, 4, 8, 16)
    build = square if dim == 2 else cube
    sums = [
        total(cell_indicators(problem_with(build(n), field, weight=weight)).stress_residual)
        for n in sizes
    ]
    rates = np.log2(np.array(sums[:-1]) / np.array(sums[1:]))
    assert 1.8 < rates[-1] < 2.2, rates
    assert rates[-1] > rates[0] - 0.05  # towards 2 from below (or at it)


@pytest.mark.parametrize("dim", [2, 3])
def test_global_sums_do_not_depend_on_the_rank_count(dim):
    """The same mesh on this communicator and on one rank give the same totals."""
    build = square if dim == 2 else cube
    n = 6 if dim == 2 else 3
    field = lambda x: np.stack(
        [0.02 * x[0] ** 2, 0.01 * x[0] * x[1], 0.015 * x[1] ** 2 + 0.01 * x[2]]
    )
    weight = lambda x: 1.0 - 0.5 * np.exp(-np.sum((x - 0.3) ** 2, axis=1))
    sums = []
    for comm in (MPI.COMM_WORLD, MPI.COMM_SELF):
        ind = cell_indicators(problem_with(build(n, comm), field, weight=weight))
        sums.append(
            [
                total(getattr(ind, k), comm)
                for k in ("volume", "stress_residual", "gradient_jump", "on_outer_boundary")
            ]
        )
    np.testing.assert_allclose(sums[0], sums[1], rtol=1e-12)
    assert sums[0][1] > 0 and sums[0][2] > 0


def test_indicators_are_written_for_paraview(tmp_path):
    problem = problem_with(square(3), lambda x: np.stack([x[0] ** 2, 0 * x[0], 0 * x[0]]))
    ind = cell_indicators(problem)
    directory = pathlib.Path(MPI.COMM_WORLD.bcast(str(tmp_path), root=0))
    paths = write_cell_fields(
        mesh=problem.mesh_data,
        fields=ind.fields(),
        directory=directory,
        stem="indicators_000",
        time=0.0,
    )
    assert [p.name for p in paths] == [
        "indicators_000_cells.bp",
        "indicators_000.xdmf",
        "indicators_000.h5",
    ]
    assert all(p.exists() for p in paths)
    metadata = b"".join(f.read_bytes() for f in paths[0].glob("md.*"))
    xdmf = paths[1].read_text()
    for name in ind.fields():
        assert name.encode() in metadata and f'Name="{name}"' in xdmf
    with pytest.raises(ValueError, match="one per owned cell"):
        write_cell_fields(mesh=problem.mesh, fields={"bad": np.ones(3)}, directory=directory)


@pytest.mark.skipif(
    not (pathlib.Path(sys.executable).parent / "mpiexec").exists(), reason="mpiexec not installed"
)
@pytest.mark.skipif(MPI.COMM_WORLD.size > 1, reason="already under mpiexec")
def test_the_estimator_tests_pass_on_two_ranks():
    """Rank-interface facets are counted once and both cells get their halves."""
    mpiexec = pathlib.Path(sys.executable).parent / "mpiexec"
    proc = subprocess.run(
        [str(mpiexec), "-n", "2", sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
        + [__file__, "-k", "not two_ranks and not h_squared"],
        capture_output=True,
        text=True,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert proc.stdout.count("10 passed, 1 skipped") == 2, proc.stdout[-2000:]
