"""The fully atomistic reference of a coupled case (``multiscale reference``).

The same problem with atoms everywhere: every lattice site of the outer domain (box, ball;
in 2.5d a rectangle or disk extruded into a slab periodic along ``z`` with the lattice
period), the defect applied, is a free atom. A shell of sites outside the domain, of
thickness ``2 r_cut`` (plus 1 %), is held at the boundary displacement ``(F − I) X`` (plus,
for a dislocation, its anisotropic Volterra field, on which the free atoms also start; for a
crack, its K field under the step's ``K_I``, likewise), so that
every free atom has a full neighbourhood and the boundary condition is the coupled one.
Two cutoffs, not one: the force on a free atom involves the site energies of its neighbours
within ``r_cut`` (EAM: their embedding densities), which must see full neighbourhoods too;
with a shell ``r_cut`` thick the homogeneous state of a perfect Cu crystal leaves spurious
forces of 1.8e-3 eV/Å on the free atoms next to the shell (and a strain error of about 1 %
in ``cases/void-cu-3d``), with ``2 r_cut`` they are round-off (5e-14 eV/Å).
Sites within 1e-6 Å of the boundary are held too, like the FE boundary nodes.

Load steps are those of the coupled run: step ``k`` starts from the previous relaxed state
plus the homogeneous increment and is relaxed at fixed held atoms to ``reference.fmax``
(default: ``solver.fmax``) on the largest per-atom force norm of a free atom. A looser
tolerance is a knob for big references, at a price: the reference's relaxation energy is then
off by about as much as the coupled error being measured (``cases/void-cu-3d/README.md``).

Two engines (``reference.engine``) relax the same sites from the same start with the same
held atoms and criterion: ``"torch"``, the project's potential with :func:`atomistic.relax.relax`
(``reference.method``); ``"lammps"``, LAMMPS ``minimize`` (cg, then FIRE where cg stops
short) on the same potential file with the held atoms under ``fix setforce 0 0 0``, finished
by the torch engine's relaxation should LAMMPS stop above the tolerance
(:func:`atomistic.relax.minimize_and_finish`). Each engine computes every energy and force it
reports (LAMMPS: the relaxed state and the boundary field both), so the relaxation energy is
never a difference across engines.

``relaxation_energy = E(relaxed) − E(boundary field everywhere)`` at the last step (the
homogeneous state ``(F − I) X``, plus the Volterra field for a dislocation or the K field
for a crack), with
the energy of all atoms, held ones included (their site energies respond to the free atoms
within ``r_cut``).
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from multiscale.kinds.coupled.setup import CoupledSetup
from multiscale.progress import Reporter

if TYPE_CHECKING:
    from atomistic.relax import RelaxResult

__all__ = ["ReferenceResult", "SHELL_FACTOR", "run_reference"]

#: Held shell thickness in units of ``r_cut`` (2: see the module docstring).
SHELL_FACTOR = 2.02


@dataclass(frozen=True, kw_only=True)
class ReferenceResult:
    """Outcome of :func:`run_reference`.

    Attributes:
        atoms: relaxed atoms (deformed positions), with per-atom arrays
            ``reference_position`` ``(n, 3)``, ``displacement`` ``(n, 3)`` and ``fixed``.
        free: ``(n,)`` True for free atoms.
        energy: energy of all atoms at the solution, eV.
        unrelaxed_energy: energy at the homogeneous state of the last step, eV.
        max_force: largest force on a free atom, eV/Å.
        converged: every step reached ``fmax``.
        steps: per step ``{"step", "steps" (force evaluations), "energy_eV", ...}``.
        wall_time_s: seconds for the workflow.
        engine: ``"torch"`` or ``"lammps"``: what relaxed the atoms and computed every
            energy and force reported.
        method: the minimiser: ``reference.method`` (torch) or ``"cg/fire"`` (LAMMPS).
    """

    atoms: Any
    free: np.ndarray
    energy: float
    unrelaxed_energy: float
    max_force: float
    converged: bool
    steps: list[dict[str, Any]]
    wall_time_s: float
    engine: str
    method: str

    @property
    def relaxation_energy(self) -> float:
        """``E(relaxed) − E(boundary field everywhere)``, eV."""
        return self.energy - self.unrelaxed_energy


def _step_start(
    setup: CoupledSetup, k: int, X: np.ndarray, u: np.ndarray, free: np.ndarray
) -> np.ndarray:
    """Displacements that load step ``k`` starts from.

    The previous ones plus the homogeneous increment (at step 1 on the Volterra field of a
    dislocation), plus for a crack the increment of its K field from ``K_{k-1}`` to ``K_k``
    (at step 1 on the field of ``K_0``, so the atoms start on that of ``K_1``, which opens
    the faces); the held atoms on the boundary field.
    """
    before, now = setup.background(k - 1), setup.background(k)
    if k == 1 and before is not None:
        u = before.displacement(X)
    loading = setup.loading
    start = u + X @ (loading.deformation(k) - loading.deformation(k - 1)).T
    if setup.crack is not None:
        assert before is not None and now is not None
        start = start + now.displacement(X) - before.displacement(X)
    start[~free] = setup.boundary_displacement(k)(X[~free])
    return start


def _torch_calculator(setup: CoupledSetup) -> Any:
    """An ASE calculator of the project's potential on its device."""
    from atomistic.calculator import Calculator

    return Calculator(setup.potential.module, device=setup.potential.device)


