"""The ``coupled`` workflow: build the mesh, the atoms and the blended system; solve in load steps.

For load step ``k = 1 … steps`` with ``F_k = I + (k/steps)(F − I)``:

1. start from the previous solution plus the homogeneous increment ``(F_k − F_{k−1}) X``
   (atoms and FE nodes alike; step 1 starts at the homogeneous state);
2. impose ``u = (F_k − I) X`` on the outer boundary and reset the ghost-force correction at
   the homogeneous predictor ``(F_k − I) X``;
3. minimise the blended energy with the monolithic Newton–Krylov solver to ``solver.fmax``;
4. with ``coupling.correction_passes > 1`` (a dislocation), recompute the correction at the
   solution and solve again, until it changes by less than ``coupling.correction_tolerance``
   (:func:`coupling.passes.solve_with_passes`; ``docs/case-coupled.md``);
5. a step that does not converge is cut in two (``loading.max_cuts`` times at most): the
   last converged state is restored, the half increment to ``k − 1/2`` solved (and the
   adaptive loop run there, when it runs at every step), then the rest.

With a dislocation (``defect.kind = "dislocation"``) the FE unknown is the continuous
correction ``U`` to the dislocation's anisotropic Volterra field ``u_d`` (which jumps by ``b``
across its branch cut): the continuum sees ``F = I + ∇U + ∇u_d``, pad and handshake atoms are
tied to ``U + u_d``, the atoms start at ``u_d`` and the outer boundary holds ``U = (F_k − I) X``
(so ``u = (F_k − I) X + u_d``). The predictor of step k, for the ghost-force correction and
the relaxation energy, is atoms at ``(F_k − I) X + u_d`` and ``U = (F_k − I) X``; the
first correction is that of the defect-free lattice without ``u_d``
(:meth:`coupling.system.CoupledSystem.set_boundary`).

================================  =================================================
reported                          definition
================================  =================================================
``energy_eV``                     blended energy ``E_gfc`` at the solution (eV)
``relaxation_energy_eV``          ``E_gfc(solution) − E_gfc(predictor)``, last step
``ghost_force_eV_per_A``          max ``|∇E|`` at the predictor without correction,
                                  atoms within ``r_cut`` of the handshake and FE nodes
``max_force_eV_per_A``            max of the atom force and the FE nodal residual
================================  =================================================

In 2.5d the atoms are one lattice period ``t`` of a slab, so the continuum energy density
is weighted by ``t (1 − β)``: every energy is per slab period (``continuum.problem``
integrates over the 2D mesh, i.e. per Å of thickness).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from continuum.elastic_fields import MPA_SQRT_M_TO_EV_PER_A2_5 as K_UNIT
from coupling.system import CoupledSystem
from multiscale.kinds.coupled.setup import CoupledSetup
from multiscale.progress import Reporter

__all__ = [
    "CoupledRun",
    "StepRecord",
    "build_system",
    "load_value",
    "run_coupled",
    "solve_step",
    "step_name",
]


@dataclass(frozen=True, kw_only=True)
class StepRecord:
    """One load step (energies in eV, forces in eV/Å, times in s).

    ``step`` is the load ``k`` of ``F_k``: an int, or a fraction for a step that was cut.
    """

    step: int | float
    load_factor: float
    converged: bool
    reason: str
    newton_iterations: int
    krylov_iterations: int
    preconditioner_builds: int
    energy: float
    predictor_energy: float
    linear_solver: str
    max_atom_force: float
    max_fe_residual: float
    ghost_force_atoms: float
    ghost_force_fe: float
    wall_time_s: float
    correction_changes: tuple[float, ...] = ()
    correction_passes: int = 1
    correction_status: str = "one pass"
    stress_intensity: float | None = None
    crack_tip_x: float | None = None
    linear_far_field: dict[str, float | int] | None = None
    #: why a step that did not converge may have stalled (:func:`law_wall`), else None
    law_wall: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready record for ``summary.json``."""
        return {
            "step": self.step,
            "load_factor": self.load_factor,
            "status": "converged" if self.converged else "not_converged",
            "reason": self.reason,
            "newton_iterations": self.newton_iterations,
            "krylov_iterations": self.krylov_iterations,
            "preconditioner_builds": self.preconditioner_builds,
            "linear_solver": self.linear_solver,
            "energy_eV": self.energy,
            "relaxation_energy_eV": self.energy - self.predictor_energy,
            "max_atom_force_eV_per_A": self.max_atom_force,
            "max_fe_residual_eV_per_A": self.max_fe_residual,
            "ghost_force_atoms_eV_per_A": self.ghost_force_atoms,
            "ghost_force_fe_eV_per_A": self.ghost_force_fe,
            "correction_passes": self.correction_passes,
            "correction_changes_eV_per_A": list(self.correction_changes),
            "correction_status": self.correction_status,
            "wall_time_s": self.wall_time_s,
            **({"linear_far_field": self.linear_far_field} if self.linear_far_field else {}),
            **({"law_wall": self.law_wall} if self.law_wall else {}),
            **(
                {}
                if self.stress_intensity is None
                else {
                    "k_i_MPa_sqrt_m": self.stress_intensity,
                    "crack_tip_x_A": self.crack_tip_x,
                }
            ),
        }


