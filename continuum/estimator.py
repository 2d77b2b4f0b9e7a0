"""Residual error indicators of the continuum, one set of numbers per owned cell.

The FE discretisation term ``eta_fe`` of DESIGN.md §3, split into what the adaptive loop
needs: the stress jumps across interior facets (weighted by the continuum's share),
and a jump estimate of the displacement's second gradient (how much ``∇U`` varies across a
cell, which also feeds the Cauchy–Born validity check).

=================================================================  =================================
equation                                                           field
=================================================================  =================================
``|K|``, ``h_K`` (longest edge), centroid                          ``volume``, ``h``, ``centroid``
``w̄_K = ∫_K w / |K|``, ``Ḡ_K = ∫_K (F − I) / |K|``, ``P̄_K``          ``weight``, ``mean_gradient``,
                                                                   ``mean_stress``
``Σ_e ½·½ h_e ∫_e {w̄}² |[[P̄]] n|² ds``                              ``stress_residual``
``Σ_e ½ ∫_e |[[Ḡ]]|² / h_e ds`` (≈ ``|∇²u|² |K|``)                  ``gradient_jump``
=================================================================  =================================

Sums run over the interior facets ``e`` of ``K``; the first ½ of a facet term gives each of
the facet's two cells half of it (``avg`` of a DG0 test function), so summing a field over
all cells counts every facet once. ``h_e`` is the facet's longest edge (its length in 2D).
There is no element term: ``div P̄`` of the piecewise constant stress is zero, and where the
weight ``w = 1 − β`` varies (the handshake) ``P ∇w`` is balanced by the atoms, not a
discretisation error; ``{w̄}`` (the mean of the two cells' weights) scales a jump by how much
of the continuum is there. Facets on the boundary carry no jump:
the Dirichlet and the free boundary are the loop's (``eta_trunc``) business.

Units: ``stress_residual`` in eV²/Å³ (per Å of thickness on a 2D mesh: eV²/Å⁴);
``gradient_jump`` in Å^(d−2) (dimensionless in 2D, Å in 3D; divide by ``volume`` for
``|∇²u|²`` in 1/Å²). All fields hold owned cells only and are assembled in parallel with
each rank-interface facet counted once (its halves scattered to both cells' owners).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import ufl
from dolfinx import fem, la
from dolfinx import mesh as dmesh

from continuum.problem import HyperelasticProblem

__all__ = ["CellIndicators", "cell_indicators", "recovered_slope"]


@dataclass(frozen=True, kw_only=True)
class CellIndicators:
    """Indicators of the owned cells of a problem's mesh (local arrays of length ``n``).

    Attributes:
        centroid: ``(n, 3)`` cell centroids, Å (``z = 0`` on a 2D mesh).
        h: ``(n,)`` cell diameter (longest edge), Å.
        volume: ``(n,)`` cell volume, Å³ (area in Å² on a 2D mesh).
        weight: ``(n,)`` cell average of the continuum weight ``1 − β``.
        mean_gradient: ``(n, 3, 3)`` cell average of ``F − I`` (background included).
        mean_stress: ``(n, 3, 3)`` cell average of the first Piola stress ``P``, eV/Å³.
        stress_residual: ``(n,)`` facet jumps of ``P̄`` weighted by the facet's mean ``w̄``, eV²/Å³.
        gradient_jump: ``(n,)`` facet jumps of ``mean_gradient``, a cell-wise estimate of
            ``|∇²u|² |K|``.
        on_outer_boundary: ``(n,)`` the cell has a facet marked ``outer_tag``.
    """

    centroid: np.ndarray
    h: np.ndarray
    volume: np.ndarray
    weight: np.ndarray
    mean_gradient: np.ndarray
    mean_stress: np.ndarray
    stress_residual: np.ndarray
    gradient_jump: np.ndarray
    on_outer_boundary: np.ndarray

    def fields(self) -> dict[str, np.ndarray]:
        """Every field by name, as float64 arrays (for :func:`continuum.output.write_cell_fields`).

        Returns:
            ``{name: (n, ...) array}``; ``on_outer_boundary`` as 0/1.
        """
        return {
            "h": self.h,
            "volume": self.volume,
            "weight": self.weight,
            "mean_gradient": self.mean_gradient,
            "mean_stress": self.mean_stress,
            "stress_residual": self.stress_residual,
            "gradient_jump": self.gradient_jump,
            "on_outer_boundary": self.on_outer_boundary.astype(np.float64),
        }


class _CellSpace:
    """A blocked DG0 space on the owned cells: assemble into it, read and write its values."""

    def __init__(self, mesh: dmesh.Mesh, size: int) -> None:
        self.space = fem.functionspace(mesh, ("DG", 0, (size,)))
        self.size = size
        n_owned = mesh.topology.index_map(mesh.topology.dim).size_local
        self.dofs = self.space.dofmap.list[:n_owned, 0]

    def test(self) -> ufl.Argument:
        """The test function."""
        return ufl.TestFunction(self.space)

    def assemble(self, form: ufl.Form) -> np.ndarray:
        """``(n_owned, size)`` cell values of a linear form, ghost contributions added."""
        vec = fem.assemble_vector(fem.form(form))
        vec.scatter_reverse(la.InsertMode.add)
        return vec.array.reshape(-1, self.size)[self.dofs].copy()

    def function(self, values: np.ndarray) -> fem.Function:
        """A DG0 function with ``values`` ``(n_owned, size)`` on the owned cells, ghosts set."""
        f = fem.Function(self.space)
        f.x.array.reshape(-1, self.size)[self.dofs] = values
        f.x.scatter_forward()
        return f


def _as_vector(tensors: list[ufl.core.expr.Expr]) -> ufl.core.expr.Expr:
    """The 3×3 tensors' entries, row-major, one after the other, as a UFL vector."""
    return ufl.as_vector([t[i, j] for t in tensors for i in range(3) for j in range(3)])


