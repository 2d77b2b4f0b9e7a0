"""Standalone Newton minimisation of a pure-continuum :class:`HyperelasticProblem`.

=============================================  ==============================================
step                                           code
=============================================  ==============================================
``u|_D = g`` (Dirichlet values)                ``problem.apply_dirichlet_values``
``K δu = −R`` on the free DOFs (MUMPS LU)      ``ksp.solve``
``E(u + α δu) ≤ E(u) + c α R·δu`` (Armijo)     ``line_search.backtracking_line_search``
stop when ``‖R_free‖ ≤ max(atol, rtol ‖R_0‖)``  ``residual_norm``
=============================================  ==============================================

The coupled atomistic–continuum problem is minimised by ``coupling``; this is for continuum-only
problems (reference solutions, tests and users).
"""

from __future__ import annotations

from typing import Protocol, TypedDict, cast

import numpy as np
from dolfinx import fem
from dolfinx.fem import petsc as fem_petsc
from mpi4py import MPI
from petsc4py import PETSc

from continuum.line_search import backtracking_line_search

__all__ = ["NewtonError", "NewtonProblem", "NewtonResult", "newton_solve"]


class NewtonProblem(Protocol):
    """What :func:`newton_solve` needs of a problem.

    :class:`~continuum.problem.HyperelasticProblem` provides it.
    """

    V: fem.FunctionSpace
    u: fem.Function
    comm: MPI.Comm

    def apply_dirichlet_values(self) -> None:
        """Write the Dirichlet values into ``u``."""
        ...

    def increment_bcs(self) -> list[fem.DirichletBC]:
        """Homogeneous conditions on the Dirichlet DOFs, for the Newton increments."""
        ...

    def energy(self) -> float:
        """The energy at ``u`` in eV."""
        ...

    def residual(self, *, out: PETSc.Vec | None = None) -> PETSc.Vec:
        """The gradient at ``u`` in eV/Å, Dirichlet conditions not applied."""
        ...

    def tangent(
        self, *, out: PETSc.Mat | None = None, bcs: list[fem.DirichletBC] | None = None
    ) -> PETSc.Mat:
        """The assembled Hessian at ``u`` (identity rows and columns on ``bcs``)."""
        ...


class NewtonError(RuntimeError):
    """The line search found no decrease of the energy along the search direction."""


class NewtonResult(TypedDict):
    """What :func:`newton_solve` returns (norms in eV/Å over the free DOFs, energy in eV).

    Attributes:
        converged: the free residual norm reached the tolerance.
        iterations: Newton steps taken.
        residual_norm: the final free residual norm.
        initial_residual_norm: the free residual norm at the start.
        energy: the final energy.
    """

    converged: bool
    iterations: int
    residual_norm: float
    initial_residual_norm: float
    energy: float


def _norm(v: PETSc.Vec) -> float:
    # petsc4py types ``norm`` as ``float | tuple[float, float]`` for every norm type; the
    # default 2-norm is one number
    return cast(float, v.norm())


def _lu_solver(comm: MPI.Comm, A: PETSc.Mat) -> PETSc.KSP:
    # petsc4py's stub names only PETSc.Comm; create() takes an mpi4py communicator as well
    ksp = PETSc.KSP().create(comm)  # type: ignore[arg-type]
    ksp.setOperators(A)
    ksp.setType(PETSc.KSP.Type.PREONLY)
    pc = ksp.getPC()
    pc.setType(PETSc.PC.Type.LU)
    pc.setFactorSolverType("mumps")
    return ksp


def newton_solve(
    problem: NewtonProblem,
    *,
    rtol: float = 1e-10,
    atol: float = 1e-10,
    max_iter: int = 50,
) -> NewtonResult:
    """Minimise ``problem.energy()`` over the free DOFs, starting from ``problem.u``.

    Dirichlet values are written into ``u`` first; the increments vanish on constrained DOFs.
    The step length is halved until the energy satisfies the Armijo condition (with a
    round-off allowance), so the iteration also converges from a poor initial guess.

    Args:
        problem: the continuum problem (Dirichlet conditions set, so that ``K`` is regular).
        rtol: tolerance on the free residual norm relative to the initial one.
        atol: absolute tolerance on the free residual norm, eV/Å.
        max_iter: maximum number of Newton steps.

    Returns:
        ``{"converged": bool, "iterations": int, "residual_norm": float,
        "initial_residual_norm": float, "energy": float}`` (norms in eV/Å, energy in eV).
    """
    problem.apply_dirichlet_values()
    bcs = problem.increment_bcs()
    b = fem_petsc.create_vector(problem.V)
    A: PETSc.Mat | None = None
    ksp: PETSc.KSP | None = None
    du = fem.Function(problem.V)
    energy = problem.energy()
    norm0 = norm = np.inf
    iterations = 0
    converged = False
    try:
        while True:
            problem.residual(out=b)
            fem_petsc.set_bc(b, bcs)
            norm = _norm(b)
            if iterations == 0:
                norm0 = norm
            if norm <= max(atol, rtol * norm0):
                converged = True
                break
            if iterations == max_iter:
                break
            A = problem.tangent(out=A, bcs=bcs)
            if ksp is None:
                ksp = _lu_solver(problem.comm, A)
            b.scale(-1.0)
            ksp.solve(b, du.x.petsc_vec)
            du.x.scatter_forward()
            b.scale(-1.0)
            slope = b.dot(du.x.petsc_vec).real  # R·δu, eV (real PETSc: ``.real`` is the value)
            if not slope < 0.0:  # not a descent direction (non-convex law): steepest descent
                with b.localForm() as local, du.x.petsc_vec.localForm() as d:
                    local.copy(d)
                du.x.petsc_vec.scale(-1.0 / max(norm, 1e-300))
                du.x.scatter_forward()
                slope = b.dot(du.x.petsc_vec).real
            energy = _line_search(problem, du, bcs, energy=energy, slope=slope, norm=norm)
            iterations += 1
    finally:
        for obj in (ksp, A, b):
            if obj is not None:
                obj.destroy()
    return {
        "converged": converged,
        "iterations": iterations,
        "residual_norm": float(norm),
        "initial_residual_norm": float(norm0),
        "energy": float(energy),
    }


def _line_search(
    problem: NewtonProblem,
    du: fem.Function,
    bcs: list[fem.DirichletBC],
    *,
    energy: float,
    slope: float,
    norm: float,
) -> float:
    """``u ← u0 + α δu`` by the shared backtracking line search; returns the new energy (eV)."""
    u = problem.u
    u0 = u.x.array.copy()

    def trial(alpha: float) -> float:
        u.x.array[:] = u0 + alpha * du.x.array
        return problem.energy()

    def gradient_decreased() -> bool:
        r = problem.residual()
        fem_petsc.set_bc(r, bcs)
        smaller = _norm(r) < norm
        r.destroy()
        return bool(smaller)

    step = backtracking_line_search(
        trial, energy=energy, slope=slope, gradient_decreased=gradient_decreased
    )
    if step.accepted:
        return step.energy
    u.x.array[:] = u0
    raise NewtonError(
        f"line search failed: no decrease of the energy along the Newton direction "
        f"(E0 = {energy:.12g} eV, slope = {slope:.3g} eV)"
    )
