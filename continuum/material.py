"""Quadrature-point material: one batched ``law(F)`` call per state of the displacement.

``F(u)`` is evaluated at the quadrature points with a compiled :class:`dolfinx.fem.Expression`,
the law is called once on the whole batch, and ``W``, ``P`` and ``A`` are scattered into
quadrature-element functions that the UFL forms of :mod:`continuum.problem` read.

On affine simplices with P1 displacements ``∇u`` is constant in each cell, so ``F`` is
evaluated at the cell centroid only and the law is called once per cell; the result is
broadcast to the cell's quadrature points. A Cauchy–Born law is expensive, so this cuts its
cost by the number of quadrature points per cell.

=====================================  ============================================
equation                                code
=====================================  ============================================
``F_c = F(u)(x̂_c)``                     ``self._F_expr.eval`` (one point per cell)
``(W, P, A)_c = law(F_c)``              one call, shape ``(n_cells, …)``
``W_q = W_c`` for ``q`` in cell ``c``   ``_scatter`` (broadcast over quadrature points)
=====================================  ============================================
"""

from __future__ import annotations

from collections.abc import Callable

import basix
import basix.ufl
import dolfinx_solver  # noqa: F401  (orders MPI ahead of the compiled bindings)
import numpy as np
import ufl
from dolfinx import fem
from dolfinx.mesh import CellType, Mesh

__all__ = ["LawError", "QuadratureMaterial", "quadrature_space"]

_SHAPES = {"W": (), "P": (3, 3), "A": (3, 3, 3, 3)}


class LawError(ValueError):
    """A constitutive law returned arrays of the wrong shape."""


def quadrature_space(mesh: Mesh, degree: int, shape: tuple[int, ...] = ()) -> fem.FunctionSpace:
    """Quadrature-element space on ``mesh`` with the default basix rule of ``degree``.

    Args:
        mesh: the mesh.
        degree: quadrature degree (the ``dx`` measure must use the same degree).
        shape: value shape, e.g. ``()``, ``(3, 3)`` or ``(3, 3, 3, 3)``.

    Returns:
        The function space; its dofs are the quadrature points of each cell.
    """
    element = basix.ufl.quadrature_element(
        mesh.basix_cell(), value_shape=shape, scheme="default", degree=degree
    )
    return fem.functionspace(mesh, element)