def _facet_size(mesh: dmesh.Mesh) -> ufl.core.expr.Expr:
    """``h_e``: the facet's longest edge (its length in 2D)."""
    if mesh.topology.dim == 2:
        return ufl.FacetArea(mesh)
    return ufl.MaxFacetEdgeLength(mesh)


def _normal3(mesh: dmesh.Mesh) -> ufl.core.expr.Expr:
    """The facet normal as a 3-vector (zero third component on a 2D mesh)."""
    n = ufl.FacetNormal(mesh)
    if mesh.geometry.dim == 3:
        return n
    return ufl.as_vector([n[0], n[1], 0.0])


def _cell_averages(problem: HyperelasticProblem) -> dict[str, np.ndarray]:
    """Volume, weight, ``Ḡ`` and ``P̄`` of the owned cells."""
    mesh, m = problem.mesh, problem.material
    m.update()  # P at the current displacement
    dx = problem._dx
    w = problem._weight
    G = problem._grad3(problem.u)
    if problem._background is not None:
        G = G + problem._background
    scalars = _CellSpace(mesh, 2)
    q = scalars.test()
    s = scalars.assemble((q[0] + w * q[1]) * dx)
    tensors = _CellSpace(mesh, 18)
    t = tensors.assemble(ufl.inner(_as_vector([G, m.P]), tensors.test()) * dx)
    volume = s[:, 0]
    means = t / volume[:, None]
    return {
        "volume": volume,
        "weight": s[:, 1] / volume,
        "mean_gradient": means[:, :9].reshape(-1, 3, 3),
        "mean_stress": means[:, 9:].reshape(-1, 3, 3),
    }


