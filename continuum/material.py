"""Quadrature-point material: one batched ``law(F)`` call per state of the displacement.

``F(u)`` is evaluated at the quadrature points with a compiled :class:`dolfinx.fem.Expression`,
the law is called once on the whole batch, and ``W``, ``P`` and ``A`` are scattered into
quadrature-element functions that the UFL forms of :mod:`continuum.problem` read.

On affine simplices with P1 displacements ``∇u`` is constant in each cell, so ``F`` is
evaluated at the cell centroid only and the law is called once per cell; ``W``, ``P`` and
``A`` are then DG0 functions (one value a cell, which the forms read at every quadrature
point): a quarter of the memory and coefficient packing of a degree-2 quadrature function
on tetrahedra. A Cauchy–Born law is expensive, so this cuts its cost by the number of
quadrature points per cell. The tangent ``A`` (several times dearer
than ``W`` and ``P`` for Cauchy–Born) is computed once per distinct ``F`` (to round-off,
:data:`SAME_F`: a homogeneously strained mesh costs one call), and only for cells whose ``F``
moved since it was last computed (by more than ``tangent_tolerance``, 0 by default).

=====================================  ============================================
equation                                code
=====================================  ============================================
``F_c = F(u)(x̂_c)``                     ``self._F_expr.eval`` (one point per cell)
``(W, P)_c = law.stress(F_c)``          one call, shape ``(n_cells, …)``
``A_c = law(F_c)[2]``                   stale cells only, once per distinct ``F_c``
``W_q = W_c`` for ``q`` in cell ``c``   ``scatter`` (DG0: one value a cell)
=====================================  ============================================
"""

from __future__ import annotations

import basix
import basix.ufl
import numpy as np
import ufl
from dolfinx import fem
from dolfinx.mesh import CellType, Mesh
from mpi4py import MPI

from continuum.laws import ConstitutiveLaw

__all__ = ["LawError", "QuadratureMaterial", "quadrature_space"]

_SHAPES = {"W": (), "P": (3, 3), "A": (3, 3, 3, 3)}

