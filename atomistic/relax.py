"""Relaxation of atomic positions at fixed cell: FIRE and L-BFGS.

Both work on whole arrays (no loop over atoms) and stop when the largest force norm on a
free atom is below ``fmax`` (eV/Å). Fixed atoms (``fixed[i] = True``) never move.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.optimize

__all__ = ["RelaxResult", "relax", "METHODS"]

METHODS = ("lbfgs", "fire")


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

    atoms: object
    energy: float
    max_force: float
    steps: int
    converged: bool


class _Objective:
    """Energy and forces of the free coordinates, counting evaluations."""

    def __init__(self, atoms, free: np.ndarray, progress) -> None:
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
    atoms,
    *,
    fmax: float,
    method: str = "lbfgs",
    max_steps: int = 10000,
    fixed: np.ndarray | None = None,
    progress: Callable[[int, float, float], None] | None = None,
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
    def fun(x):
        obj.set(x)
        if obj.fmax() <= fmax or obj.calls >= max_steps:
            raise _Stop
        return obj.energy, -obj.forces[obj.free].ravel()

    # Restart when scipy's line search gives up on round-off-level energy changes.
    x = x0
    while obj.calls < max_steps:
        try:
            res = scipy.optimize.minimize(
                fun,
                x,
                jac=True,
                method="L-BFGS-B",
                options={
                    "maxfun": max_steps - obj.calls,
                    "maxiter": max_steps,
                    "ftol": 0.0,
                    "gtol": 0.0,
                    "maxcor": 20,
                },
            )
        except _Stop:
            return
        if np.array_equal(res.x, x):
            break
        x = res.x
    if obj.calls < max_steps:
        obj.set(x)


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