def _facet_jumps(
    mesh: dmesh.Mesh, stress: np.ndarray, weight: np.ndarray, gradient: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Each owned cell's half of its interior facets' stress and gradient jumps.

    Args:
        mesh: the mesh (ghosted by shared facet, so every interior facet sees both cells).
        stress: ``(n_owned, 3, 3)`` cell values of ``P̄``.
        weight: ``(n_owned,)`` cell values of ``w̄``.
        gradient: ``(n_owned, 3, 3)`` cell values of ``Ḡ``.

    Returns:
        ``(n_owned,)`` ``Σ_e ½·½ h_e ∫_e {w̄}² |[[P̄]] n|²`` and ``(n_owned,)``
        ``Σ_e ½ ∫_e |[[Ḡ]]|² / h_e``.
    """
    cells = _CellSpace(mesh, 9)
    P = cells.function(stress.reshape(-1, 9))
    w_bar = _CellSpace(mesh, 1).function(weight.reshape(-1, 1))[0]
    G = cells.function(gradient.reshape(-1, 9))
    as_matrix = lambda f: ufl.as_matrix([[f[3 * i + j] for j in range(3)] for i in range(3)])
    P_, G_ = as_matrix(P), as_matrix(G)
    n = _normal3(mesh)
    he = _facet_size(mesh)("+")
    traction_jump = ufl.dot(P_("+"), n("+")) + ufl.dot(P_("-"), n("-"))
    gradient_jump = G_("+") - G_("-")
    jumps = _CellSpace(mesh, 2)
    q = jumps.test()
    w_facet = ufl.avg(w_bar)
    integrand = 0.5 * he * w_facet**2 * ufl.inner(traction_jump, traction_jump) * ufl.avg(q[0])
    integrand += ufl.inner(gradient_jump, gradient_jump) / he * ufl.avg(q[1])
    values = jumps.assemble(integrand * ufl.dS(domain=mesh))
    return values[:, 0], values[:, 1]


def _touches_tag(mesh: dmesh.Mesh, tags: dmesh.MeshTags, tag: int) -> np.ndarray:
    """``(n_owned,)`` bool: the owned cell has a local facet marked ``tag``."""
    tdim = mesh.topology.dim
    mesh.topology.create_connectivity(tdim - 1, tdim)
    f2c = mesh.topology.connectivity(tdim - 1, tdim)
    facets = tags.find(tag)
    starts = f2c.offsets[facets].astype(np.int64)
    counts = f2c.offsets[facets + 1] - starts
    # every link of every marked facet: start of its facet plus its rank within the facet
    first = np.repeat(np.cumsum(counts) - counts, counts)
    links = np.repeat(starts, counts) + np.arange(first.size) - first
    n_owned = mesh.topology.index_map(tdim).size_local
    out = np.zeros(n_owned, dtype=bool)
    cells = f2c.array[links]
    out[cells[cells < n_owned]] = True
    return out


def cell_indicators(problem: HyperelasticProblem) -> CellIndicators:
    """Residual indicators of every owned cell at the problem's current displacement.

    The material is brought up to date first, so the indicators belong to ``problem.u`` as
    it is now. Collective: every rank calls it.

    Args:
        problem: the continuum problem (3D or 2.5D, with or without a background gradient).

    Returns:
        The indicators of this rank's owned cells (see :class:`CellIndicators`).
    """
    mesh = problem.mesh
    tdim = mesh.topology.dim
    n_owned = mesh.topology.index_map(tdim).size_local
    cells = np.arange(n_owned, dtype=np.int32)
    means = _cell_averages(problem)
    stress_jump, gradient_jump = _facet_jumps(
        mesh, means["mean_stress"], means["weight"], means["mean_gradient"]
    )
    data = problem.mesh_data
    return CellIndicators(
        centroid=dmesh.compute_midpoints(mesh, tdim, cells).reshape(n_owned, 3),
        h=mesh.h(tdim, cells),
        volume=means["volume"],
        weight=means["weight"],
        mean_gradient=means["mean_gradient"],
        mean_stress=means["mean_stress"],
        stress_residual=stress_jump,
        gradient_jump=gradient_jump,
        on_outer_boundary=_touches_tag(mesh, data.facet_tags, data.outer_tag),
    )


def recovered_slope(problem: HyperelasticProblem, mean_gradient: np.ndarray) -> np.ndarray:
    """``(n_owned,)`` ``|∇(Π Ḡ)|²`` per cell: the slope of the recovered gradient, 1/Å².

    ``Π Ḡ`` is the P1 field whose nodal values are the volume-weighted means of the cell
    gradients around each vertex (a lumped L2 projection); its gradient is constant in a
    cell. Where ``gradient_jump / volume`` reads facet jumps, which on poorly shaped
    tetrahedra are large for a smooth field, this reads the variation over a vertex patch.
    Collective.

    Args:
        problem: the problem whose mesh the cells are.
        mean_gradient: ``(n_owned, 3, 3)`` cell values of ``Ḡ`` (:class:`CellIndicators`).
    """
    mesh = problem.mesh
    tensors = fem.functionspace(mesh, ("Lagrange", 1, (9,)))
    G = _CellSpace(mesh, 9).function(np.asarray(mean_gradient).reshape(-1, 9))
    dx = ufl.Measure("dx", domain=mesh)
    v = ufl.TestFunction(tensors)
    moment = fem.assemble_vector(fem.form(ufl.inner(G, v) * dx))
    moment.scatter_reverse(la.InsertMode.add)
    mass = fem.assemble_vector(fem.form(ufl.inner(ufl.as_vector([1.0] * 9), v) * dx))
    mass.scatter_reverse(la.InsertMode.add)
    recovered = fem.Function(tensors)
    n = tensors.dofmap.index_map.size_local * 9
    nodal = moment.array[:n] / mass.array[:n]
    recovered.x.array[:n] = nodal
    recovered.x.scatter_forward()
    cells = _CellSpace(mesh, 2)
    q = cells.test()
    slope = ufl.grad(recovered)
    values = cells.assemble((ufl.inner(slope, slope) * q[0] + q[1]) * dx)
    return values[:, 0] / values[:, 1]
