"""The committee's calibrated force spread against its true force error, by environment.

    python cases/adaptive-retrain/potential/measure_uncertainty.py [COMMITTEE] [--json OUT]

(``COMMITTEE`` defaults to ``cu-bulk-committee.pt`` next to this script.)

For bulk, a vacancy and a 10 Å void in Cu (a = 3.615 Å, 2 % tension along x as in
``cases/void-cu-3d``), each atom's calibrated committee spread ``u_i``
(``atomistic.mlip.active.atom_uncertainty``, eV/Å) next to its force-error norm
``|F̄_i − F_i^EAM|`` (eV/Å) against Cu_mishin1 through LAMMPS, grouped by distance from the
defect. The defects are measured as cut (the homogeneously strained crystal, where a run
starts) and relaxed by the EAM at fixed cell (LAMMPS ``minimize``). Per group: atoms, RMS
and max of ``u``, RMS and max of the error norm, and the fraction of atoms with ``u`` above
0.05 and 0.15 eV/Å.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import dolfinx_solver  # noqa: F401  (before lammps: the MPI runtime)
import numpy as np
from ase import Atoms

from atomistic import Calculator, crystal, load_potential
from atomistic.mlip.active import atom_uncertainty
from atomistic.mlip.oracles import make_oracle

HERE = Path(__file__).resolve().parent
A = 3.615  # Å, the dataset's lattice constant (Cu_mishin1: 3.6149)
STRAIN = np.diag([1.02, 1.0, 1.0])  # F: 2 % tension along x


def strained(atoms: Atoms) -> Atoms:
    """``atoms`` under :data:`STRAIN` (cell and positions)."""
    out = atoms.copy()
    out.set_cell(atoms.cell.array @ STRAIN.T, scale_atoms=True)
    return out


def groups(stats: dict, name: str, atoms: Atoms, shells: dict, committee, oracle) -> None:
    """Add the figures of each group of atoms (``shells``: name → mask) to ``stats``."""
    x = atoms.copy()
    x.calc = Calculator(committee, "cpu")
    f_model = x.get_forces()
    x.calc = oracle
    f_eam = x.get_forces()
    u = atom_uncertainty(
        committee,
        positions=atoms.positions,
        symbols=atoms.get_chemical_symbols(),
        cell=atoms.cell.array,
        pbc=atoms.pbc,
    )
    err = np.linalg.norm(f_model - f_eam, axis=1)
    for shell, where in shells.items():
        if not where.any():
            continue
        stats[f"{name}: {shell}"] = {
            "atoms": int(where.sum()),
            "u_rms": float(np.sqrt(np.mean(u[where] ** 2))),
            "u_max": float(u[where].max()),
            "error_rms": float(np.sqrt(np.mean(err[where] ** 2))),
            "error_max": float(err[where].max()),
            "eam_force_rms": float(np.sqrt(np.mean(np.sum(f_eam[where] ** 2, axis=1)))),
            "above_0.05": float(np.mean(u[where] > 0.05)),
            "above_0.15": float(np.mean(u[where] > 0.15)),
        }


def distance_shells(d: np.ndarray, edges: list[float], labels: list[str]) -> dict:
    """Masks of ``d`` between consecutive ``edges`` (Å), under ``labels``."""
    bounds = [-np.inf, *edges, np.inf]
    return {
        lab: (d >= lo) & (d < hi)
        for lab, lo, hi in zip(labels, bounds[:-1], bounds[1:], strict=True)
    }


def measure(committee, oracle) -> dict:
    """The figures of every configuration and group (see the module docstring)."""
    stats: dict = {}
    rng = np.random.default_rng(0)
    bulk = strained(crystal("fcc", element="Cu", a=A, size=4))
    groups(stats, "bulk, perfect", bulk, {"all": np.ones(len(bulk), bool)}, committee, oracle)
    for rattle in (0.01, 0.03):
        b = bulk.copy()
        b.positions += rng.normal(scale=rattle, size=b.positions.shape)
        groups(
            stats, f"bulk, rattled {rattle} Å", b, {"all": np.ones(len(b), bool)}, committee, oracle
        )
    # vacancy: 5x5x5 cells less the atom nearest the centre
    host = strained(crystal("fcc", element="Cu", a=A, size=5))
    centre = 0.5 * host.cell.array.sum(0)
    site = int(np.argmin(np.linalg.norm(host.positions - centre, axis=1)))
    hole = host.positions[site]
    vac = host[np.arange(len(host)) != site]
    nn = A / np.sqrt(2)
    for state, atoms in (("cut", vac), ("relaxed", oracle.minimize(vac, ftol=1e-8))):
        d = np.linalg.norm(atoms.positions - hole, axis=1)
        shells = distance_shells(
            d, [0.5 * (nn + A), 4.5], ["1st shell", "2nd-3rd shell", "beyond 4.5 Å"]
        )
        groups(stats, f"vacancy, {state}", atoms, shells, committee, oracle)
    # void: 10x10x10 cells less the atoms within 10 Å of the centre (bench/periodic_void.py)
    big = crystal("fcc", element="Cu", a=A, size=10)
    centre = 0.5 * big.cell.array.sum(0)
    void = strained(big[np.linalg.norm(big.positions - centre, axis=1) > 10.0])
    centre = STRAIN @ centre
    for state, atoms in (("cut", void), ("relaxed", oracle.minimize(void, ftol=1e-6))):
        d = np.linalg.norm(atoms.positions - centre, axis=1)
        labels = ["surface (< 12.5 Å)", "12.5-16 Å", "beyond 16 Å"]
        groups(
            stats,
            f"void 10 Å, {state}",
            atoms,
            distance_shells(d, [12.5, 16.0], labels),
            committee,
            oracle,
        )
    return stats


def main(argv: list[str] | None = None) -> int:
    """Measure, print the table, write the JSON if asked."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("potential", nargs="?", default=str(HERE / "cu-bulk-committee.pt"))
    p.add_argument("--json", help="write the figures here too")
    args = p.parse_args(argv)
    start = time.perf_counter()
    committee = load_potential(args.potential)
    oracle = make_oracle({"kind": "lammps", "file": "Cu_mishin1.eam.alloy"})
    stats = measure(committee, oracle)
    print(
        f"{'group':44s} {'atoms':>6s} {'u rms':>7s} {'u max':>7s} {'err rms':>8s} "
        f"{'err max':>8s} {'|F_EAM|':>8s} {'u>0.05':>7s} {'u>0.15':>7s}   (eV/Å)"
    )
    for name, s in stats.items():
        print(
            f"{name:44s} {s['atoms']:6d} {s['u_rms']:7.3f} {s['u_max']:7.3f} "
            f"{s['error_rms']:8.3f} {s['error_max']:8.3f} {s['eam_force_rms']:8.3f} "
            f"{s['above_0.05']:7.0%} {s['above_0.15']:7.0%}"
        )
    print(f"({time.perf_counter() - start:.0f} s)", file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps(stats, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