#: Deformation gradients whose entries agree on a grid this fine (round-off) are one state.
SAME_F = 1e-14


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
        tangent_tolerance: a cell keeps its tangent ``A`` while its ``F`` moves by at most this
            much (largest entry) from where ``A`` was computed; 0 (default): ``A`` is exact.

    Attributes:
        W: energy density, eV/Å³: a scalar DG0 function (one value per cell) where the law
            is evaluated once per cell, else a quadrature function.
        P: first Piola stress, eV/Å³ (``(3, 3)``, DG0 or quadrature, as ``W``).
        A: tangent ``∂P/∂F``, eV/Å³ (``(3, 3, 3, 3)``, DG0 or quadrature, as ``W``).
        law_calls: number of times ``law`` has been called.
        tangent_evaluations: number of cells (times points) whose tangent has been computed.
        tangent_tolerance: see the argument; may be changed at any time.
    """

    def __init__(
        self,
        *,
        u: fem.Function,
        deformation_gradient: ufl.core.expr.Expr,
        law: ConstitutiveLaw,
        degree: int,
        cellwise: bool = True,
        tangent_tolerance: float = 0.0,
    ) -> None:
        mesh = u.function_space.mesh
        self._mesh, self._u, self._law = mesh, u, law
        tdim = mesh.topology.dim
        self._cells = np.arange(mesh.topology.index_map(tdim).size_local, dtype=np.int32)
        self._cellwise = (
            cellwise
            and mesh.topology.cell_type in (CellType.triangle, CellType.tetrahedron)
            and mesh.geometry.cmaps[0].degree == 1
        )
        # constant per cell: one value a cell (DG0) instead of one a quadrature point; the
        # forms still integrate them with the weight at every quadrature point
        self.W, self.P, self.A = (
            fem.Function(
                fem.functionspace(mesh, ("DG", 0, _SHAPES[k]))
                if self._cellwise
                else quadrature_space(mesh, degree, _SHAPES[k]),
                name=k,
            )
            for k in "WPA"
        )
        self._dofs = {k: f.function_space.dofmap.list[self._cells] for k, f in self._fields()}
        cell_type = mesh.basix_cell()
        points = np.asarray(basix.make_quadrature(cell_type, degree)[0])
        self.n_points = points.shape[0]
        centroid = basix.geometry(cell_type).mean(axis=0, keepdims=True)
        eval_points = centroid if self._cellwise else points
        self._F_expr = fem.Expression(deformation_gradient, eval_points)
        self._x_expr = fem.Expression(ufl.SpatialCoordinate(mesh), points)
        self._state: np.ndarray | None = None
        self._F_cells: np.ndarray | None = None
        # tangent per owned cell (and evaluation point) and the F it was computed at
        self._A: np.ndarray | None = None
        self._A_at: np.ndarray | None = None
        self._A_scattered = False
        #: incremented whenever a cell's tangent changes (local to this rank)
        self.tangent_version = 0
        self._pending_A: np.ndarray | None = None
        self.tangent_tolerance = float(tangent_tolerance)
        self.law_calls = 0
        self.tangent_evaluations = 0
        #: ``(n_cells, n_points)`` quadrature points that carry no energy (weight and its
        #: gradient zero there; set by the problem): a non-finite ``W``, ``P`` or ``A`` of the
        #: law there is stored as 0, so that a law which refuses a squashed ``F`` where it does
        #: not count cannot make the energy NaN (``0 · inf``)
        self.inactive: np.ndarray | None = None
        #: ``(F0, W0, P0 (9,), A0 (9, 9), bound)`` of :meth:`linearise`, or None
        self._linear: tuple[np.ndarray, float, np.ndarray, np.ndarray, float] | None = None
        #: points whose law was replaced by the quadratic expansion at the last evaluation
        self.linearised_points = 0
        #: ``(n_cells,)`` the cells that take the expansion, fixed by
        #: :meth:`freeze_linearisation`; None: decided at every evaluation
        self._near: np.ndarray | None = None

    def _fields(self) -> tuple[tuple[str, fem.Function], ...]:
        return (("W", self.W), ("P", self.P), ("A", self.A))

    @property
    def cellwise(self) -> bool:
        """``W``, ``P`` and ``A`` are stored once per cell (DG0): P1 on affine simplices."""
        return self._cellwise

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
        """Write per-point or per-cell values of the owned cells into a quadrature or DG0 field.

        Args:
            field: a quadrature function on this mesh and degree, or a DG0 function.
            values: shape ``(n_cells, n_points, *value_shape)`` or
                ``(n_cells, 1, *value_shape)`` (broadcast over the cell's points; one value
                a cell for DG0).
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

    def linearise(self, *, about: np.ndarray | None, within: float = 0.0) -> None:
        """Replace the law by its quadratic expansion about ``about`` where ``F`` is near it.

        Wherever every entry of ``F − F0`` is at most ``within`` (``F0 = about``), ``W``,
        ``P`` and ``A`` are those of
        ``W0 + P0 : (F − F0) + ½ (F − F0) : A0 : (F − F0)``, the second-order Taylor
        expansion of the law at ``F0`` (the linearised far field of the elastic constants of
        the same law at ``F0``): ``P`` and ``A`` are its exact derivatives, so energy,
        residual and tangent stay consistent, and a state at ``F0`` is exact. The law's error
        there is bounded by ``|∂A/∂F| within²`` in the stress. ``about=None`` or
        ``within = 0``: the law everywhere (the default).

        Args:
            about: ``F0``, ``(3, 3)``.
            within: the bound on ``max |F − F0|`` (dimensionless).
        """
        if about is None or within <= 0.0:
            if self._linear is None:
                return
            self._linear = None
            self.linearised_points = 0
        else:
            last = self._linear
            if (
                last is not None
                and last[4] == within
                and np.array_equal(last[0], np.asarray(about, dtype=np.float64).reshape(9))
            ):
                return
            F0 = np.asarray(about, dtype=np.float64).reshape(1, 3, 3)
            W0, P0, A0 = self._law(F0)
            self.law_calls += 1
            self._linear = (
                F0.reshape(9),
                float(np.asarray(W0).reshape(())),
                np.asarray(P0, dtype=np.float64).reshape(9),
                np.asarray(A0, dtype=np.float64).reshape(9, 9),
                float(within),
            )
        self._near = None
        self.invalidate()
        self._A, self._A_at = None, None

    def freeze_linearisation(self) -> bool:
        """Fix which cells take the expansion of :meth:`linearise`: those within the bound now.

        Until :meth:`linearise` is called again, the same cells keep the expansion wherever
        ``F`` goes, so the energy is one smooth function of ``u`` (a cell that crossed the
        bound during a Newton solve would make it jump).

        Returns:
            Whether a linearisation is in force.
        """
        if self._linear is None:
            return False
        F0, bound = self._linear[0], self._linear[4]
        d = self.deformation_gradients().reshape(self.n_cells, -1) - np.tile(F0, self._m())
        self._near = np.abs(d).max(axis=1) <= bound
        self.invalidate()
        self._A, self._A_at = None, None
        return True

    def linearisation_report(self) -> dict[str, float | int] | None:
        """Where :meth:`linearise`'s expansion is in force, and how far ``F`` went (collective).

        Returns:
            None without a linearisation; else, over every rank, ``bound``, ``cells`` (cells
            taking the expansion), ``cells_total`` (all cells) and ``max_deviation``: the
            largest entry of ``|F − F0|`` in those cells now. Above ``bound``, cells fixed by
            :meth:`freeze_linearisation` left the bound during the solve, and the stress error
            bound of :meth:`linearise` does not hold there.
        """
        if self._linear is None:
            return None
        F0, bound = self._linear[0], self._linear[4]
        d = self.deformation_gradients().reshape(self.n_cells, -1) - np.tile(F0, self._m())
        dev = np.abs(d).max(axis=1) if self.n_cells else np.zeros(0)
        near = self._near if self._near is not None else dev <= bound
        comm = self._mesh.comm
        return {
            "bound": float(bound),
            "cells": int(comm.allreduce(int(near.sum()))),
            "cells_total": int(comm.allreduce(int(self.n_cells))),
            "max_deviation": float(comm.allreduce(float(dev[near].max(initial=0.0)), op=MPI.MAX)),
        }

    def _m(self) -> int:
        """Evaluation points per cell: 1 where the material is stored once per cell."""
        return 1 if self._cellwise else self.n_points

    def _call(
        self, F: np.ndarray, *, tangent: bool, cells: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """:meth:`_call_law`, with the quadratic expansion of :meth:`linearise` near ``F0``.

        ``cells``: the owned cells whose points the rows of ``F`` are (None: all of them).
        """
        if self._linear is None:
            return self._call_law(F, tangent=tangent)
        F0, W0, P0, A0, bound = self._linear
        n = F.shape[0]
        d = F.reshape(n, 9) - F0
        if self._near is not None:
            chosen = self._near if cells is None else self._near[cells]
            near = np.repeat(chosen, n // len(chosen))
        else:
            near = np.abs(d).max(axis=1) <= bound
        self.linearised_points = int(near.sum())
        W, P = np.empty(n), np.empty((n, 9))
        A = np.empty((n, 81)) if tangent else None
        dn = d[near]
        Pn = P0 + dn @ A0.T
        P[near] = Pn
        W[near] = W0 + dn @ P0 + 0.5 * np.einsum("ni,ni->n", dn, Pn - P0)
        if A is not None:
            A[near] = A0.reshape(81)
        far = ~near
        if far.any():
            Wf, Pf, Af = self._call_law(F[far], tangent=tangent)
            W[far], P[far] = Wf, Pf.reshape(-1, 9)
            if A is not None:
                assert Af is not None
                A[far] = Af.reshape(-1, 81)
        return W, P.reshape(n, 3, 3), None if A is None else A.reshape(n, 3, 3, 3, 3)

    def _call_law(
        self, F: np.ndarray, *, tangent: bool
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """The law on ``F`` ``(n, 3, 3)``; for the tangent, once per distinct ``F``.

        For the tangent, rows whose entries agree to :data:`SAME_F` (round-off: a homogeneous
        state on a mesh) share one evaluation, so a uniformly strained region costs one point
        whatever its size.
        ``W`` and ``P``, which decide the answer, are computed for every row, unless all rows
        agree to :data:`SAME_F` (a homogeneous state, e.g. the predictor): then once.

        Returns:
            ``(W (n,), P (n, 3, 3), A (n, 3, 3, 3, 3) or None)``.

        Raises:
            LawError: the law returned arrays of the wrong shape.
        """
        n = F.shape[0]
        distinct = True
        if tangent:
            key = np.rint(F.reshape(n, 9) / SAME_F).astype(np.int64)
            _, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
            distinct = len(first) == n
        elif n > 1 and np.abs(F - F[0]).max() <= SAME_F:
            # one homogeneous state (a predictor, a patch test): one call
            distinct, first, inverse = False, np.zeros(1, dtype=np.intp), np.zeros(n, np.intp)
        Fu = F if distinct else F[first]
        stress_only = getattr(self._law, "stress", None)
        if tangent or stress_only is None:
            W, P, A = self._law(Fu)
        else:
            # the tangent is much dearer than W and P; compute it only when asked for
            (W, P), A = stress_only(Fu), None
        self.law_calls += 1
        out = {"W": np.asarray(W), "P": np.asarray(P)}
        if A is not None:
            out["A"] = np.asarray(A)
        for key_, arr in out.items():
            if arr.shape != (len(Fu), *_SHAPES[key_]):
                raise LawError(
                    f"law {type(self._law).__name__} returned {key_} of shape {arr.shape}, "
                    f"expected {(len(Fu), *_SHAPES[key_])}"
                )
        if not distinct:
            out = {k: v[inverse.ravel()] for k, v in out.items()}
        return out["W"], out["P"], out.get("A")

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
        W, P, A = self._call(F.reshape(-1, 3, 3), tangent=False)
        shape = (self.n_cells, m)
        W, P = self._zero_inactive(W, shape), self._zero_inactive(P, shape)
        if A is not None:
            A = self._zero_inactive(A, shape)
        self.scatter(self.W, W.reshape(shape))
        self.scatter(self.P, P.reshape(*shape, 9))
        # a law without a separate stress path returned its tangent too: keep it for
        # update_tangent, which copies it (81 numbers a point) only if asked
        self._pending_A = A
        self._F_cells = F
        self._state = state.copy()
        return True

    def _inactive_points(self, n_points: int) -> np.ndarray:
        """``(n_cells, n_points)`` :attr:`inactive` at a rule of ``n_points`` per cell.

        At a rule other than the weight's: the cells inactive at every weight point.
        """
        assert self.inactive is not None
        if self.inactive.shape[1] == n_points:
            return self.inactive
        return np.repeat(self.inactive.all(axis=1)[:, None], n_points, axis=1)

    def _zero_inactive(self, values: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        """``values`` (a row per point of every owned cell), 0 where inactive and not finite."""
        if self.inactive is None or np.isfinite(values).all():
            return values
        out = values.reshape(*shape, -1).copy()
        out[self._inactive_points(shape[1])[:, :, None] & ~np.isfinite(out)] = 0.0
        return out.reshape(values.shape)

    def _store_tangent(self, cells: np.ndarray, F: np.ndarray, A: np.ndarray) -> None:
        """Remember ``A`` computed at ``F`` (both of the ``cells`` selected by a mask)."""
        m = F.shape[1]
        if self._A is None or self._A_at is None or self._A.shape[1] != m:
            self._A = np.zeros((self.n_cells, m, 81))
            self._A_at = np.full((self.n_cells, m, 9), np.nan)
        self._A[cells] = A.reshape(-1, m, 81)
        self._A_at[cells] = F.reshape(-1, m, 9)
        self._A_scattered = False
        self.tangent_version += 1

    def update_tangent(self) -> None:
        """Bring ``A`` up to date (calls :meth:`update` first).

        The law is called only for the cells whose ``F`` moved by more than
        :attr:`tangent_tolerance` (largest entry) since their tangent was computed.
        """
        self.update()
        F = self._F_cells
        assert F is not None  # set by update()
        m = F.shape[1]
        if self._pending_A is not None:
            self._store_tangent(np.ones(self.n_cells, dtype=bool), F, self._pending_A)
            self._pending_A = None
        if self._A is None or self._A_at is None or self._A.shape[1] != m:
            stale = np.ones(self.n_cells, dtype=bool)
        else:
            moved = np.abs(F.reshape(self.n_cells, m, 9) - self._A_at).max(axis=(1, 2))
            stale = ~(moved <= self.tangent_tolerance)  # NaN (never computed) is stale
        if stale.any():
            _, _, A = self._call(
                F[stale].reshape(-1, 3, 3), tangent=True, cells=np.flatnonzero(stale)
            )
            assert A is not None  # asked for
            if self.inactive is not None:
                A = A.reshape(int(stale.sum()), m, -1).copy()
                off = self._inactive_points(m)[stale][:, :, None] & ~np.isfinite(A)
                A[off] = 0.0
            self._store_tangent(stale, F[stale], A)
            self.tangent_evaluations += int(stale.sum())
        if not self._A_scattered:
            assert self._A is not None  # stored above (every cell is stale at first)
            self.scatter(self.A, self._A)
            self._A_scattered = True

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
