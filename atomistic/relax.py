"""Relaxation of atomic positions at fixed cell: FIRE and L-BFGS.

Both work on whole arrays (no loop over atoms) and stop when the largest force norm on a
free atom is below ``fmax`` (eV/Å). Fixed atoms (``fixed[i] = True``) never move.

:func:`minimize_and_finish` hands the work to a calculator's own minimiser (LAMMPS
``minimize``) with the same criterion and held atoms, and finishes with :func:`relax` should
that stop short.

``lbfgs`` is scipy's L-BFGS-B until its line search, which compares energies, gives up on
changes below the round-off of the total energy; then an L-BFGS on forces alone carries on,
so that tolerances far below that round-off are reached (a test asserts 1e-10 eV/Å).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.optimize
from ase import Atoms
from ase.calculators.calculator import BaseCalculator

__all__ = ["RelaxResult", "relax", "METHODS", "minimize_and_finish"]

METHODS = ("lbfgs", "fire")

#: ``progress(step, energy_eV, fmax_eV_per_A)``, called after each force evaluation.
Progress = Callable[[int, float, float], None]


@dataclass(frozen=True, kw_only=True)
class RelaxResult:
    """Outcome of :func:`relax`.

    Attributes:
        atoms: relaxed copy of the input (with the same calculator attached).
        energy: final energy in eV.
        max_force: largest force norm on a free atom, eV/Å.
        steps: number of force evaluations.
        converged: whether ``max_force <= fmax``.
    """

    atoms: Atoms
    energy: float
    max_force: float
    steps: int
    converged: bool


class _Objective:
    """Energy and forces of the free coordinates, counting evaluations."""

    def __init__(self, atoms: Atoms, free: np.ndarray, progress: Progress | None) -> None:
        self.atoms = atoms
        self.free = free
        self.progress = progress
        self.calls = 0
        self.energy = np.inf
        self.forces = np.zeros_like(atoms.positions)

    def set(self, x: np.ndarray) -> None:
        pos = self.atoms.positions.copy()
        pos[self.free] = x.reshape(-1, 3)
        self.atoms.positions = pos
        self.energy = self.atoms.get_potential_energy()
        self.forces = self.atoms.get_forces()
        self.calls += 1
        if self.progress is not None:
            self.progress(self.calls, self.energy, self.fmax())

    def fmax(self) -> float:
        f = self.forces[self.free]
        return float(np.sqrt((f * f).sum(axis=1).max(initial=0.0)))


def relax(
    atoms: Atoms,
    *,
    fmax: float,
    method: str = "lbfgs",
    max_steps: int = 10000,
    fixed: np.ndarray | None = None,
    progress: Progress | None = None,
) -> RelaxResult:
    """Relax positions at fixed cell with the calculator attached to ``atoms``.

    Args:
        atoms: ASE ``Atoms`` with a calculator; not modified (a copy is relaxed).
        fmax: force tolerance in eV/Å on the largest per-atom force norm.
        method: ``"lbfgs"`` (scipy's L-BFGS-B, no bounds) or ``"fire"``.
        max_steps: budget of force evaluations.
        fixed: ``(n,)`` bool mask of atoms held in place.
        progress: called as ``progress(step, energy_eV, fmax_eV_per_A)`` after each evaluation.

    Raises:
        ValueError: unknown ``method`` or a bad ``fixed`` mask.
    """
    if method not in METHODS:
        raise ValueError(f"relax method {method!r} unknown; allowed: {', '.join(METHODS)}")
    work = atoms.copy()
    work.calc = atoms.calc
    n = len(work)
    fixed = np.zeros(n, dtype=bool) if fixed is None else np.asarray(fixed, dtype=bool)
    if fixed.shape != (n,):
        raise ValueError(f"fixed mask has shape {fixed.shape}, expected ({n},)")
    obj = _Objective(work, ~fixed, progress)
    x0 = work.positions[~fixed].ravel().copy()
    if method == "fire":
        _fire(obj, x0, fmax=fmax, max_steps=max_steps)
    else:
        _lbfgs(obj, x0, fmax=fmax, max_steps=max_steps)
    fm = obj.fmax()
    return RelaxResult(
        atoms=work, energy=float(obj.energy), max_force=fm, steps=obj.calls, converged=fm <= fmax
    )


class _Stop(Exception):
    """Converged, or the force-evaluation budget is spent."""


def _lbfgs(obj: _Objective, x0: np.ndarray, *, fmax: float, max_steps: int) -> None:
    """SciPy's L-BFGS-B, then :func:`_lbfgs_forces` from where its line search gives up.

    scipy's line search needs energy differences. Near a tight tolerance on a large system
    they sink below the round-off of the total energy (1e5 atoms at 1e-6 eV/Å: changes of
    1e-9 eV on 4e5 eV), the search fails and a restart takes a wild first step; the
    force-only iteration carries on from the last accepted point instead.
    """

    def fun(x: np.ndarray) -> tuple[float, np.ndarray]:
        obj.set(x)
        if obj.fmax() <= fmax or obj.calls >= max_steps:
            raise _Stop
        return obj.energy, -obj.forces[obj.free].ravel()

    try:
        res = scipy.optimize.minimize(
            fun,
            x0,
            jac=True,
            method="L-BFGS-B",
            options={
                "maxfun": max_steps,
                "maxiter": max_steps,
                "ftol": 0.0,
                "gtol": 0.0,
                "maxcor": 20,
            },
        )
    except _Stop:
        return
    _lbfgs_forces(obj, np.asarray(res.x, dtype=float), fmax=fmax, max_steps=max_steps)


def _lbfgs_forces(
    obj: _Objective,
    x0: np.ndarray,
    *,
    fmax: float,
    max_steps: int,
    memory: int = 20,
    max_move: float = 0.1,
    curvature: float = 70.0,
) -> None:
    """L-BFGS on forces alone: no energies, no line search.

    The step is the two-loop product of the last ``memory`` pairs (``s`` = step, ``y`` =
    change of the gradient ``−f``) with the force, scaled so that no atom moves more than
    ``max_move`` Å. A pair of non-positive curvature (``s·y ≤ 0``) or a step that is not
    along the force empties the memory; with no pairs the inverse Hessian is
    ``1/curvature`` (eV/Å²), afterwards ``s·y / y·y`` of the newest pair.
    """
    x = np.asarray(x0, dtype=float).copy()
    obj.set(x)
    g = -obj.forces[obj.free].ravel()
    pairs: list[tuple[np.ndarray, np.ndarray, float]] = []
    gamma = 1.0 / curvature
    while obj.fmax() > fmax and obj.calls < max_steps:
        q = g.copy()
        alphas = []
        for s_k, y_k, rho in reversed(pairs):
            a = rho * float(s_k @ q)
            alphas.append(a)
            q -= a * y_k
        r = gamma * q
        for (s_k, y_k, rho), a in zip(pairs, reversed(alphas), strict=True):
            r += (a - rho * float(y_k @ r)) * s_k
        d = -r
        if float(d @ g) >= 0.0:  # not a descent direction: start the memory afresh
            pairs.clear()
            gamma = 1.0 / curvature
            d = -gamma * g
        move = float(np.sqrt((d.reshape(-1, 3) ** 2).sum(axis=1).max(initial=0.0)))
        if move > max_move:
            d *= max_move / move
        x_new = x + d
        obj.set(x_new)
        g_new = -obj.forces[obj.free].ravel()
        s_k, y_k = x_new - x, g_new - g
        sy = float(s_k @ y_k)
        if sy > 0.0:
            pairs.append((s_k, y_k, 1.0 / sy))
            if len(pairs) > memory:
                pairs.pop(0)
            gamma = sy / float(y_k @ y_k)
        else:
            pairs.clear()
            gamma = 1.0 / curvature
        x, g = x_new, g_new


def _fire(
    obj: _Objective,
    x0: np.ndarray,
    *,
    fmax: float,
    max_steps: int,
    dt: float = 0.1,
    dt_max: float = 1.0,
    max_move: float = 0.2,
) -> None:
    """FIRE (Bitzek et al., PRL 97, 170201, 2006) with unit masses; dt in Å·(amu/eV)^½ units."""
    n_min, f_inc, f_dec, a_start, f_a = 5, 1.1, 0.5, 0.1, 0.99
    x = x0.copy()
    v = np.zeros_like(x)
    a = a_start
    since_negative = 0
    obj.set(x)
    while obj.fmax() > fmax and obj.calls < max_steps:
        f = obj.forces[obj.free].ravel()
        power = float(f @ v)
        if power > 0.0:
            fn = np.linalg.norm(f)
            v = (1.0 - a) * v + a * np.linalg.norm(v) * f / max(fn, 1e-300)
            since_negative += 1
            if since_negative > n_min:
                dt = min(dt * f_inc, dt_max)
                a *= f_a
        else:
            v[:] = 0.0
            a = a_start
            dt *= f_dec
            since_negative = 0
        v = v + dt * f
        step = dt * v
        longest = np.sqrt((step.reshape(-1, 3) ** 2).sum(axis=1).max(initial=0.0))
        if longest > max_move:
            step *= max_move / longest
        x = x + step
        obj.set(x)


def relax_fixed_cell(
    atoms: Atoms,
    calculator: BaseCalculator,
    *,
    fmax: float,
    max_steps: int = 10000,
    method: str = "lbfgs",
    progress: Progress | None = None,
) -> tuple[Atoms, float, float, int]:
    """Relax positions at fixed cell with any ASE calculator.

    A calculator with its own ``minimize`` (:class:`~atomistic.mlip.oracles.LammpsCalculator`:
    LAMMPS ``minimize``, cg) uses it first; :func:`relax` with ``method`` finishes the job if
    that stopped above ``fmax``, and does all of it for any other calculator.

    Args:
        atoms: the atoms to relax.
        calculator: an ASE calculator; it is attached to the atoms relaxed.
        fmax: force tolerance in eV/Å.
        max_steps: budget of force evaluations of :func:`relax`.
        method: ``"lbfgs"`` or ``"fire"``, for :func:`relax`.
        progress: as for :func:`relax`.

    Returns:
        ``(atoms, energy, max_force, steps)``: the relaxed atoms, their energy (eV), largest
        force (eV/Å) and the force evaluations (LAMMPS: its iterations plus any after).
    """
    steps, worst, energy = 0, np.inf, np.nan
    minimize = getattr(calculator, "minimize", None)
    if minimize is not None:
        atoms = minimize(atoms, etol=0.0, ftol=0.1 * fmax)
        steps = int(atoms.info["lammps_minimize"]["iterations"])
        energy = float(atoms.calc.results["energy"])
        worst = float(atoms.info["lammps_minimize"]["fmax"])
    if worst > fmax:
        atoms = atoms.copy()
        atoms.calc = calculator
        result = relax(atoms, fmax=fmax, method=method, max_steps=max_steps, progress=progress)
        atoms = result.atoms
        energy, worst, steps = result.energy, result.max_force, steps + result.steps
    return atoms, float(energy), float(worst), int(steps)


def minimize_and_finish(
    atoms: Atoms,
    minimizer: Any,
    *,
    fmax: float,
    fixed: np.ndarray,
    max_steps: int,
    finish: BaseCalculator,
    method: str = "lbfgs",
    styles: tuple[str, ...] = ("cg", "fire"),
    progress: Progress | None = None,
) -> tuple[RelaxResult, dict[str, Any]]:
    """Relax with a calculator's own minimiser, held atoms held, to a per-atom ``fmax``.

    ``minimizer`` is an ASE calculator with ``minimize`` (a
    :class:`~atomistic.mlip.oracles.LammpsCalculator`): LAMMPS ``minimize`` (``etol`` 0) with
    ``min_modify norm max``, whose ``ftol`` bounds the largest per-atom force norm, the
    criterion of :func:`relax`; ``ftol = fmax``. The ``styles`` run in turn, each from where
    the last stopped, until one gets below ``fmax``: cg's line search compares energies and
    gives up where their changes sink into the round-off of the total (on 1e5 atoms a few
    1e-6 eV/Å short of 1e-6), FIRE needs forces alone. Should the last stop above ``fmax``
    too, :func:`relax` with ``finish`` and ``method`` carries on. The energy and forces
    reported are always ``minimizer``'s, at the final positions, so that energies from one
    engine are never mixed with another's.

    Args:
        atoms: the start (not changed).
        minimizer: calculator with ``minimize(atoms, *, etol, ftol, maxiter, maxeval,
            min_style, norm, fixed)``.
        fmax: tolerance on the largest force norm of a free atom, eV/Å.
        fixed: ``(n,)`` bool mask of held atoms.
        max_steps: budget of each style's iterations and of its force evaluations, and of
            the finish's force evaluations.
        finish: calculator of the same potential for :func:`relax`.
        method: :func:`relax`'s method.
        styles: LAMMPS ``min_style`` values, in the order tried.
        progress: passed to :func:`relax`.

    Returns:
        ``(result, record)``: ``result.steps`` is the minimiser's force evaluations plus the
        finish's; ``record`` holds ``minimizer_styles`` (those run), ``minimizer_stops`` (why
        each stopped, LAMMPS's words), ``minimizer_iterations`` and
        ``minimizer_force_evaluations`` (their totals), ``minimizer_max_force_eV_per_A``
        (where the last stopped) and ``finish_force_evaluations`` (0: no finish).
    """
    fixed = np.asarray(fixed, dtype=bool)
    work, record = _minimize_styles(atoms, minimizer, styles, fmax, fixed, max_steps)
    finish_steps = 0
    if record["minimizer_max_force_eV_per_A"] > fmax:
        work.calc = finish
        done = relax(
            work, fmax=fmax, method=method, max_steps=max_steps, fixed=fixed, progress=progress
        )
        finish_steps = done.steps
        work = done.atoms.copy()
        work.calc = minimizer
    energy = float(work.get_potential_energy())
    forces = work.get_forces()[~fixed]
    worst = float(np.sqrt((forces * forces).sum(axis=1).max(initial=0.0)))
    result = RelaxResult(
        atoms=work,
        energy=energy,
        max_force=worst,
        steps=record["minimizer_force_evaluations"] + finish_steps,
        converged=worst <= fmax,
    )
    return result, {**record, "finish_force_evaluations": finish_steps}


def _minimize_styles(
    atoms: Atoms,
    minimizer: Any,
    styles: tuple[str, ...],
    fmax: float,
    fixed: np.ndarray,
    max_steps: int,
) -> tuple[Atoms, dict[str, Any]]:
    """The ``styles`` of :func:`minimize_and_finish` in turn; the atoms and their record."""
    work, iterations, evaluations, stopped = atoms, 0, 0, np.inf
    used: list[str] = []
    stops: list[str | None] = []
    for style in styles:
        work = minimizer.minimize(
            work,
            etol=0.0,
            ftol=fmax,
            maxiter=max_steps,
            maxeval=max_steps,
            min_style=style,
            norm="max",
            fixed=fixed,
        )
        info = work.info.pop("lammps_minimize")
        iterations, stopped = iterations + int(info["iterations"]), float(info["fmax"])
        # where the log does not say, one evaluation per iteration (a lower bound)
        evaluations += int(info.get("force_evaluations") or info["iterations"])
        used.append(style)
        stops.append(info.get("stop"))
        if stopped <= fmax:
            break
    return work, {
        "minimizer_styles": used,
        "minimizer_stops": stops,
        "minimizer_iterations": iterations,
        "minimizer_force_evaluations": evaluations,
        "minimizer_max_force_eV_per_A": stopped,
    }