@dataclass(kw_only=True)
class CoupledRun:
    """Outcome of :func:`run_coupled`.

    Attributes:
        setup: the resolved case.
        system: the coupled system at the solution (``system.z``).
        steps: one record per load step.
        energy_parts: terms of the blended energy at the solution (eV).
        cuts: each load step cut in two: ``{"from", "to", "reason"}`` (the loads of the
            increment that did not converge and why).
        build_time_s: seconds to build mesh, atoms and system.
        wall_time_s: seconds for the whole workflow.
        adaptive: what the adaptive loop did (an
            :class:`~multiscale.kinds.coupled.adaptive.AdaptiveRecord`), None without
            ``[adaptivity]``.
    """

    setup: CoupledSetup
    system: CoupledSystem
    steps: list[StepRecord] = field(default_factory=list)
    energy_parts: dict[str, float] = field(default_factory=dict)
    cuts: list[dict[str, Any]] = field(default_factory=list)
    build_time_s: float = 0.0
    wall_time_s: float = 0.0
    adaptive: Any = None

    def measure_energy_parts(self) -> None:
        """Set :attr:`energy_parts` from the system's current state (collective)."""
        parts = self.system.energy_parts()
        self.energy_parts = {
            "atoms": parts.atoms,
            "continuum": parts.continuum,
            "penalty": parts.penalty,
            "correction": parts.correction,
        }

    @property
    def converged(self) -> bool:
        """Every load step converged."""
        return all(s.converged for s in self.steps)

    @property
    def last(self) -> StepRecord:
        """The last load step solved."""
        return self.steps[-1]

    @property
    def relaxation_energy(self) -> float:
        """``E(solution) − E(predictor)`` of the last load step, eV."""
        return self.last.energy - self.last.predictor_energy

    @property
    def max_force(self) -> float:
        """The larger of the last step's atom force and FE residual, eV/Å."""
        return max(self.last.max_atom_force, self.last.max_fe_residual)


#: Width of a crack's notch in the mesh, in units of the spacing of the lattice planes it
#: runs between: thin against the elements, and clear of the sites on either side (they sit
#: half a spacing from the crack plane), so that every pad atom lies in the mesh.
NOTCH_WIDTH = 0.25