class QuadratureMaterial:
    """``W``, ``P`` and ``A`` of a law at the quadrature points of the owned cells.

    Args:
        u: displacement function the deformation gradient depends on.
        deformation_gradient: UFL expression of ``F(u)``, value shape ``(3, 3)``.
        law: callable ``law(F (n, 3, 3)) -> (W (n,), P (n, 3, 3), A (n, 3, 3, 3, 3))``,
            eV/Å³.
        degree: quadrature degree.
        cellwise: evaluate the law once per affine simplex (``F`` constant there); pass False
            when ``F`` has parts that vary inside a cell (a background field).

    Attributes:
        W: energy density at the quadrature points, eV/Å³ (scalar quadrature function).
        P: first Piola stress, eV/Å³ (``(3, 3)`` quadrature function).
        A: tangent ``∂P/∂F``, eV/Å³ (``(3, 3, 3, 3)`` quadrature function).
        law_calls: number of times ``law`` has been called.
    """

    def __init__(
        self,
        *,
        u: fem.Function,
        deformation_gradient: ufl.core.expr.Expr,
        law: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]],
        degree: int,
        cellwise: bool = True,
    ) -> None:
        mesh = u.function_space.mesh
        self._mesh, self._u, self._law = mesh, u, law
        tdim = mesh.topology.dim
        self._cells = np.arange(mesh.topology.index_map(tdim).size_local, dtype=np.int32)
        self.W, self.P, self.A = (
            fem.Function(quadrature_space(mesh, degree, _SHAPES[k]), name=k) for k in "WPA"
        )
        self._dofs = {k: f.function_space.dofmap.list[self._cells] for k, f in self._fields()}
        cell_type = mesh.basix_cell()
        points, _ = basix.make_quadrature(cell_type, degree)
        self.n_points = points.shape[0]
        self._cellwise = (
            cellwise
            and mesh.topology.cell_type in (CellType.triangle, CellType.tetrahedron)
            and mesh.geometry.cmaps[0].degree == 1
        )
        centroid = basix.geometry(cell_type).mean(axis=0, keepdims=True)
        eval_points = centroid if self._cellwise else points
        self._F_expr = fem.Expression(deformation_gradient, eval_points)
        self._x_expr = fem.Expression(ufl.SpatialCoordinate(mesh), points)
        self._state: np.ndarray | None = None
        self._pending_A: np.ndarray | None = None
        self._tangent_current = False
        self._F_cells: np.ndarray | None = None
        self.law_calls = 0

    def _fields(self):
        return (("W", self.W), ("P", self.P), ("A", self.A))

    @property
    def n_cells(self) -> int:
        """Number of owned cells."""
        return self._cells.shape[0]

    def quadrature_points(self) -> np.ndarray:
        """Physical quadrature points of the owned cells, shape ``(n_cells·n_points, 3)``, Å.

        Rows are cell-major: point ``q`` of owned cell ``c`` is row ``c·n_points + q``.
        """
        x = self._x_expr.eval(self._mesh, self._cells).reshape(-1, self._mesh.geometry.dim)
        return np.pad(x, ((0, 0), (0, 3 - x.shape[1])))

    def scatter(self, field: fem.Function, values: np.ndarray) -> None:
        """Write per-point or per-cell values into a quadrature function of the owned cells.

        Args:
            field: a quadrature function on this mesh and degree.
            values: shape ``(n_cells, n_points, *value_shape)`` or
                ``(n_cells, 1, *value_shape)`` (broadcast over the cell's points).
        """
        bs = field.function_space.dofmap.index_map_bs
        dofs = field.function_space.dofmap.list[self._cells]
        field.x.array.reshape(-1, bs)[dofs] = values.reshape(self.n_cells, -1, bs)

    def deformation_gradients(self) -> np.ndarray:
        """``F`` of the owned cells at the evaluation points, shape ``(n_cells, m, 3, 3)``.

        ``m`` is 1 on affine simplices (``F`` is constant per cell), else ``n_points``.
        """
        return self._F_expr.eval(self._mesh, self._cells).reshape(self.n_cells, -1, 3, 3)

    def invalidate(self) -> None:
        """Force the next :meth:`update` to call the law (``F`` changed other than via ``u``)."""
        self._state = None

    def update(self) -> bool:
        """Re-evaluate the law if ``u`` changed since the last call.

        Ghost values of ``u`` are refreshed from their owners first (collective).

        Returns:
            ``True`` if the law was called.

        Raises:
            LawError: the law returned arrays of the wrong shape.
        """
        self._u.x.scatter_forward()
        state = self._u.x.array
        if self._state is not None and np.array_equal(state, self._state):
            return False
        F = self.deformation_gradients()
        m = F.shape[1]
        stress_only = getattr(self._law, "stress", None)
        if stress_only is not None:
            # the tangent is much dearer than W and P; compute it only when asked for
            W, P = stress_only(F.reshape(-1, 3, 3))
            A = None
        else:
            W, P, A = self._law(F.reshape(-1, 3, 3))
        self.law_calls += 1
        n = F.shape[0] * m
        out = {"W": np.asarray(W), "P": np.asarray(P)}
        if A is not None:
            out["A"] = np.asarray(A)
        for key, arr in out.items():
            if arr.shape != (n, *_SHAPES[key]):
                raise LawError(
                    f"law {type(self._law).__name__} returned {key} of shape {arr.shape}, "
                    f"expected {(n, *_SHAPES[key])}"
                )
        shape = (self.n_cells, m)
        self.scatter(self.W, out["W"].reshape(shape))
        self.scatter(self.P, out["P"].reshape(*shape, 9))
        # the tangent is only needed by tangent(); defer its (81 per point) copy until then
        self._pending_A = out["A"].reshape(*shape, 81) if "A" in out else None
        self._tangent_current = "A" in out
        self._F_cells = F
        self._state = state.copy()
        return True

    def update_tangent(self) -> None:
        """Bring ``A`` up to date (calls :meth:`update` first)."""
        self.update()
        if not self._tangent_current:
            F = self._F_cells
            _, _, A = self._law(F.reshape(-1, 3, 3))
            A = np.asarray(A)
            expected = (F.shape[0] * F.shape[1], *_SHAPES["A"])
            if A.shape != expected:
                raise LawError(
                    f"law {type(self._law).__name__} returned A of shape {A.shape}, "
                    f"expected {expected}"
                )
            self._pending_A = A.reshape(F.shape[0], F.shape[1], 81)
            self._tangent_current = True
        if self._pending_A is not None:
            self.scatter(self.A, self._pending_A)
            self._pending_A = None

    def cell_averages(self) -> dict[str, np.ndarray]:
        """Per owned cell ``F``, ``W`` and ``P`` averaged over the quadrature points.

        Returns:
            ``{"F": (n_cells, 3, 3), "W": (n_cells,), "P": (n_cells, 3, 3)}``; ``W`` and ``P``
            in eV/Å³.
        """
        self.update()
        out = {"F": self.deformation_gradients().mean(axis=1)}
        for key, field in (("W", self.W), ("P", self.P)):
            bs = field.function_space.dofmap.index_map_bs
            values = field.x.array.reshape(-1, bs)[self._dofs[key]].mean(axis=1)
            out[key] = values.reshape(self.n_cells, *_SHAPES[key])
        return out