class _TorchEngine:
    """The project's potential and :func:`atomistic.relax.relax` (``reference.method``)."""

    name = "torch"

    def __init__(self, setup: CoupledSetup) -> None:
        self.options = setup.reference
        self.calc = _torch_calculator(setup)
        self.method = self.label = self.options.method

    def energy(self, atoms: Any) -> float:
        """Energy of ``atoms`` (positions only; any calculator replaced), eV."""
        atoms = atoms.copy()
        atoms.calc = self.calc
        return float(atoms.get_potential_energy())

    def relax(
        self, atoms: Any, free: np.ndarray, progress: Any
    ) -> tuple[RelaxResult, dict[str, Any]]:
        """Relax ``atoms`` (the start), the atoms outside ``free`` held; no extra record."""
        from atomistic.relax import relax

        options = self.options
        atoms.calc = self.calc
        result = relax(
            atoms,
            fmax=options.fmax,
            method=options.method,
            max_steps=options.max_steps,
            fixed=~free,
            progress=progress,
        )
        return result, {}


class _LammpsEngine:
    """LAMMPS ``minimize`` on the potential's file, finished by the torch engine if need be.

    Every energy and force it reports is LAMMPS's (:func:`atomistic.relax.minimize_and_finish`).
    Energies are the exact sum (``math.fsum``) of LAMMPS's per-atom energies: its global
    ``pe`` is one running double sum, whose round-off grows with the system (1.7e-5 eV off
    the per-atom sum on the 124 654 atoms of ``cases/void-cu-3d``, 6e-6 of its relaxation
    energy), while the per-atom energies equal the torch site energies to 7e-15 eV.
    """

    name = "lammps"

    def __init__(self, setup: CoupledSetup) -> None:
        from atomistic.mlip.oracles import lammps_equivalent

        self.setup = setup
        self.options = setup.reference
        self.calc = lammps_equivalent(setup.potential.module, setup.potential.file)
        self.method = "cg/fire"
        self.label = f"lammps {self.calc.pair_style} cg/fire"

    def energy(self, atoms: Any) -> float:
        """Energy of ``atoms`` (positions only; any calculator replaced), eV."""
        atoms = atoms.copy()
        atoms.calc = self.calc
        return _site_sum(atoms)

    def relax(
        self, atoms: Any, free: np.ndarray, progress: Any
    ) -> tuple[RelaxResult, dict[str, Any]]:
        """Relax ``atoms`` (the start), the atoms outside ``free`` held; LAMMPS's record."""
        from atomistic.relax import minimize_and_finish

        options = self.options
        result, record = minimize_and_finish(
            atoms,
            self.calc,
            fmax=options.fmax,
            fixed=~free,
            max_steps=options.max_steps,
            finish=_torch_calculator(self.setup),
            method=options.method,
            progress=progress,
        )
        return dataclasses.replace(result, energy=_site_sum(result.atoms)), record


def _site_sum(atoms: Any) -> float:
    """The exact sum of the per-atom energies of ``atoms``' calculator, eV."""
    return math.fsum(atoms.get_potential_energies())


def _engine(setup: CoupledSetup) -> _TorchEngine | _LammpsEngine:
    """The engine of ``reference.engine``."""
    return _LammpsEngine(setup) if setup.reference.engine == "lammps" else _TorchEngine(setup)