def crack_notch(setup: CoupledSetup) -> Any:
    """The thin rectangle cut from the mesh along a crack's faces, or None without a crack.

    It runs on the crack plane ``y = t_y`` from the core's centre (inside the mesh hole)
    to beyond the outer boundary, so that the continuum is cut from the atoms outward.
    """
    from continuum.geometry import Rectangle

    crack = setup.crack
    if crack is None:
        return None
    dom, c = setup.domain, setup.handshake.center
    far = dom.radius if dom.half_size is None else float(np.max(dom.half_size[:2]))
    assert far is not None
    half = 0.5 * NOTCH_WIDTH * crack.plane_spacing
    y = float(crack.tip[1])
    return Rectangle(lo=(-2.0 * far - 1.0, y - half), hi=(float(c[0]), y + half))


def _shapes(setup: CoupledSetup) -> tuple[Any, Any]:
    """The outer domain and the mesh hole, as mesh shapes.

    The hole is the core's first ball (disk): a grown region's other balls are cut from the
    mesh afterwards (the cells with every vertex in the core).
    """
    from continuum.geometry import Ball, Box, Disk, Rectangle

    hs, dom = setup.handshake, setup.domain
    R, c = hs.core_radius, hs.center
    if setup.dimension == "3d":
        hole: Any = Ball(center=c, radius=R)
        if dom.outer == "box":
            assert dom.half_size is not None
            return Box(lo=tuple(-dom.half_size), hi=tuple(dom.half_size)), hole
        assert dom.radius is not None
        return Ball(center=(0.0, 0.0, 0.0), radius=dom.radius), hole
    hole = Disk(center=(c[0], c[1]), radius=R)
    if dom.outer == "rectangle":
        assert dom.half_size is not None
        h = dom.half_size[:2]
        return Rectangle(lo=tuple(-h), hi=tuple(h)), hole
    assert dom.radius is not None
    return Disk(center=(0.0, 0.0), radius=dom.radius), hole


def build_system(
    setup: CoupledSetup, *, comm: Any, mesh_data: Any = None, step: int | None = None
) -> CoupledSystem:
    """Mesh, continuum problem, atoms and the coupled system of a case.

    Args:
        setup: the resolved case.
        comm: MPI communicator of the mesh (atoms live on its rank 0).
        mesh_data: the mesh to use (a refined one, or one with the grown core cut out);
            None: the case's graded mesh.
        step: the load step whose background field the system carries (a crack's K field
            changes with the load); None: the last (a state at the full load is restored
            into it).

    Returns:
        A :class:`coupling.system.CoupledSystem` at zero displacement; with a dislocation, the
        FE unknown is the correction to its Volterra field and the atoms start on that field;
        with a crack, likewise with its K field under ``K_step``, and the mesh is cut along
        the crack faces (:func:`crack_notch`).
    """
    from continuum.mesh import graded_mesh
    from continuum.problem import HyperelasticProblem
    from coupling.system import build_coupled_system
    from multiscale.kinds.coupled.sites import coupled_sites

    handshake, mesh, pot = setup.handshake, setup.mesh, setup.potential
    if mesh_data is None:
        outer, hole = _shapes(setup)
        mesh_data = graded_mesh(
            comm=comm,
            outer=outer,
            hole=hole,
            focus_radius=handshake.reach,
            h_min=mesh.h_min,
            h_max=mesh.h_max,
            growth=mesh.growth,
            notch=crack_notch(setup),
        )
    thickness = setup.lattice.period if setup.dimension == "2.5d" else 1.0
    assert thickness is not None
    problem = HyperelasticProblem(
        mesh_data=mesh_data,
        law=pot.law,
        mode=setup.dimension,
        weight=lambda x: thickness * handshake.continuum_weight(x),
        with_background=setup.dislocation is not None or setup.crack is not None,
    )
    atoms, perfect = coupled_sites(setup)
    system = build_coupled_system(
        potential=pot.module,
        atoms=atoms,
        handshake=handshake,
        problem=problem,
        kappa=setup.coupling.kappa,
        ghost_force_correction=setup.coupling.ghost_force_correction,
        perfect_atoms=perfect,
        device=pot.device,
        hessian_dtype=setup.coupling.hessian_dtype,
    )
    background = setup.background(setup.loading.steps if step is None else step)
    if background is not None:
        # The FE field is the correction to the Volterra or K field; atoms start on it.
        system.set_background(background)
        system.set_atom_displacements(background.displacement(system.positions[: system.n_free]))
    return system


