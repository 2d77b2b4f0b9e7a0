"""Monolithic Newton–Krylov minimisation of the blended energy (PETSc KSP).

The objective and exact gradient come from :class:`~coupling.model.BlendedModel`; the
Hessian is a PETSc shell matrix whose product is FE tangent + autograd Hessian-vector
products + penalty; the preconditioner is the assembled matrix of
:mod:`coupling.preconditioner`, applied by one GAMG cycle (3D meshes) or factorised by MUMPS
LU (2D meshes). The Cauchy–Born tangent in the Hessian is kept per cell until the cell's
deformation gradient moves by more than ``tangent_tolerance``. Convergence is judged on the
largest atomic force and the largest FE nodal residual (both eV/Å).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from petsc4py import PETSc

from coupling.preconditioner import monolithic_matrix

__all__ = ["LINEAR_SOLVERS", "SolveResult", "solve"]

LINEAR_SOLVERS = ("auto", "gamg", "mumps")


@dataclass(kw_only=True)
class SolveResult:
    """Outcome of one minimisation.

    Attributes:
        converged: both force criteria met.
        newton_iterations: Newton steps taken.
        krylov_iterations: total preconditioned CG iterations.
        preconditioner_builds: how often the preconditioner was assembled and factorised.
        negative_curvature_steps: Newton steps where CG met negative curvature.
        max_atom_force: ``max_i |∇_i E|`` over free atoms, eV/Å.
        max_fe_residual: ``max`` nodal ``|∇_U E|`` over free FE nodes, eV/Å.
        energy: blended energy in eV.
        reason: ``CONVERGED``, ``DIVERGED_MAXITS`` or ``DIVERGED_LINE_SEARCH``.
        linear_solver: the preconditioner used, ``"gamg"`` or ``"mumps"`` (``"auto"`` resolved).
        history: per-iteration ``(energy, max_atom_force, max_fe_residual)``.
    """

    converged: bool
    newton_iterations: int
    krylov_iterations: int
    max_atom_force: float
    max_fe_residual: float
    energy: float
    reason: str
    preconditioner_builds: int = 0
    negative_curvature_steps: int = 0
    linear_solver: str = ""
    history: list[tuple[float, float, float]] = field(default_factory=list)


class _Shell:
    def __init__(self, model, z_ref):
        self.model, self.z_ref = model, z_ref

    def mult(self, mat, x, y):
        self.model.hessian_vector(self.z_ref[0], x, y)


def solve(
    model,
    z: PETSc.Vec,
    *,
    fmax: float = 1e-6,
    max_iterations: int = 100,
    preconditioner: dict,
    linear_solver: str = "auto",
    tangent_tolerance: float = 1e-2,
    max_krylov: int = 500,
    progress=None,
) -> SolveResult:
    """Minimise ``model`` from ``z`` (updated in place) by line-search Newton–CG.

    Each Newton step solves ``H d = −g`` with preconditioned CG to a relative tolerance
    ``min(0.1, sqrt(|g|))`` (inexact Newton). The preconditioner (assembly and GAMG setup or
    MUMPS factorisation) is kept while CG needs at most twice the iterations it took right
    after it was built (and at most 30). On negative curvature, CG stops at the
    iterate before it (Steihaug); if that is not a descent direction, the preconditioned
    gradient ``−M⁻¹g`` is used. A backtracking
    (Armijo) line search on the energy follows; close to round-off, where energy
    differences are noise, a step that lowers the gradient norm is accepted.

    Args:
        model: :class:`~coupling.model.BlendedModel`.
        z: the initial state; holds the minimiser on return.
        fmax: tolerance in eV/Å on both the max atomic force and the max FE nodal residual.
        max_iterations: Newton iteration limit.
        preconditioner: keyword arguments of :func:`~coupling.preconditioner.monolithic_matrix`
            other than ``layout``, ``tangent`` and ``dirichlet_rows`` (``L``, ``mu``, ...).
        linear_solver: how ``M`` is inverted: ``"gamg"`` (one algebraic multigrid cycle,
            PETSc GAMG with the rigid-body modes of the atoms and nodes as near-null space;
            PETSc options with the prefix ``multiscale_newton_gamg_`` tune it), ``"mumps"``
            (exact LU factorisation, METIS ordering) or ``"auto"``: GAMG on 3D meshes, whose
            factorisation fills in badly (31 s of an 83 s solve at 77k DOFs), MUMPS on 2D
            meshes, where it is cheap and keeps CG counts lowest.
        tangent_tolerance: the Hessian's continuum part keeps the Cauchy–Born tangent of a
            cell until its deformation gradient has moved by more than this (largest entry)
            from where the tangent was computed (0: exact tangent at every Newton step). The
            Hessian error, ``~|∂A/∂F|·tol``, slows Newton at most slightly (at 1e-2: no
            change on the void, 21 / 441 against 21 / 449 Newton / CG on the edge
            dislocation); the minimiser is set by the gradient, which is always exact.
        max_krylov: CG iteration limit per Newton step.
        progress: optional callable ``(iteration, energy, f_atoms, f_fe)``.
    """
    lay = model.layout
    comm = lay.comm
    z_ref = [z]
    H = PETSc.Mat().createPython(
        ((lay.size_local, lay.size_global),) * 2, _Shell(model, z_ref), comm=comm
    )
    H.setUp()
    dirichlet_rows = (lay.n_atom_dofs + model.bc_owned + _ownership_start(lay)).astype(
        PETSc.IntType
    )
    ksp = PETSc.KSP().create(comm)
    ksp.setType("cg")
    ksp.setOptionsPrefix("multiscale_newton_")
    g, d, trial, g_trial = (lay.create_vec() for _ in range(4))
    history: list[tuple[float, float, float]] = []
    krylov = 0
    energy = model.energy_gradient(z, g)
    it = 0
    M = inner = None
    if linear_solver == "auto":
        linear_solver = "gamg" if lay.V.mesh.topology.dim == 3 else "mumps"
    dirichlet_local = (lay.n_atom_dofs + model.bc_owned).astype(np.int64)
    last_krylov, fresh_krylov, rebuilds, negative_curvature = 0, None, 0, 0
    gnorm_prev = None
    reason = "DIVERGED_MAXITS"
    saved_tolerance = model.tangent_tolerance
    model.tangent_tolerance = tangent_tolerance
    try:
        while True:
            fa, ff = model.max_forces(g)
            history.append((energy, fa, ff))
            if progress is not None:
                progress(it, energy, fa, ff)
            if fa < fmax and ff < fmax:
                reason = "CONVERGED"
                break
            if it >= max_iterations:
                break
            it += 1
            z_ref[0] = z
            if M is None or last_krylov > max(2 * fresh_krylov, 30):
                # the factorisation is the dearest step: keep it while CG still converges fast
                for obj in (M, inner):
                    if obj is not None:
                        obj.destroy()
                M = monolithic_matrix(
                    layout=lay,
                    tangent=model.tangent(z),
                    dirichlet_rows=dirichlet_rows,
                    **preconditioner,
                )
                ksp.setOperators(H, M)
                inner = _set_preconditioner(
                    ksp, M, kind=linear_solver, model=model, dirichlet_local=dirichlet_local
                )
                fresh_krylov = None
                rebuilds += 1
            else:
                ksp.setOperators(H, M)
            gnorm = g.norm()
            ksp.setTolerances(
                rtol=_forcing(gnorm, gnorm_prev, max(fa, ff) / fmax), atol=0.0, max_it=max_krylov
            )
            gnorm_prev = gnorm
            g.scale(-1.0)
            ksp.solve(g, d)
            g.scale(-1.0)
            last_krylov = ksp.getIterationNumber()
            krylov += last_krylov
            if fresh_krylov is None:
                fresh_krylov = last_krylov
            slope = g.dot(d)
            if ksp.getConvergedReason() == PETSc.KSP.ConvergedReason.DIVERGED_INDEFINITE_MAT:
                negative_curvature += 1
            if not slope < 0:
                # CG stops at the iterate before a negative-curvature direction (Steihaug); that
                # iterate is a descent direction unless CG stopped at once
                ksp.getPC().apply(g, d)
                d.scale(-1.0)
                slope = g.dot(d)
            alpha, accepted = 1.0, False
            for _ in range(30):
                z.copy(trial)
                trial.axpy(alpha, d)
                e_trial = model.energy_gradient(trial, g_trial)
                if e_trial <= energy + 1e-4 * alpha * slope:
                    accepted = True
                elif abs(e_trial - energy) <= 1e-12 * max(1.0, abs(energy)) and (
                    g_trial.norm() < gnorm
                ):
                    accepted = True  # energy differences are round-off here; trust the gradient
                if accepted:
                    break
                alpha *= 0.5
            if not accepted:
                reason = "DIVERGED_LINE_SEARCH"
                break
            trial.copy(z)
            g_trial.copy(g)
            energy = e_trial
    finally:
        model.tangent_tolerance = saved_tolerance
    fa, ff = model.max_forces(g)
    result = SolveResult(
        converged=bool(fa < fmax and ff < fmax),
        newton_iterations=it,
        krylov_iterations=int(krylov),
        max_atom_force=fa,
        max_fe_residual=ff,
        energy=float(energy),
        reason=reason,
        preconditioner_builds=rebuilds,
        negative_curvature_steps=negative_curvature,
        linear_solver=linear_solver,
        history=history,
    )
    for obj in (ksp, inner, H, M, g, d, trial, g_trial):
        if obj is not None:
            obj.destroy()
    return result


def _forcing(gnorm: float, gnorm_prev: float | None, excess: float) -> float:
    """Relative CG tolerance of a Newton step (inexact Newton).

    ``min(0.1, sqrt(|g|), 0.9 (|g|/|g_prev|)²)``: the Eisenstat–Walker choice, tighter as
    Newton converges, so that the outer iteration stays superlinear; but never tighter than
    needed to bring the largest force, ``excess`` times the tolerance now, below it
    (``0.1 / excess``): solving past that only buys accuracy the test does not ask for.
    """
    eta = min(0.1, float(np.sqrt(gnorm)))
    if gnorm_prev is not None and gnorm_prev > 0:
        eta = min(eta, 0.9 * (gnorm / gnorm_prev) ** 2)
    return float(max(eta, 0.1 / max(excess, 1.0), 1e-10))


def _set_preconditioner(ksp, M, *, kind: str, model, dirichlet_local: np.ndarray):
    """Point ``ksp``'s preconditioner at ``M``: GAMG (wrapped, see :class:`_DirichletPC`) or
    MUMPS LU. Returns the inner GAMG ``PC`` to destroy later, or None."""
    pc = ksp.getPC()
    if kind == "mumps":
        # METIS ordering: faster here than MUMPS Cholesky on these matrices
        pc.setType("lu")
        pc.setFactorSolverType("mumps")
        pc.setFactorSetUpSolverType()
        pc.getFactorMatrix().setMumpsIcntl(7, 5)
        ksp.setFromOptions()
        ksp.setUp()
        return None
    if kind != "gamg":
        raise ValueError(f"linear_solver must be one of {LINEAR_SOLVERS}, got {kind!r}")
    coordinates = PETSc.Vec().createWithArray(
        model.dof_coordinates().ravel(), size=(M.getLocalSize()[0], None), comm=M.getComm()
    )
    coordinates.setBlockSize(3)
    M.setNearNullSpace(PETSc.NullSpace().createRigidBody(coordinates))
    coordinates.destroy()
    inner = PETSc.PC().create(M.getComm())
    prefix = ksp.getOptionsPrefix() + "gamg_"
    inner.setOptionsPrefix(prefix)
    inner.setOperators(M, M)
    inner.setType("gamg")
    # our defaults, unless given as PETSc options: SOR inside the Chebyshev smoother keeps
    # the CG counts flat as the mesh is refined below the lattice spacing (point Jacobi,
    # PETSc's default, does not: 24, 26, 43 CG iterations at h_min = 2.6, 1.8, 1.3 Å)
    options = PETSc.Options(prefix)
    added = [key for key in _GAMG_DEFAULTS if not options.hasName(key)]
    for key in added:
        options[key] = _GAMG_DEFAULTS[key]
    try:
        inner.setFromOptions()
        inner.setUp()
    finally:
        for key in added:
            options.delValue(key)
    pc.setType("python")
    pc.setPythonContext(_DirichletPC(inner, dirichlet_local))
    ksp.setFromOptions()
    ksp.setUp()
    return inner


_GAMG_DEFAULTS = {"mg_levels_pc_type": "sor"}


class _DirichletPC:
    """``y = P B P x + (I − P) x``: the inner preconditioner ``B`` on the free DOFs only.

    ``P`` zeroes the Dirichlet rows. ``M`` is the identity there and uncoupled, but multigrid
    does not keep that block structure; without the projection a CG step would move the
    boundary values (the exact Newton step is zero on them).
    """

    def __init__(self, inner: PETSc.PC, rows: np.ndarray) -> None:
        self.inner, self.rows = inner, rows
        self.work: PETSc.Vec | None = None

    def apply(self, pc, x: PETSc.Vec, y: PETSc.Vec) -> None:
        if self.work is None:
            self.work = x.duplicate()
        x.copy(self.work)
        self.work.getArray()[self.rows] = 0.0
        self.inner.apply(self.work, y)
        y.getArray()[self.rows] = x.getArray(readonly=True)[self.rows]

    def destroy(self, pc=None) -> None:
        if self.work is not None:
            self.work.destroy()
            self.work = None


def _ownership_start(layout) -> int:
    sizes = layout.comm.allgather(layout.size_local)
    return int(np.sum(sizes[: layout.comm.rank]))
