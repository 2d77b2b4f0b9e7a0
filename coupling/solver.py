"""Monolithic Newton–Krylov minimisation of the blended energy (PETSc KSP).

The objective and exact gradient come from :class:`~coupling.model.BlendedModel`; the
Hessian is a PETSc shell matrix whose product is FE tangent + autograd Hessian-vector
products + penalty; the preconditioner is the assembled matrix of
:mod:`coupling.preconditioner`, factorised by MUMPS (Cholesky). Convergence is
judged on the largest atomic force and the largest FE nodal residual (both eV/Å).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from petsc4py import PETSc

from coupling.preconditioner import monolithic_matrix

__all__ = ["SolveResult", "solve"]


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
    max_krylov: int = 500,
    progress=None,
) -> SolveResult:
    """Minimise ``model`` from ``z`` (updated in place) by line-search Newton–CG.

    Each Newton step solves ``H d = −g`` with preconditioned CG to a relative tolerance
    ``min(0.1, sqrt(|g|))`` (inexact Newton). The preconditioner (assembly and MUMPS
    factorisation, the dearest step) is kept while CG needs at most twice the iterations it
    took right after it was built (and at most 30). On negative curvature, CG stops at the
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
    M = None
    last_krylov, fresh_krylov, rebuilds, negative_curvature = 0, None, 0, 0
    reason = "DIVERGED_MAXITS"
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
            if M is not None:
                M.destroy()
            M = monolithic_matrix(
                layout=lay,
                tangent=model.tangent(z),
                dirichlet_rows=dirichlet_rows,
                **preconditioner,
            )
            ksp.setOperators(H, M)
            _factorise(ksp)
            fresh_krylov = None
            rebuilds += 1
        else:
            ksp.setOperators(H, M)
        gnorm = g.norm()
        ksp.setTolerances(rtol=min(0.1, np.sqrt(gnorm)), atol=0.0, max_it=max_krylov)
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
        history=history,
    )
    for obj in (ksp, H, M, g, d, trial, g_trial):
        if obj is not None:
            obj.destroy()
    return result


def _factorise(ksp: PETSc.KSP) -> None:
    """MUMPS LU with METIS ordering (faster here than MUMPS Cholesky on these matrices)."""
    pc = ksp.getPC()
    pc.setType("lu")
    pc.setFactorSolverType("mumps")
    pc.setFactorSetUpSolverType()
    pc.getFactorMatrix().setMumpsIcntl(7, 5)
    ksp.setFromOptions()
    ksp.setUp()


def _ownership_start(layout) -> int:
    sizes = layout.comm.allgather(layout.size_local)
    return int(np.sum(sizes[: layout.comm.rank]))
