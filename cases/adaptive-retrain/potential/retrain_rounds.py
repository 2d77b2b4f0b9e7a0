"""Rounds of the retrain action on a 10 Å Cu void, measured after each (README.md table).

    python cases/adaptive-retrain/potential/retrain_rounds.py [--rounds 3] [--clusters 8]

Starts from ``cu-bulk-committee.pt`` and its dataset (``output/cu-bulk.extxyz``, from
``multiscale dataset cu-bulk-dataset.toml``). Each round takes the void of
``measure_uncertainty.py`` (cut on even rounds, EAM-relaxed on odd ones), picks cluster
centres among the atoms whose spread exceeds ``lo``, carves and labels them with
Cu_mishin1 through LAMMPS (appended to ``output/void-labels.extxyz``, rewritten at the
start), fine-tunes the previous round's committee on every cluster labelled so far with a
replay of the bulk frames, and prints ``measure_uncertainty``'s figures for the new
committee. About 4 minutes for three rounds on one core. Nothing is saved but the labels.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import dolfinx_solver  # noqa: E402, F401  (before lammps: the MPI runtime)
import numpy as np  # noqa: E402
from measure_uncertainty import HERE, A, measure, strained  # noqa: E402

from atomistic import crystal, load_potential  # noqa: E402
from atomistic.mlip.active import (  # noqa: E402
    RetrainSettings,
    atom_uncertainty,
    carve_clusters,
    label_frames,
    retrain,
    select_centres,
)
from atomistic.mlip.dataset import read_dataset  # noqa: E402
from atomistic.mlip.oracles import make_oracle, oracle_cutoff  # noqa: E402

SHOWN = (
    "bulk, rattled 0.03 Å: all",
    "vacancy, relaxed: 1st shell",
    "void 10 Å, cut: surface (< 12.5 Å)",
    "void 10 Å, relaxed: surface (< 12.5 Å)",
    "void 10 Å, relaxed: 12.5-16 Å",
    "void 10 Å, relaxed: beyond 16 Å",
)


def void_states(oracle):
    """The cut and the EAM-relaxed 10 Å void under the 2 % tension."""
    big = crystal("fcc", element="Cu", a=A, size=10)
    centre = 0.5 * big.cell.array.sum(0)
    cut = strained(big[np.linalg.norm(big.positions - centre, axis=1) > 10.0])
    return cut, oracle.minimize(cut, ftol=1e-6)


def main(argv: list[str] | None = None) -> int:
    """Run the rounds and print the figures after each."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--clusters", type=int, default=8, help="max_clusters per round")
    p.add_argument("--separation", type=float, default=6.0, help="min_separation, Å")
    args = p.parse_args(argv)
    committee = load_potential(HERE / "cu-bulk-committee.pt")
    oracle = make_oracle({"kind": "lammps", "file": "Cu_mishin1.eam.alloy"})
    old = read_dataset(HERE / "output" / "cu-bulk.extxyz")
    states = void_states(oracle)
    s = RetrainSettings(max_clusters=args.clusters, min_separation=args.separation)
    r_buffer = s.buffer_width(model_cutoff=committee.cutoff, oracle_cutoff=oracle_cutoff(oracle))
    labels = HERE / "output" / "void-labels.extxyz"
    labels.unlink(missing_ok=True)
    for n in range(args.rounds):
        atoms = states[n % 2]
        start = time.perf_counter()
        symbols, cell = atoms.get_chemical_symbols(), atoms.cell.array
        u = atom_uncertainty(
            committee, positions=atoms.positions, symbols=symbols, cell=cell, pbc=True
        )
        centres = select_centres(
            u,
            atoms.positions,
            lo=s.lo,
            min_separation=s.min_separation,
            max_clusters=s.max_clusters,
            cell=cell,
            pbc=True,
        )
        clusters = carve_clusters(
            atoms.positions, symbols, cell, True, centres, r_core=s.r_core, r_buffer=r_buffer
        )
        outcome = label_frames(
            clusters, oracle, oracle_name="lammps:Cu_mishin1.eam.alloy", dataset=labels
        )
        labelled = time.perf_counter()
        new = read_dataset(labels)
        result = retrain(
            committee, new, old_frames=old, config=s.training_config(), replay=s.replay
        )
        committee = result.committee
        print(
            f"round {n + 1}: max u {u.max():.3f} eV/Å, {outcome.oracle_calls} clusters "
            f"({[len(c) for c in clusters]} atoms), {len(new)} new frames; labelling "
            f"{labelled - start:.1f} s, retraining {time.perf_counter() - labelled:.1f} s; "
            f"masked force RMSE {result.before.force_rmse:.3f} -> {result.after.force_rmse:.3f}"
        )
        figures = measure(committee, oracle)
        for name in SHOWN:
            f = figures[name]
            print(
                f"   {name:40s} u RMS {f['u_rms']:.3f} max {f['u_max']:.3f}   "
                f"err RMS {f['error_rms']:.3f} max {f['error_max']:.3f}   "
                f"u > 0.05: {f['above_0.05']:.0%}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