def _relax_step(
    setup: CoupledSetup,
    k: int,
    atoms: Any,
    start: np.ndarray,
    free: np.ndarray,
    engine: _TorchEngine | _LammpsEngine,
    reporter: Reporter,
) -> tuple[RelaxResult, dict[str, Any], float]:
    """Relax load step ``k`` from ``start``.

    Returns:
        The relaxation's result, its record and the energy of the boundary field everywhere.
    """
    t0 = time.perf_counter()
    X = atoms.positions
    homogeneous = atoms.copy()
    homogeneous.positions = X + setup.boundary_displacement(k)(X)
    unrelaxed = engine.energy(homogeneous)
    work = atoms.copy()
    work.positions = X + start
    label = f"reference load step {k}/{setup.loading.steps} ({engine.label})"
    result, extra = engine.relax(work, free, lambda n, e, f: reporter.progress(label, n, e, f))
    record = {
        "step": k,
        "load_factor": setup.loading.factor(k),
        "status": "converged" if result.converged else "not_converged",
        "force_evaluations": result.steps,
        "energy_eV": result.energy,
        "relaxation_energy_eV": result.energy - unrelaxed,
        "max_force_eV_per_A": result.max_force,
        **extra,
        "wall_time_s": time.perf_counter() - t0,
    }
    reporter.info(
        f"{label}: {'converged' if result.converged else 'NOT converged'} after "
        f"{_effort(result.steps, extra, setup.reference.method)}, "
        f"E = {result.energy:.8f} eV, relaxation {result.energy - unrelaxed:+.6e} eV, "
        f"max|F| = {result.max_force:.2e} eV/Å"
    )
    return result, record, unrelaxed


def _effort(steps: int, extra: dict[str, Any], method: str) -> str:
    """What a step's relaxation took, for the log."""
    if not extra:
        return f"{steps} force evaluations"
    stops = " / ".join(map(str, extra["minimizer_stops"]))
    text = (
        f"{extra['minimizer_force_evaluations']} LAMMPS force evaluations "
        f"({'+'.join(extra['minimizer_styles'])}, {extra['minimizer_iterations']} iterations; "
        f"stopped on {stops})"
    )
    finish = extra["finish_force_evaluations"]
    return text + (f" + {finish} {method} force evaluations (finish)" if finish else "")


def _unwrapped(setup: CoupledSetup, u: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Displacements ``u`` with the slab's periodic wrap undone, relative to ``start``.

    An engine may wrap positions back into the periodic cell along ``z`` (LAMMPS does: a
    site at ``z = 0`` that moves by ``−1e-17`` Å comes back at ``z ≈ period``); the
    relaxation moves the atoms far less than half a period from where the step started.
    """
    period = setup.lattice.period
    if period is None:
        return u
    u = np.array(u, dtype=float)
    change = u[:, 2] - start[:, 2]
    u[:, 2] -= period * np.round(change / period)
    return u


def run_reference(setup: CoupledSetup, *, reporter: Reporter) -> ReferenceResult:
    """Relax the fully atomistic version of a coupled case in load steps.

    The relaxation's options are ``setup.reference`` (tolerance, method, budget).

    Args:
        setup: the resolved case.
        reporter: messages and progress.
    """
    from multiscale.kinds.coupled.sites import reference_sites

    start = time.perf_counter()
    shell = SHELL_FACTOR * setup.potential.range
    atoms, free = reference_sites(setup, shell=shell)
    X = atoms.positions.copy()
    engine = _engine(setup)
    where = "LAMMPS" if engine.name == "lammps" else f"device {setup.potential.device}"
    reporter.info(
        f"reference: {int(free.sum())} free + {int((~free).sum())} held atoms "
        f"(shell {shell:.3f} Å), engine {engine.name} ({engine.label}), {where}"
    )
    u = np.zeros_like(X)
    records: list[dict[str, Any]] = []
    result, unrelaxed = None, np.nan
    for k in range(1, setup.loading.steps + 1):
        step_start = _step_start(setup, k, X, u, free)
        result, record, unrelaxed = _relax_step(setup, k, atoms, step_start, free, engine, reporter)
        records.append(record)
        u = _unwrapped(setup, result.atoms.positions - X, step_start)
        if not result.converged:
            break
    assert result is not None
    out = result.atoms
    out.set_array("reference_position", X)
    out.set_array("displacement", u)
    out.set_array("fixed", (~free).astype(int))
    converged = all(r["status"] == "converged" for r in records)
    return ReferenceResult(
        atoms=out,
        free=free,
        energy=float(result.energy),
        unrelaxed_energy=unrelaxed,
        max_force=float(result.max_force),
        converged=converged and len(records) == setup.loading.steps,
        steps=records,
        wall_time_s=time.perf_counter() - start,
        engine=engine.name,
        method=engine.method,
    )
