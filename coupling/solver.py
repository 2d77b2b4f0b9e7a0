"""Monolithic Newton–Krylov minimisation of the blended energy (PETSc KSP).

The objective and exact gradient come from :class:`~coupling.model.BlendedModel`; the
Hessian is a PETSc shell matrix whose product is FE tangent + autograd Hessian-vector
products + penalty; the preconditioner is the assembled matrix of
:mod:`coupling.preconditioner`, applied by one GAMG cycle (3D meshes) or factorised by MUMPS
LU (2D meshes). The Cauchy–Born tangent in the Hessian is kept per cell until the cell's
deformation gradient moves by more than ``tangent_tolerance``. Convergence is judged on the
largest atomic force and the largest FE nodal residual (both eV/Å). The step length comes
from the line search every Newton loop of the project shares
(:func:`continuum.line_search.backtracking_line_search`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, cast

import numpy as np
from petsc4py import PETSc

from continuum.line_search import backtracking_line_search
from coupling.layout import MonolithicLayout
from coupling.model import BlendedModel
from coupling.preconditioner import PreconditionerData, monolithic_matrix

__all__ = ["LINEAR_SOLVERS", "Progress", "SolveResult", "SolverOptions", "solve", "stalled"]

LINEAR_SOLVERS = ("auto", "gamg", "mumps")

#: ``progress(iteration, energy, max_atom_force, max_fe_residual)`` after each Newton step.
Progress = Callable[[int, float, float, float], None]


@dataclass(frozen=True, kw_only=True)
class SolverOptions:
    """How the monolithic problem is minimised.

    Attributes:
        fmax: tolerance in eV/Å on both the max atomic force and the max FE nodal residual.
        max_iterations: Newton iteration limit; a solve that stalls (:func:`stalled`) stops
            before it, ``DIVERGED_STALLED`` (``DIVERGED_ROUNDOFF`` where its forces are at
            their round-off, :func:`at_roundoff`).
        linear_solver: how the preconditioner ``M`` is inverted: ``"gamg"`` (one algebraic
            multigrid cycle, PETSc GAMG with the rigid-body modes of the atoms and nodes as
            near-null space; PETSc options with the prefix ``multiscale_newton_gamg_`` tune
            it), ``"mumps"`` (exact LU factorisation, METIS ordering; on several ranks every
            rank factorises the whole matrix, so that two runs of one ``mpiexec`` command
            agree bit for bit, which MUMPS spread over the ranks does not) or ``"auto"``: GAMG on
            3D meshes, whose factorisation fills in badly, MUMPS on 2D meshes, where it is
            cheap and keeps CG counts lowest.
        tangent_tolerance: the Hessian's continuum part keeps the Cauchy–Born tangent of a
            cell until its deformation gradient has moved by more than this (largest entry)
            from where the tangent was computed (0: exact tangent at every Newton step). The
            Hessian error, ``~|∂A/∂F|·tol``, can only slow Newton; the minimiser is set by
            the gradient, which is always exact.
        max_krylov: CG iteration limit per Newton step.
        linear_far_field: where every entry of a cell's ``F − F_far`` is at most this, the
            Cauchy–Born law is replaced by its quadratic expansion about the far field's
            ``F_far`` (the elastic constants of the same law at ``F_far``: linear-elasticity
            enhanced coupling, applied by :meth:`coupling.system.CoupledSystem.solve`). It
            changes the model, by at most ``|∂A/∂F|·bound²`` in the stress of those cells;
            0 (default): the law everywhere.
    """

    fmax: float = 1e-6
    max_iterations: int = 100
    linear_solver: Literal["auto", "gamg", "mumps"] = "auto"
    tangent_tolerance: float = 1e-2
    max_krylov: int = 500
    linear_far_field: float = 0.0

    def __post_init__(self) -> None:
        if not self.linear_far_field >= 0.0:
            raise ValueError(f"linear_far_field must be >= 0, got {self.linear_far_field!r}")
        if self.linear_solver not in LINEAR_SOLVERS:
            raise ValueError(
                f"linear_solver must be one of {LINEAR_SOLVERS}, got {self.linear_solver!r}"
            )


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
        reason: ``CONVERGED``, ``DIVERGED_MAXITS``, ``DIVERGED_LINE_SEARCH``,
            ``DIVERGED_STALLED`` (:func:`stalled`) or ``DIVERGED_ROUNDOFF`` (stalled at the
            forces' round-off, :func:`at_roundoff`).
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


#: A solve is stalled when its last ``STALL_STEPS`` Newton steps neither brought the largest
#: force below ``STALL_FACTOR`` times the smallest it had before them nor lowered the energy
#: by more than its round-off (:func:`stalled`).
STALL_STEPS, STALL_FACTOR, STALL_ROUNDOFF = 10, 0.5, 1e-12


#: A stalled solve is at its forces' round-off when the smallest force of its last
#: ``STALL_STEPS`` steps is at most this many machine epsilons of the largest force it met
#: (:func:`at_roundoff`).
ROUNDOFF_ULPS = 1000.0


def at_roundoff(history: list[tuple[float, float, float]]) -> bool:
    """Whether a stalled Newton loop stopped at its forces' round-off.

    True when the smallest ``max(fa, ff)`` of the last :data:`STALL_STEPS` steps is at most
    :data:`ROUNDOFF_ULPS` machine epsilons of the largest one of the whole history (the
    solve's start, as a rule): float64 sums of forces that size cannot resolve less. Then no
    smaller load step and no further Newton step can reach a tolerance below it. A solve that
    starts from small forces (a correction pass) may sit at its round-off without this
    saying so; it is then treated as any other stall.
    """
    largest = max(max(fa, ff) for _, fa, ff in history)
    smallest = min(max(fa, ff) for _, fa, ff in history[-STALL_STEPS:])
    return smallest <= ROUNDOFF_ULPS * float(np.finfo(np.float64).eps) * largest


def stalled(history: list[tuple[float, float, float]]) -> bool:
    """Whether a Newton loop with this history of ``(energy, fa, ff)`` has stalled.

    True when, over the last :data:`STALL_STEPS` steps, the largest force never fell below
    :data:`STALL_FACTOR` times the smallest before them **and** the energy fell by at most
    :data:`STALL_ROUNDOFF` ``· max(1, |E|)`` (the line search's round-off band). Both must
    hold: a dislocation gliding lowers the energy at a steady force, and a Newton loop
    converging halves the force at every step. What is left is a state whose forces are at
    their round-off (a ``fmax`` below it cannot be met) or a line search creeping along a
    wall; ``max_iterations`` more steps would change neither.
    """
    if len(history) <= STALL_STEPS:
        return False
    before, window = history[:-STALL_STEPS], history[-STALL_STEPS:]
    best_before = min(max(fa, ff) for _, fa, ff in before)
    best_window = min(max(fa, ff) for _, fa, ff in window)
    start = before[-1][0]
    drop = start - window[-1][0]
    return best_window > STALL_FACTOR * best_before and drop <= STALL_ROUNDOFF * max(
        1.0, abs(start)
    )


#: First shift ``σ`` (a fraction of the preconditioner's diagonal) tried when CG meets
#: negative curvature, the factor it grows by, and how often it may grow.
SHIFT_START, SHIFT_GROWTH, SHIFT_TRIES = 1e-3, 4.0, 8


class _Shell:
    """The Hessian as a PETSc shell matrix, at the state the Newton loop is at.

    With ``shift = σ > 0`` it is ``H + σ D``, ``D`` the diagonal of the preconditioner's
    matrix (positive, in the units of ``H`` row by row).
    """

    def __init__(self, model: BlendedModel) -> None:
        self.model = model
        self.z: PETSc.Vec | None = None
        self.shift = 0.0
        self.diagonal: PETSc.Vec | None = None
        self.work: PETSc.Vec | None = None

    def mult(self, mat: PETSc.Mat, x: PETSc.Vec, y: PETSc.Vec) -> None:
        assert self.z is not None
        self.model.hessian_vector(self.z, x, y)
        if self.shift > 0.0:
            assert self.diagonal is not None
            if self.work is None:
                self.work = x.duplicate()
            self.work.pointwiseMult(self.diagonal, x)
            y.axpy(self.shift, self.work)


class _NewtonKrylov:
    """The Krylov half of a Newton step: ``H d = −g`` by preconditioned CG.

    The preconditioner (assembly and GAMG set-up or MUMPS factorisation) is the dearest
    part, so it is kept while CG needs at most twice the iterations it took right after it
    was built (and at most 30).
    """

    def __init__(self, model: BlendedModel, preconditioner: PreconditionerData, kind: str):
        lay = model.layout
        self.model, self.data, self.kind = model, preconditioner, kind
        self.shell = _Shell(model)
        self.H = PETSc.Mat().createPython(
            ((lay.size_local, lay.size_global),) * 2, self.shell, comm=lay.comm
        )
        self.H.setUp()
        self.dirichlet_local = (lay.n_atom_dofs + model.bc_owned).astype(np.int64)
        self.dirichlet_rows = (self.dirichlet_local + _ownership_start(lay)).astype(PETSc.IntType)
        self.ksp = PETSc.KSP().create(lay.comm)
        self.ksp.setType("cg")
        self.ksp.setOptionsPrefix("multiscale_newton_")
        self.M: PETSc.Mat | None = None
        self.inner: PETSc.PC | None = None
        self.last, self.builds, self.total = 0, 0, 0
        self.fresh: int | None = None
        self.negative_curvature = 0
        self.shift = 0.0  # the last Levenberg shift that removed negative curvature
        self.pc_shift = 0.0  # the shift in the preconditioner's matrix now

    def direction(
        self, z: PETSc.Vec, g: PETSc.Vec, d: PETSc.Vec, rtol: float, max_it: int
    ) -> float:
        """Write the Newton direction at ``z`` (gradient ``g``) into ``d``; returns ``g·d``.

        CG on ``H d = −g``. Where it meets negative curvature (the state is near a saddle of
        the energy, e.g. a dislocation about to glide), the Steihaug iterate it stops at is
        often a step of one or two preconditioned gradients, and Newton would creep. Then
        ``(H + σ D) d = −g`` is solved instead (a Levenberg shift), ``σ`` grown from
        :data:`SHIFT_START` (or a quarter of the last one that worked) until CG no longer
        meets negative curvature: that direction has its largest part along the soft and
        unstable modes, and the line search picks the length.
        """
        self.shell.z = z
        if self.M is None or self.fresh is None or self.last > max(2 * self.fresh, 30):
            self._build(z)
        else:
            self.ksp.setOperators(self.H, self.M)
        self.ksp.setTolerances(rtol=rtol, atol=0.0, max_it=max_it)
        g.scale(-1.0)
        self._solve(g, d, shift=0.0)
        if self._indefinite():
            self.negative_curvature += 1
            shift = max(SHIFT_START, self.shift / SHIFT_GROWTH)
            shifted = d.duplicate()
            for _ in range(SHIFT_TRIES):
                self._shift_preconditioner(shift)
                self._solve(g, shifted, shift=shift)
                if not self._indefinite():
                    shifted.copy(d)
                    self.shift = shift
                    break
                shift *= SHIFT_GROWTH
            shifted.destroy()
        g.scale(-1.0)
        slope = float(g.dot(d).real)
        if not slope < 0:
            # CG stops at the iterate before a negative-curvature direction (Steihaug); that
            # iterate is a descent direction unless CG stopped at once
            self.ksp.getPC().apply(g, d)
            d.scale(-1.0)
            slope = float(g.dot(d).real)
        return slope

    def _solve(self, rhs: PETSc.Vec, x: PETSc.Vec, *, shift: float) -> None:
        self.shell.shift = shift
        try:
            self.ksp.solve(rhs, x)
        finally:
            self.shell.shift = 0.0
        self.last = self.ksp.getIterationNumber()
        self.total += self.last
        if self.fresh is None:
            self.fresh = self.last

    def _indefinite(self) -> bool:
        """CG met negative curvature in ``H`` or in the preconditioner."""
        reason = self.ksp.getConvergedReason()
        return reason in (
            PETSc.KSP.ConvergedReason.DIVERGED_INDEFINITE_MAT,
            PETSc.KSP.ConvergedReason.DIVERGED_INDEFINITE_PC,
        )

    def _shift_preconditioner(self, shift: float) -> None:
        """Make the preconditioner's matrix ``M + σ D`` and set it up again."""
        assert self.M is not None and self.shell.diagonal is not None  # built by direction
        delta = shift - self.pc_shift
        if delta == 0.0:
            return
        add = self.shell.diagonal.copy()
        add.scale(delta)
        self.M.setDiagonal(add, addv=True)  # add to the diagonal
        add.destroy()
        if self.inner is not None:
            self.inner.destroy()
        self.ksp.setOperators(self.H, self.M)
        self.inner = _set_preconditioner(
            self.ksp, self.M, kind=self.kind, model=self.model, dirichlet_local=self.dirichlet_local
        )
        self.pc_shift = shift

    def _build(self, z: PETSc.Vec) -> None:
        for obj in (self.M, self.inner):
            if obj is not None:
                obj.destroy()
        self.M = monolithic_matrix(
            layout=self.model.layout,
            tangent=self.model.tangent(z),
            dirichlet_rows=self.dirichlet_rows,
            data=self.data,
        )
        if self.shell.diagonal is not None:
            self.shell.diagonal.destroy()
        self.shell.diagonal = self.M.getDiagonal()
        self.shell.diagonal.abs()
        self.pc_shift = 0.0
        self.ksp.setOperators(self.H, self.M)
        self.inner = _set_preconditioner(
            self.ksp, self.M, kind=self.kind, model=self.model, dirichlet_local=self.dirichlet_local
        )
        self.fresh = None
        self.builds += 1

    def destroy(self) -> None:
        for obj in (self.ksp, self.inner, self.H, self.M, self.shell.diagonal, self.shell.work):
            if obj is not None:
                obj.destroy()


def solve(
    model: BlendedModel,
    z: PETSc.Vec,
    *,
    preconditioner: PreconditionerData,
    options: SolverOptions | None = None,
    progress: Progress | None = None,
) -> SolveResult:
    """Minimise ``model`` from ``z`` (updated in place) by line-search Newton–CG.

    Each Newton step solves ``H d = −g`` with preconditioned CG to a relative tolerance
    (:func:`_forcing`, inexact Newton). On negative curvature, CG stops at the iterate
    before it (Steihaug); if that is not a descent direction, the preconditioned gradient
    ``−M⁻¹g`` is used. The shared backtracking line search then picks the step.

    Args:
        model: the blended energy.
        z: the initial state; holds the minimiser on return.
        preconditioner: what :func:`~coupling.preconditioner.monolithic_matrix` needs beyond
            the tangent.
        options: tolerances and the linear solver; defaults of :class:`SolverOptions`.
        progress: called after each Newton step.
    """
    opts = options or SolverOptions()
    kind = opts.linear_solver
    if kind == "auto":
        kind = "gamg" if model.layout.V.mesh.topology.dim == 3 else "mumps"
    newton = _NewtonKrylov(model, preconditioner, kind)
    g, d, trial, g_trial = (model.layout.create_vec() for _ in range(4))
    history: list[tuple[float, float, float]] = []
    energy = model.energy_gradient(z, g)
    it, gnorm_prev, reason = 0, None, ""
    saved_tolerance = model.tangent_tolerance
    model.tangent_tolerance = opts.tangent_tolerance
    try:
        while True:
            fa, ff = model.max_forces(g)
            history.append((energy, fa, ff))
            if progress is not None:
                progress(it, energy, fa, ff)
            reason = _stop_reason(history, it, opts)
            if reason:
                break
            it += 1
            gnorm = _norm(g)
            rtol = _forcing(gnorm, gnorm_prev, max(fa, ff) / opts.fmax)
            gnorm_prev = gnorm
            slope = newton.direction(z, g, d, rtol, opts.max_krylov)

            def at(alpha: float) -> float:
                z.copy(trial)
                trial.axpy(alpha, d)
                return model.energy_gradient(trial, g_trial)

            step = backtracking_line_search(
                at,
                energy=energy,
                slope=slope,
                gradient_decreased=lambda: _norm(g_trial) < gnorm,  # noqa: B023 - this step's
            )
            if not step.accepted:
                reason = "DIVERGED_LINE_SEARCH"
                break
            trial.copy(z)
            g_trial.copy(g)
            energy = step.energy
            if it == 1 and model.freeze_linearisation():
                # the cells within the linearisation bound after the first step keep the
                # expansion for the rest of the solve: one smooth energy from here on
                energy = model.energy_gradient(z, g)
    finally:
        model.tangent_tolerance = saved_tolerance
    result = _result(model, g, opts, newton, it=it, energy=energy, reason=reason)
    result.history = history
    newton.destroy()
    for vec in (g, d, trial, g_trial):
        vec.destroy()
    return result


def _stop_reason(history: list[tuple[float, float, float]], it: int, opts: SolverOptions) -> str:
    """Why the Newton loop stops at its last state (``history[-1]``), or "" to go on."""
    _, fa, ff = history[-1]
    if fa < opts.fmax and ff < opts.fmax:
        return "CONVERGED"
    if it >= opts.max_iterations:
        return "DIVERGED_MAXITS"
    if not stalled(history):
        return ""
    return "DIVERGED_ROUNDOFF" if at_roundoff(history) else "DIVERGED_STALLED"


def _result(
    model: BlendedModel,
    g: PETSc.Vec,
    opts: SolverOptions,
    newton: _NewtonKrylov,
    *,
    it: int,
    energy: float,
    reason: str,
) -> SolveResult:
    """The outcome of a minimisation that stopped at gradient ``g``."""
    fa, ff = model.max_forces(g)
    return SolveResult(
        converged=bool(fa < opts.fmax and ff < opts.fmax),
        newton_iterations=it,
        krylov_iterations=int(newton.total),
        max_atom_force=fa,
        max_fe_residual=ff,
        energy=float(energy),
        reason=reason,
        preconditioner_builds=newton.builds,
        negative_curvature_steps=newton.negative_curvature,
        linear_solver=newton.kind,
    )


def _norm(v: PETSc.Vec) -> float:
    # petsc4py types ``norm`` as ``float | tuple[float, float]`` for every norm type; the
    # default 2-norm is one number
    return cast(float, v.norm())


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


def _set_preconditioner(
    ksp: PETSc.KSP, M: PETSc.Mat, *, kind: str, model: BlendedModel, dirichlet_local: np.ndarray
) -> PETSc.PC | None:
    """Point ``ksp``'s preconditioner at ``M``.

    GAMG (wrapped, see :class:`_DirichletPC`) or MUMPS LU. Returns the inner GAMG ``PC`` to
    destroy later, or None.
    """
    pc = ksp.getPC()
    if kind == "mumps" and M.getComm().getSize() > 1:
        # MUMPS on several ranks schedules its factorisation at run time, and two runs of
        # the same command then differ in round-off, which Newton's path can magnify to the
        # solver's tolerance; each rank factorises the whole matrix on its own instead
        pc.setType("redundant")

        def set_up() -> None:
            ksp.setFromOptions()
            ksp.setUp()
            # the copy's LU is made at its first use, which reads the MUMPS options: use it
            # now, while they are set
            x, y = M.createVecRight(), M.createVecLeft()
            pc.apply(x, y)
            x.destroy()
            y.destroy()

        _with_defaults(ksp.getOptionsPrefix(), _REDUNDANT_MUMPS, set_up)
        return None
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
    # petsc4py's stub wants a Sequence and an int pair; it takes an array and PETSc's
    # "decide" (None) for the global size
    coordinates = PETSc.Vec().createWithArray(
        model.dof_coordinates().ravel(),  # type: ignore[arg-type]
        size=(M.getLocalSize()[0], None),  # type: ignore[arg-type]
        comm=M.getComm(),
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
    # PETSc's default, does not); plain (unsmoothed) aggregation, agg_nsmooths 0, gives
    # sparser coarse operators, much cheaper to build and to apply, for a few more CG
    # iterations (bench/solver_scaling.py --linear-solver gamg shows both); one smoothing
    # step a level (mg_levels_ksp_max_it 1, PETSc's default 2) halves the cost of a V-cycle
    # for about a fifth more CG iterations, each of which costs less than the cycle saved
    # (cases/void-cu-3d/README.md, where the coupled row's time goes)
    def set_up_inner() -> None:
        inner.setFromOptions()
        inner.setUp()

    _with_defaults(prefix, _GAMG_DEFAULTS, set_up_inner)
    pc.setType("python")
    pc.setPythonContext(_DirichletPC(inner, dirichlet_local))
    ksp.setFromOptions()
    ksp.setUp()
    return inner


def _with_defaults(prefix: str, defaults: dict[str, str], action: Callable[[], None]) -> None:
    """Run ``action`` with PETSc's options ``defaults`` set under ``prefix``.

    Only keys the user did not give are set, and they are taken out again afterwards.
    """
    options = PETSc.Options(prefix)
    added = [key for key in defaults if not options.hasName(key)]
    for key in added:
        options.setValue(key, defaults[key])
    try:
        action()
    finally:
        for key in added:
            options.delValue(key)


# MUMPS LU with METIS ordering (ICNTL(7) = 5) on every rank's copy of the whole matrix
_REDUNDANT_MUMPS = {
    "redundant_pc_type": "lu",
    "redundant_pc_factor_mat_solver_type": "mumps",
    "redundant_mat_mumps_icntl_7": "5",
}

_GAMG_DEFAULTS = {
    "mg_levels_pc_type": "sor",
    "pc_gamg_agg_nsmooths": "0",
    "mg_levels_ksp_max_it": "1",
}


class _DirichletPC:
    """``y = P B P x + (I − P) x``: the inner preconditioner ``B`` on the free DOFs only.

    ``P`` zeroes the Dirichlet rows. ``M`` is the identity there and uncoupled, but multigrid
    does not keep that block structure; without the projection a CG step would move the
    boundary values (the exact Newton step is zero on them).
    """

    def __init__(self, inner: PETSc.PC, rows: np.ndarray) -> None:
        self.inner, self.rows = inner, rows
        self.work: PETSc.Vec | None = None

    def apply(self, pc: PETSc.PC, x: PETSc.Vec, y: PETSc.Vec) -> None:
        if self.work is None:
            self.work = x.duplicate()
        x.copy(self.work)
        self.work.getArray()[self.rows] = 0.0
        self.inner.apply(self.work, y)
        y.getArray()[self.rows] = x.getArray(readonly=True)[self.rows]

    def destroy(self, pc: PETSc.PC | None = None) -> None:
        if self.work is not None:
            self.work.destroy()
            self.work = None


def _ownership_start(layout: MonolithicLayout) -> int:
    sizes = layout.comm.allgather(layout.size_local)
    return int(np.sum(sizes[: layout.comm.rank]))
