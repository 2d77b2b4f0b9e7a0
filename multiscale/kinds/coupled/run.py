"""The ``coupled`` workflow: build the mesh, the atoms and the blended system; solve in load steps.

For load step ``k = 1 … steps`` with ``F_k = I + (k/steps)(F − I)``:

1. start from the previous solution plus the homogeneous increment ``(F_k − F_{k−1}) X``
   (atoms and FE nodes alike; step 1 starts at the homogeneous state);
2. impose ``u = (F_k − I) X`` on the outer boundary and reset the ghost-force correction at
   the homogeneous predictor ``(F_k − I) X``;
3. minimise the blended energy with the monolithic Newton–Krylov solver to ``solver.fmax``;
4. with ``coupling.correction_passes > 1`` (a dislocation), recompute the correction at the
   solution (``CoupledSystem.update_correction``) and solve again, until it changes by less
   than ``coupling.correction_tolerance`` (``docs/case-coupled.md``).

With a dislocation (``defect.kind = "dislocation"``) the FE unknown is the continuous
correction ``U`` to the dislocation's anisotropic Volterra field ``u_d`` (which jumps by ``b``
across its branch cut): the continuum sees ``F = I + ∇U + ∇u_d``, pad and handshake atoms are
tied to ``U + u_d``, the atoms start at ``u_d`` and the outer boundary holds ``U = (F_k − I) X``
(so ``u = (F_k − I) X + u_d``). The predictor of step k, for the ghost-force correction and
the relaxation energy, is atoms at ``(F_k − I) X + u_d`` and ``U = (F_k − I) X``; the
first correction is that of the defect-free lattice without ``u_d``
(``coupling.system.CoupledSystem.set_boundary``).

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

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from multiscale.kinds.coupled.setup import CoupledSetup
from multiscale.progress import Reporter

__all__ = ["CoupledRun", "StepRecord", "build_system", "ghost_forces", "run_coupled"]


@dataclass(frozen=True, kw_only=True)
class StepRecord:
    """One load step (energies in eV, forces in eV/Å, times in s)."""

    step: int
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
        }


@dataclass(kw_only=True)
class CoupledRun:
    """Outcome of :func:`run_coupled`.

    Attributes:
        setup: the resolved case.
        system: the coupled system at the solution (``system.z``).
        steps: one record per load step.
        energy_parts: terms of the blended energy at the solution (eV).
        build_time_s: seconds to build mesh, atoms and system.
        wall_time_s: seconds for the whole workflow.
    """

    setup: CoupledSetup
    system: Any
    steps: list[StepRecord] = field(default_factory=list)
    energy_parts: dict[str, float] = field(default_factory=dict)
    build_time_s: float = 0.0
    wall_time_s: float = 0.0

    @property
    def converged(self) -> bool:
        return all(s.converged for s in self.steps)

    @property
    def last(self) -> StepRecord:
        return self.steps[-1]

    @property
    def relaxation_energy(self) -> float:
        """``E(solution) − E(predictor)`` of the last load step, eV."""
        return self.last.energy - self.last.predictor_energy

    @property
    def max_force(self) -> float:
        return max(self.last.max_atom_force, self.last.max_fe_residual)


def _shapes(setup: CoupledSetup) -> tuple[Any, Any]:
    from continuum.geometry import Ball, Box, Disk, Rectangle

    R = setup.core_radius
    if setup.dimension == "3d":
        hole = Ball(center=(0.0, 0.0, 0.0), radius=R)
        if setup.outer == "box":
            assert setup.half_size is not None
            outer = Box(lo=tuple(-setup.half_size), hi=tuple(setup.half_size))
        else:
            assert setup.radius is not None
            outer = Ball(center=(0.0, 0.0, 0.0), radius=setup.radius)
    else:
        hole = Disk(center=(0.0, 0.0), radius=R)
        if setup.outer == "rectangle":
            assert setup.half_size is not None
            h = setup.half_size[:2]
            outer = Rectangle(lo=tuple(-h), hi=tuple(h))
        else:
            assert setup.radius is not None
            outer = Disk(center=(0.0, 0.0), radius=setup.radius)
    return outer, hole


def build_system(setup: CoupledSetup, *, comm: Any) -> Any:
    """Mesh, continuum problem, handshake, atoms and the coupled system of a case.

    Args:
        setup: the resolved case.
        comm: MPI communicator of the mesh (atoms live on its rank 0).

    Returns:
        A :class:`coupling.system.CoupledSystem` at zero displacement; with a dislocation, the
        FE unknown is the correction to its Volterra field and the atoms start on that field.
    """
    import torch

    from continuum.mesh import graded_mesh
    from continuum.problem import HyperelasticProblem
    from coupling.handshake import Handshake
    from coupling.system import build_coupled_system
    from multiscale.kinds.coupled.sites import coupled_sites

    handshake = Handshake(
        shape="sphere" if setup.dimension == "3d" else "cylinder",
        center=(0.0, 0.0, 0.0),
        core_radius=setup.core_radius,
        width=setup.handshake_width,
        pad_width=setup.pad_width,
    )
    outer, hole = _shapes(setup)
    mesh_data = graded_mesh(
        comm=comm,
        outer=outer,
        hole=hole,
        focus_radius=handshake.atom_radius,
        h_min=setup.h_min,
        h_max=setup.h_max,
        growth=setup.growth,
    )
    thickness = setup.period if setup.dimension == "2.5d" else 1.0
    problem = HyperelasticProblem(
        mesh_data=mesh_data,
        law=setup.law,
        mode=setup.dimension,
        weight=lambda x: thickness * handshake.continuum_weight(x),
        with_background=setup.dislocation is not None,
    )
    atoms, perfect = coupled_sites(setup)
    system = build_coupled_system(
        potential=setup.potential,
        atoms=atoms,
        handshake=handshake,
        problem=problem,
        kappa=setup.kappa,
        ghost_force_correction=setup.ghost_force_correction,
        perfect_atoms=perfect,
        device=setup.device,
        hessian_dtype=getattr(torch, setup.hessian_dtype),
    )
    if setup.dislocation is not None:
        # The FE field is the continuous correction to the Volterra field; atoms start on it.
        disl = setup.dislocation
        system.set_background(disl.displacement, disl.gradient)
        system.model.layout.set_atoms(
            system.z, disl.displacement(system.positions[: system.n_free])
        )
    return system


def ghost_forces(system: Any, state: Any, *, cutoff: float) -> tuple[float, float]:
    """Ghost forces: max ``|∇E|`` at ``state`` without the ghost-force correction, eV/Å.

    Over the free atoms within ``cutoff`` of the handshake (``d > R − r_cut``: the atoms
    that see blending; deeper atoms feel only the defect's true forces) and over the free FE
    nodes.

    Returns:
        ``(atoms, fe)`` maxima.
    """
    model = system.model
    lay = model.layout
    saved = model.correction
    model.correction = None
    try:
        g = lay.create_vec()
        model.energy_gradient(state, g)
        _, fe = model.max_forces(g)
        f = np.linalg.norm(lay.atoms_of(g), axis=1)
    finally:
        model.correction = saved
    d = system.handshake.distance(system.positions[: system.n_free])
    blended = d > system.handshake.core_radius - cutoff
    return float(f[blended].max(initial=0.0)), float(fe)


def _solve_step(
    setup: CoupledSetup,
    system: Any,
    k: int,
    reporter: Reporter,
    fmax: float,
    max_it: int,
    solver_options: dict[str, Any],
) -> StepRecord:
    from coupling.system import homogeneous

    start = time.perf_counter()
    previous, current = setup.deformation(k - 1), setup.deformation(k)
    z = system.z.copy()
    z.axpy(1.0, system.state_from(homogeneous(np.eye(3) + current - previous)))
    system.z = z
    predictor = homogeneous(current)
    system.set_boundary(predictor, predictor=predictor)
    state = system.model.predictor  # with a dislocation: atoms also on its Volterra field
    ghost = ghost_forces(system, state, cutoff=setup.cutoff)
    e_predictor = system.model.energy_parts(state).total
    label = f"load step {k}/{setup.steps}"
    reporter.info(
        f"{label}: F = I + {setup.load_factor(k):g} (F - I); ghost forces without correction "
        f"at the predictor: atoms {ghost[0]:.3e}, FE {ghost[1]:.3e} eV/Å"
    )

    def progress(it: int, energy: float, fa: float, ff: float) -> None:
        reporter.log(
            f"{label}: Newton {it:3d}  E = {energy:.10f} eV  max|f| atoms {fa:.3e} FE {ff:.3e} eV/Å"
        )
        reporter.progress(f"{label} Newton", it, energy, max(fa, ff))

    result = system.solve(fmax=fmax, max_iterations=max_it, progress=progress, **solver_options)
    newton, krylov = result.newton_iterations, result.krylov_iterations
    changes: list[float] = []
    passes = 1  # solves up to the one whose solution is kept
    status = "one pass"
    model = system.model
    first = None
    if setup.correction_passes > 1 and result.converged:
        first = (system.z.copy(), model.correction.copy(), model.predictor.copy(), result)
        status = "passes exhausted"
    for p in range(2, setup.correction_passes + 1):
        if not result.converged:
            status = "solve failed"
            break
        changes.append(system.update_correction())
        reporter.info(
            f"{label}: correction pass {p}/{setup.correction_passes}: recomputed at the "
            f"solution, changed by {changes[-1]:.3e} eV/Å"
        )
        tol = setup.correction_tolerance
        if len(changes) > 1 and changes[-1] >= max(changes[-2], tol):
            # not a contraction (a soft glide mode that the recomputed correction drives):
            # keep the first pass, whose correction pushes no defect
            system.z, model.correction, model.predictor, result = first
            passes = 1
            status = "not contracting: first pass kept"
            reporter.info(
                f"{label}: warning: the correction grew from {changes[-2]:.3e} to "
                f"{changes[-1]:.3e} eV/Å between passes; kept the first pass's solution"
            )
            break
        result = system.solve(fmax=fmax, max_iterations=max_it, progress=progress, **solver_options)
        passes += 1
        newton += result.newton_iterations
        krylov += result.krylov_iterations
        if changes[-1] < tol:
            status = "converged"
            break
    record = StepRecord(
        step=k,
        load_factor=setup.load_factor(k),
        converged=bool(result.converged),
        reason=str(result.reason),
        newton_iterations=int(newton),
        krylov_iterations=int(krylov),
        preconditioner_builds=int(getattr(result, "preconditioner_builds", 0)),
        linear_solver=str(getattr(result, "linear_solver", "")),
        energy=float(result.energy),
        predictor_energy=float(e_predictor),
        max_atom_force=float(result.max_atom_force),
        max_fe_residual=float(result.max_fe_residual),
        ghost_force_atoms=float(ghost[0]),
        ghost_force_fe=float(ghost[1]),
        wall_time_s=time.perf_counter() - start,
        correction_changes=tuple(changes),
        correction_passes=passes,
        correction_status=status,
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


def run_coupled(
    setup: CoupledSetup,
    *,
    comm: Any,
    reporter: Reporter,
    fmax: float,
    max_iterations: int,
    linear_solver: str = "auto",
    tangent_tolerance: float = 1e-2,
) -> CoupledRun:
    """Solve a coupled case in load steps (collective over ``comm``).

    Args:
        setup: the resolved case.
        comm: MPI communicator.
        reporter: messages and progress (silent on ranks other than 0).
        fmax: tolerance in eV/Å on the atom forces and the FE residual.
        max_iterations: Newton iterations per load step.
        linear_solver: ``"auto"``, ``"gamg"`` or ``"mumps"`` (:func:`coupling.solver.solve`).
        tangent_tolerance: lag of the Cauchy–Born tangent in ``F`` (0: exact every step).

    Returns:
        The run; ``run.system.z`` holds the solution and ``system.problem.u`` its FE field.
    """
    start = time.perf_counter()
    system = build_system(setup, comm=comm)
    run = CoupledRun(setup=setup, system=system, build_time_s=time.perf_counter() - start)
    n_pad = len(system.positions) - system.n_free
    reporter.info(
        f"coupled system: {system.n_free} free + {n_pad} pad atoms, "
        f"{system.problem.n_dofs} FE dofs on {comm.size} rank(s), kappa {setup.kappa:.4g} eV/Å² "
        f"(built in {run.build_time_s:.1f} s)"
    )
    for k in range(1, setup.steps + 1):
        record = _solve_step(
            setup,
            system,
            k,
            reporter,
            fmax,
            max_iterations,
            {"linear_solver": linear_solver, "tangent_tolerance": tangent_tolerance},
        )
        run.steps.append(record)
        if not record.converged:
            break
    parts = system.model.energy_parts(system.z)  # also leaves problem.u at the solution
    run.energy_parts = {
        "atoms": parts.atoms,
        "continuum": parts.continuum,
        "penalty": parts.penalty,
        "correction": parts.correction,
    }
    run.wall_time_s = time.perf_counter() - start
    return run