def _advance_crack(setup: CoupledSetup, system: CoupledSystem, k: float, previous: float) -> None:
    """``K_previous → K_k``: the atoms move by the increment of the K field (linear in ``K``).

    The FE correction stays; the background becomes the field of ``K_k``, so the predictor
    that :meth:`~coupling.system.CoupledSystem.advance_load` then sets is the state on it.
    """
    before, now = setup.background(previous), setup.background(k)
    assert before is not None and now is not None
    free = system.positions[: system.n_free]
    du = now.displacement(free) - before.displacement(free)
    system.set_atom_displacements(system.model.layout.atoms_of(system.z) + du)
    system.set_background(now)


def _increment(setup: CoupledSetup, system: CoupledSystem, k: float, previous: float) -> None:
    """From load ``previous`` to ``k``: a crack's K field, the homogeneous increment, boundary."""
    if setup.crack is not None:
        _advance_crack(setup, system, k, previous)
    system.advance_load(setup.loading.deformation(previous), setup.loading.deformation(k))


def step_name(k: float) -> str:
    """A load ``k`` as the log and the history write it: ``4``, or ``4.5`` for a cut step."""
    return f"{k:g}"


def _load_text(setup: CoupledSetup, k: float) -> str:
    """The load of step ``k`` for the log: ``F_k``, or a crack's ``K_I`` (and ``F_k``)."""
    loading = setup.loading
    load = f"F = I + {loading.factor(k):g} (F - I)"
    if setup.crack is None:
        return load
    text = f"K_I = {loading.stress_intensity(k) / K_UNIT:.4g} MPa√m"
    return f"{text}, {load}" if np.any(loading.strain) else text


def solve_step(
    setup: CoupledSetup,
    system: CoupledSystem,
    k: float,
    reporter: Reporter,
    *,
    advance: bool = True,
    previous: float | None = None,
    label: str | None = None,
) -> StepRecord:
    """Load step ``k``: the homogeneous increment, the boundary, the correction, the solve.

    The increment is from the load ``previous`` (``k − 1`` when None), where the system is.
    With ``advance=False`` the system is already at load ``k`` (a state carried into a
    changed system): it is solved from where it is.
    """
    from coupling.passes import solve_with_passes

    start = time.perf_counter()
    loading = setup.loading
    if advance:
        _increment(setup, system, k, k - 1 if previous is None else previous)
    ghost = system.ghost_forces(within=setup.potential.range)
    e_predictor = system.energy_parts(system.predictor).total
    label = label or f"load step {step_name(k)}/{loading.steps}"
    reporter.info(
        f"{label}: {_load_text(setup, k)}; ghost forces without correction "
        f"at the predictor: atoms {ghost[0]:.3e}, FE {ghost[1]:.3e} eV/Å"
    )

    def progress(it: int, energy: float, fa: float, ff: float) -> None:
        reporter.log(
            f"{label}: Newton {it:3d}  E = {energy:.10f} eV  max|f| atoms {fa:.3e} FE {ff:.3e} eV/Å"
        )
        parts = {"max_atom_force_eV_per_A": fa, "max_fe_residual_eV_per_A": ff}
        reporter.progress(f"{label} Newton", it, energy, max(fa, ff), parts=parts)

    outcome = solve_with_passes(
        system,
        options=setup.solver,
        passes=setup.coupling.passes,
        progress=progress,
        report=lambda message: reporter.info(f"{label}: {message}"),
    )
    result = outcome.result
    linear = _linear_far_field(system, reporter, label)
    wall = None if result.converged else _stall_note(system, reporter, label)
    record = StepRecord(
        step=k,
        load_factor=loading.factor(k),
        converged=bool(result.converged),
        reason=str(result.reason),
        newton_iterations=outcome.newton_iterations,
        krylov_iterations=outcome.krylov_iterations,
        preconditioner_builds=int(result.preconditioner_builds),
        linear_solver=str(result.linear_solver),
        energy=float(result.energy),
        predictor_energy=float(e_predictor),
        max_atom_force=float(result.max_atom_force),
        max_fe_residual=float(result.max_fe_residual),
        ghost_force_atoms=float(ghost[0]),
        ghost_force_fe=float(ghost[1]),
        wall_time_s=time.perf_counter() - start,
        correction_changes=outcome.changes,
        correction_passes=outcome.passes,
        correction_status=outcome.status,
        **_crack_tip(setup, system, k, reporter, label),
        linear_far_field=linear,
        law_wall=wall,
    )
    state_word = "converged" if record.converged else f"NOT converged ({record.reason})"
    reporter.info(
        f"{label}: {state_word} in {record.newton_iterations} Newton / "
        f"{record.krylov_iterations} CG iterations, E = {record.energy:.8f} eV, "
        f"relaxation {record.energy - record.predictor_energy:+.6e} eV, max|f| atoms "
        f"{record.max_atom_force:.2e} FE {record.max_fe_residual:.2e} eV/Å "
        f"({record.wall_time_s:.1f} s)"
    )
    return record


