"""Relaxation of a void in a periodic crystal: a potential against its oracle, fully atomistic.

    python bench/periodic_void.py POTENTIAL --oracle lammps:Cu_mishin1.eam.alloy
                                 [--size 10] [--radius 10] [--strain 0.02 0 0 0 0 0]
                                 [--fmax 1e-3] [--json out.json]

The check behind ``cases/void-cu-3d`` run with a network potential: it separates what the
potential does from what the coupling does. A cubic fcc crystal of ``size``³ conventional
cells at each calculator's own lattice constant
(:func:`atomistic.equilibrium.equilibrium_lattice_constant`)
loses every atom within ``radius`` of the cell centre, takes the homogeneous strain ``F = I +
ε`` (``--strain`` gives ε in Voigt order xx yy zz yz xz xy, tensor shears), and is relaxed at
fixed cell with ASE's L-BFGS to ``fmax``. Printed as JSON:

- ``relaxation_energy_eV``: E(relaxed) − E(strained, unrelaxed), for the potential and the
  oracle, each along its own path, and their difference;
- ``oracle_path``: both calculators' energy change along the *oracle's* relaxation path, and
  the difference split over shells of distance from the centre by the trapezoidal rule,
  ``ΔE_i ≈ −½ (δF_i(start) + δF_i(end)) · Δx_i`` with ``δF`` the potential's force minus the
  oracle's (``start_eV`` and ``end_eV`` are the two halves' sums, undivided);
- ``force_error_surface_meV_per_A``: RMS per component of ``δF`` within ``radius + 3`` Å at the
  start and at the end of that path;
- for a committee, ``spread_meV_per_A``: RMS of the calibrated per-atom spread on the relaxed
  void surface (within ``radius + 2.5`` Å) and beyond ``radius + 6`` Å.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import dolfinx_solver  # noqa: E402, F401  (before lammps)
import numpy as np  # noqa: E402
from ase.optimize import LBFGS  # noqa: E402
from mlip_accuracy import oracle  # noqa: E402

from atomistic import Calculator, crystal, load_potential  # noqa: E402
from atomistic.equilibrium import equilibrium_lattice_constant  # noqa: E402
from multiscale.outputs import print_json  # noqa: E402

SHELLS = (0.0, 2.0, 4.0, 6.0, 10.0, np.inf)  # Å beyond the void radius


def void_crystal(a: float, size: int, radius: float, eps: np.ndarray, element: str):
    atoms = crystal("fcc", element=element, a=a, size=size)
    centre = 0.5 * atoms.cell.array.sum(axis=0)
    atoms = atoms[np.linalg.norm(atoms.positions - centre, axis=1) > radius]
    f = np.eye(3) + eps
    atoms.set_cell(atoms.cell.array @ f.T, scale_atoms=True)
    return atoms


def relax(atoms, calc, fmax: float):
    out = atoms.copy()
    out.calc = calc
    e0 = out.get_potential_energy()
    LBFGS(out, logfile=None).run(fmax=fmax, steps=5000)
    return out, out.get_potential_energy() - e0


def energy_forces(atoms, calc):
    x = atoms.copy()
    x.calc = calc
    return x.get_potential_energy(), x.get_forces()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("potential", help="potential file (.pt, .eam.alloy, .eam.fs)")
    p.add_argument("--oracle", required=True, help="'emt' or 'lammps:FILE'")
    p.add_argument("--pair-style", default="eam/alloy", help="LAMMPS pair_style (lammps only)")
    p.add_argument("--element", default="Cu")
    p.add_argument("--size", type=int, default=10, help="conventional cells per edge (10)")
    p.add_argument("--radius", type=float, default=10.0, help="void radius, Å (10)")
    p.add_argument(
        "--strain", type=float, nargs=6, default=[0.02, 0, 0, 0, 0, 0], help="ε, Voigt order"
    )
    p.add_argument("--fmax", type=float, default=1e-3, help="relaxation tolerance, eV/Å")
    p.add_argument("--json", help="also write the result to this file")
    args = p.parse_args(argv)
    start = time.perf_counter()
    xx, yy, zz, yz, xz, xy = args.strain
    eps = np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])
    calcs = {
        "potential": Calculator(load_potential(args.potential), device="cpu"),
        "oracle": oracle(args.oracle, args.pair_style),
    }
    out: dict = {
        "benchmark": "periodic_void_relaxation",
        "potential": args.potential,
        "oracle": args.oracle,
        "size": args.size,
        "radius_A": args.radius,
        "strain_voigt": list(args.strain),
        "fmax_eV_per_A": args.fmax,
        "lattice_constant_A": {},
        "relaxation_energy_eV": {},
    }
    relaxed = {}
    for name, calc in calcs.items():
        a0 = equilibrium_lattice_constant(calc, structure="fcc", element=args.element, a_guess=3.6)
        atoms = void_crystal(a0, args.size, args.radius, eps, args.element)
        relaxed[name], out["relaxation_energy_eV"][name] = relax(atoms, calc, args.fmax)
        out["lattice_constant_A"][name] = a0
        out["n_atoms"] = len(atoms)
        print(f"{name}: relaxed in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    rel = out["relaxation_energy_eV"]
    rel["difference"] = rel["potential"] - rel["oracle"]

    # Both calculators along the oracle's path (start: the oracle's unrelaxed cell).
    a0 = out["lattice_constant_A"]["oracle"]
    first = void_crystal(a0, args.size, args.radius, eps, args.element)
    last = relaxed["oracle"]
    (ep0, fp0), (eo0, fo0) = (energy_forces(first, c) for c in calcs.values())
    (ep1, fp1), (eo1, fo1) = (energy_forces(last, c) for c in calcs.values())
    dx = last.positions - first.positions
    dx -= np.round(dx @ np.linalg.inv(last.cell.array)) @ last.cell.array
    centre = 0.5 * first.cell.array.sum(axis=0)
    r = np.linalg.norm(first.positions - centre, axis=1)
    start_i = -((fp0 - fo0) * dx).sum(axis=1)
    end_i = -((fp1 - fo1) * dx).sum(axis=1)
    shells = []
    for lo, hi in zip(SHELLS[:-1], SHELLS[1:], strict=True):
        m = (r >= args.radius + lo) & (r < args.radius + hi)
        shells.append(
            {
                "from_A": args.radius + lo,
                "to_A": args.radius + hi if np.isfinite(hi) else None,
                "n_atoms": int(m.sum()),
                "error_eV": float(0.5 * (start_i[m] + end_i[m]).sum()),
                "start_eV": float(start_i[m].sum()),
                "end_eV": float(end_i[m].sum()),
                "displacement_rms_A": float(np.sqrt((dx[m] ** 2).sum(axis=1).mean())),
            }
        )
    out["oracle_path"] = {
        "potential_eV": ep1 - ep0,
        "oracle_eV": eo1 - eo0,
        "difference_eV": (ep1 - ep0) - (eo1 - eo0),
        "trapezoid_eV": float(0.5 * (start_i + end_i).sum()),
        "shells": shells,
    }
    surface = r < args.radius + 3.0
    out["force_error_surface_meV_per_A"] = {
        "start": float(np.sqrt(((fp0 - fo0)[surface] ** 2).mean()) * 1e3),
        "end": float(np.sqrt(((fp1 - fo1)[surface] ** 2).mean()) * 1e3),
    }
    x = relaxed["potential"]
    x.calc.get_forces()
    spread = x.calc.results.get("forces_uncertainty")
    if spread is not None:
        rx = np.linalg.norm(x.positions - 0.5 * x.cell.array.sum(axis=0), axis=1)
        near, far = rx < args.radius + 2.5, rx > args.radius + 6.0
        out["spread_meV_per_A"] = {
            "surface": float(np.sqrt((spread[near] ** 2).mean()) * 1e3),
            "bulk": float(np.sqrt((spread[far] ** 2).mean()) * 1e3),
        }
    out["wall_time_s"] = time.perf_counter() - start
    print_json(out, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