def _stall_note(system: CoupledSystem, reporter: Reporter, label: str) -> str | None:
    """:func:`law_wall` for a step that did not converge, also written to the log."""
    wall = law_wall(system)
    if wall is not None:
        reporter.info(f"{label}: {wall}")
    return wall


#: A quadrature point whose ``F`` is within this fraction of the Cauchy–Born law's walls
#: (:meth:`atomistic.cauchy_born.CauchyBorn.wall_margin`) counts as pressed against them.
WALL_MARGIN = 1e-2


def law_wall(system: CoupledSystem, *, margin: float = WALL_MARGIN) -> str | None:
    """Why a solve may not converge: continuum points pressed against the law's wall.

    The Cauchy–Born law returns ``W = +inf`` past its walls (a lattice squashed below
    ``MIN_STRETCH`` or two sites closer than ``MIN_SEPARATION`` of the nearest distance).
    A point that close is far outside the lattice's elastic range, where a law fitted to data
    (a committee) extrapolates and may be soft and non-convex: Newton then meets negative
    curvature and the line search cuts every step that crosses the wall, which can stall it.
    Returns one line naming the points (count, the worst one's place and margin, a
    committee's spread there), or None when no point carrying energy is that close, or the
    law has no walls (collective).
    """
    from mpi4py import MPI

    material = system.problem.material
    law = material._law
    walls = getattr(law, "wall_margin", None)
    F = material.deformation_gradients()  # (cells, m, 3, 3)
    n_cells, m = F.shape[:2]
    found = (np.inf, 0, None, None)
    if walls is not None and n_cells:
        values = walls(F.reshape(-1, 3, 3)).reshape(n_cells, m)
        if material.inactive is not None:
            idle = material.inactive
            idle = idle if idle.shape[1] == m else idle.all(axis=1)[:, None]
            values = np.where(np.broadcast_to(idle, values.shape), np.inf, values)
        k = int(np.argmin(values))
        x = material.quadrature_points().reshape(n_cells, -1, 3)
        where = x[k // m, k % m] if m == x.shape[1] else x[k // m].mean(axis=0)
        found = (float(values.flat[k]), int((values < margin).sum()), where, F.reshape(-1, 3, 3)[k])
    comm = system.comm
    every = comm.allgather(found)
    worst = min(every, key=lambda item: item[0])
    count = comm.allreduce(found[1], op=MPI.SUM)
    if walls is None or count == 0:
        return None
    value, _, where, F_worst = worst
    smin = float(np.linalg.svd(F_worst, compute_uv=False).min())
    text = (
        f"{count} continuum point(s) within {margin:g} of the Cauchy–Born law's wall (W = +inf "
        f"past it; line-search trials that cross it are cut), the worst at x = {where[0]:.2f}, "
        f"y = {where[1]:.2f} Å, margin {value:.1e}, smallest singular value of F {smin:.4f}"
    )
    spread = getattr(law, "member_spread", None)
    values = spread(F_worst[None]) if spread is not None and value > 0 else None
    if values is not None:
        text += (
            f"; the committee's members disagree there by {float(values[0]):.3f} eV a site "
            "(the law extrapolates, far from its training data)"
        )
    return text


def _linear_far_field(
    system: CoupledSystem, reporter: Reporter, label: str
) -> dict[str, float | int] | None:
    """``solver.linear_far_field`` at the solution: its cells, and whether they kept the bound.

    The cells are chosen after the first Newton step and kept (one smooth energy); a cell
    whose ``F`` then left the bound is reported, not hidden (collective).
    """
    report = system.problem.material.linearisation_report()
    if report is None:
        return None
    reporter.info(
        f"{label}: linearised far field in {report['cells']} of {report['cells_total']} cells, "
        f"max |F - F_far| there {report['max_deviation']:.3e} (bound {report['bound']:.3e})"
    )
    if report["max_deviation"] > report["bound"]:
        reporter.info(
            f"{label}: warning: cells of the linearised far field left its bound during the "
            "solve; the linearisation's error bound does not hold there (lower "
            "solver.linear_far_field, or 0 to turn it off)"
        )
    return report


def _crack_tip(
    setup: CoupledSetup, system: CoupledSystem, k: float, reporter: Reporter, label: str
) -> dict[str, float | None]:
    """A crack's ``K_I`` at step ``k`` (MPa√m) and its tip at the solution, logged (collective).

    The tip: :func:`coupling.crack.tip_position` on the free atoms.
    """
    crack = setup.crack
    if crack is None:
        return {}
    from coupling.crack import tip_position

    n = system.n_free
    u = system.atom_displacements()[:n]
    tip = tip_position(crack.tip, crack.plane_spacing, system.positions[:n], u)
    where = (
        "not found"
        if tip is None
        else f"x = {tip:.2f} Å ({tip - crack.tip[0]:+.2f} Å from the first)"
    )
    reporter.info(f"{label}: crack tip {where}")
    return {
        "stress_intensity": setup.loading.stress_intensity(k) / K_UNIT,
        "crack_tip_x": tip,
    }


def run_coupled(
    setup: CoupledSetup,
    *,
    comm: Any,
    reporter: Reporter,
    restored: CoupledRun | None = None,
    after_step: Callable[[CoupledRun, float], None] | None = None,
    elapsed_before: float = 0.0,
    adapt: Callable[[CoupledRun], None] | None = None,
) -> CoupledRun:
    """Solve a coupled case in load steps (collective over ``comm``).

    The solver's options are ``setup.solver``; the correction passes ``setup.coupling``.

    Args:
        setup: the resolved case.
        comm: MPI communicator.
        reporter: messages and progress (silent on ranks other than 0).
        restored: a run restored from a load-step checkpoint
            (:func:`multiscale.kinds.coupled.checkpoint.restore_steps`): the steps after its
            last one are solved; None: built at zero load, from the first step.
        after_step: called with the run and the seconds since its start after every
            converged load step, or half of a cut one (the checkpoint); None: nothing.
        elapsed_before: seconds the restored run had taken before it was interrupted.
        adapt: called with the run after every load step (and every half of a cut one)
            that converged or cannot be cut again, before the next (the adaptive loop of
            ``adaptivity.load_steps = "every"``, which may change the run's system and
            setup); None: nothing.

    Returns:
        The run; ``run.system.z`` holds the solution and ``system.problem.u`` its FE field.
    """
    start = time.perf_counter()
    if restored is None:
        system = build_system(setup, comm=comm, step=0)
        run = CoupledRun(setup=setup, system=system, build_time_s=time.perf_counter() - start)
    else:
        run = restored
        start -= elapsed_before
    n_pad = len(run.system.positions) - run.system.n_free
    reporter.info(
        f"coupled system: {run.system.n_free} free + {n_pad} pad atoms, "
        f"{run.system.problem.n_dofs} FE dofs on {comm.size} rank(s), kappa "
        f"{setup.coupling.kappa:.4g} eV/Å² (built in {run.build_time_s:.1f} s)"
    )
    hooks = _Hooks(reporter=reporter, adapt=adapt, after_step=after_step, start=start)
    done = run.steps[-1].step if run.steps else 0
    ended = done >= setup.loading.steps
    for k in range(math.floor(done) + 1, setup.loading.steps + 1):
        if not _advance(run, done, k, run.setup.loading.max_cuts, hooks):
            break
        done = k
    if ended:  # restored at the last step: rebuild its correction
        solve_step(run.setup, run.system, done, reporter, advance=False, label="restart")
    run.measure_energy_parts()  # also leaves problem.u at the solution
    run.wall_time_s = time.perf_counter() - start
    return run


@dataclass(frozen=True, kw_only=True)
class _Hooks:
    """What :func:`run_coupled` calls after each load step it solves."""

    reporter: Reporter
    adapt: Callable[[CoupledRun], None] | None
    after_step: Callable[[CoupledRun, float], None] | None
    start: float


def load_value(value: float) -> int | float:
    """A load as it is recorded: an int, or a fraction for half of a cut step."""
    value = float(value)
    return int(value) if value == int(value) else value


def _advance(run: CoupledRun, start: float, end: float, cuts: int, hooks: _Hooks) -> bool:
    """Solve the increment from load ``start`` to ``end``, cut in two while it fails.

    A solve that does not converge with ``cuts`` left restores the state at ``start``
    (taken before the solve) and solves ``start → mid`` and ``mid → end`` in its place, each
    allowed one cut fewer; except a solve stalled at its forces' round-off
    (``DIVERGED_ROUNDOFF``: ``solver.fmax`` is below what float64 resolves), which no cut
    helps. Each converged solve is appended to ``run.steps`` and followed by
    ``hooks.adapt`` and ``hooks.after_step``; a failure that cannot be cut is appended and
    adapted (the loop stops on it) and ends the run.

    Returns:
        Whether the system is at a converged solution of load ``end``.
    """
    system = run.system
    saved = system.snapshot() if cuts > 0 else None
    record = solve_step(run.setup, system, end, hooks.reporter, previous=start)
    # forces at their round-off cannot meet solver.fmax at any load: no cut
    if not record.converged and saved is not None and record.reason != "DIVERGED_ROUNDOFF":
        mid = load_value(0.5 * (start + end))
        run.cuts.append({"from": start, "to": end, "reason": record.reason})
        hooks.reporter.info(
            f"load step {step_name(end)}: not converged ({record.reason}); the increment "
            f"from load {step_name(start)} is cut in two: load {step_name(mid)} first "
            f"({cuts - 1} more cut(s) allowed, loading.max_cuts)"
        )
        system.restore(saved)
        return _advance(run, start, mid, cuts - 1, hooks) and _advance(
            run, mid, end, cuts - 1, hooks
        )
    run.steps.append(record)
    if hooks.adapt is not None:
        hooks.adapt(run)
    if not run.converged:
        return False
    if hooks.after_step is not None:
        hooks.after_step(run, time.perf_counter() - hooks.start)
    return True
