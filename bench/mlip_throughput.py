"""Energy+forces throughput of the network potential and committee against LAMMPS EAM.

    python bench/mlip_throughput.py [--sizes 1000 10000 100000] [--seconds 3] [--members 4]
                                    [--potential FILE.pt] [--descriptors acsf moments]
                                    [--rows ROW ...] [--torch-descriptor] [--json out.json]

For each size: a rattled fcc Cu supercell; LAMMPS ``eam/alloy`` with Cu_mishin1 on one core is
the named peer, measured in the same run on the same structure. Each model row is measured
for both descriptors, ``acsf`` (``ACSFSpec()``: r_cut 5 Å, angular 4 Å, 8 G2 + 12 G4) and
``moments`` (``MomentSpec()``: r_cut 5 Å, angular 4 Å, 8 G2 + 24 invariants, L = 3); the
code is prefixed with the descriptor (``shipped`` for a committee loaded with
``--potential``, e.g. ``cases/potentials/cu-committee.pt``). Rows (all energy + forces,
neighbour list built once with a 0.5 Å skin and reused):

- ``mlip-member``: one network (one forward, one backward pass);
- ``committee-mean``: the committee as a potential (mean energies; one backward pass);
- ``committee-members``: every member's forces (what the uncertainty needs), ``M`` backward
  passes (``loop``) or one vmapped pass (``batched``); with the compiled moment descriptor
  both are one written-out pass through the networks and one pass over the pairs;
- ``committee-hvp``: Hessian-vector products of the committee's energy as the coupled solver
  asks for them (:class:`coupling.blended_atoms.BlendedAtoms`, every ``β = 1``, the operator
  built once at one state), atom-products/s.

On CPU ``float64`` the moment descriptor runs compiled (:mod:`atomistic.mlip.moment_kernels`).
``--torch-descriptor`` adds each moment row again with ``MomentDescriptor.compiled = False``
(code suffix ``:torch``): the plain torch path, as before the kernels, in the same run.

CPU rows use one torch thread; CUDA rows (float64 and float32) appear when a GPU is present.
``ratio_vs_lammps`` > 1 means faster than LAMMPS. Training rows give seconds per epoch of
EMT-labelled 32-atom cells for one network and for the committee, per descriptor (moments:
with the cached descriptor Jacobians of ``TrainingConfig.cache_descriptors``; the epoch
time excludes that one-off set-up). The models have random weights (throughput does not
depend on them).

``--descriptors`` picks the random-weight committees that are timed (``--descriptors`` with no
name: only the ``--potential`` one) and ``--rows`` the model rows: ACSF's triplets make
10⁵-atom rows take minutes and over 10 GB, so a 10⁵-atom run usually names
``--descriptors moments`` or none.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # LAMMPS single core

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from throughput import bench_lammps, structure, time_steps  # noqa: E402

from atomistic import (  # noqa: E402
    ACSFSpec,
    Committee,
    MomentSpec,
    NeighbourList,
    TrainingConfig,
    build_graph,
    crystal,
    evaluate,
    train,
)
from atomistic.mlip.committee import member_forces  # noqa: E402
from multiscale.allocator import tune_allocator  # noqa: E402
from multiscale.outputs import print_json  # noqa: E402

#: the ``multiscale`` command's opt-in allocator setting (``MULTISCALE_MALLOC=reuse``,
#: :mod:`multiscale.allocator`), applied to every row, LAMMPS's included, where it is asked for
ALLOCATOR_TUNED = tune_allocator()


def bench_hvp(atoms, model, device: str, dtype, seconds: float) -> float:
    from coupling.blended_atoms import BlendedAtoms

    n = len(atoms)
    rng = np.random.default_rng(0)
    u, v = rng.normal(scale=0.01, size=(n, 3)), rng.normal(size=(n, 3))
    blended = BlendedAtoms(
        potential=model,
        reference_positions=atoms.positions,
        symbols=atoms.get_chemical_symbols(),
        beta=np.ones(n),
        cell=atoms.cell.array,
        pbc=(True, True, True),
        device=device,
        dtype=dtype,
    )
    blended.hessian_vector(u, v)  # builds the operator at u
    steps, dt = time_steps(lambda: blended.hessian_vector(u, v), seconds)
    return n * steps / dt


def bench_model(atoms, model, mode: str, device: str, dtype, seconds: float) -> float:
    model = model.to(device=device, dtype=dtype)
    if mode == "hvp":
        return bench_hvp(atoms, model, device, dtype, seconds)
    pos = torch.tensor(atoms.positions, device=device, dtype=dtype)
    cell = torch.tensor(atoms.cell.array, device=device, dtype=dtype)
    species = torch.zeros(len(atoms), dtype=torch.int64, device=device)
    nl = NeighbourList(cutoff=model.cutoff, skin=0.5)

    def step():
        graph = build_graph(positions=pos, cell=cell, species=species, neighbours=nl)
        if mode == "members-loop":
            f = member_forces(model, graph)[1]
        elif mode == "members-batched":
            f = member_forces(model, graph, batched=True)[1]
        else:
            f = evaluate(model, graph)["forces"]
        f.sum().item()  # synchronise

    n, dt = time_steps(step, seconds)
    return len(atoms) * n / dt


def training_frames(n: int, seed: int = 0):
    from ase.calculators.emt import EMT

    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(n):
        atoms = crystal("fcc", element="Cu", a=3.6 * (1 + rng.uniform(-0.02, 0.02)), size=(2, 2, 2))
        atoms.positions += rng.normal(scale=0.08, size=atoms.positions.shape)
        atoms.calc = EMT()
        atoms.info["energy"] = atoms.get_potential_energy()
        atoms.arrays["forces"] = atoms.get_forces()
        atoms.calc = None
        frames.append(atoms)
    return frames


DESCRIPTORS = {"acsf": ACSFSpec(), "moments": MomentSpec()}
ROWS = [
    "mlip-member",
    "committee-mean",
    "committee-members-loop",
    "committee-members-batched",
    "committee-hvp",
]


def bench_training(
    members: int, batched: bool, device: str, descriptor: str, epochs: int = 3
) -> dict:
    frames = training_frames(40)
    spec = DESCRIPTORS[descriptor]
    if members > 1:
        model = Committee(elements=("Cu",), n_members=members, descriptor=spec)
    else:
        from atomistic import MLIP

        model = MLIP(elements=("Cu",), descriptor=spec)
    config = TrainingConfig(
        epochs=epochs, batch_size=8, device=device, batched_forces=batched, split=(0.8, 0.1, 0.1)
    )
    result = train(model, frames, config=config)
    return {
        "code": f"{descriptor}:training",
        "members": members,
        "forces": "batched" if batched else "loop",
        "device": device,
        "frames_per_epoch": result.metrics["n_frames"]["train"],
        "atoms_per_frame": 32,
        "time_per_epoch_s": result.metrics["time_per_epoch_s"],
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    ap.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    ap.add_argument("--members", type=int, default=4, help="committee size")
    ap.add_argument("--potential", help="also time this saved committee (.pt)")
    ap.add_argument("--no-training", action="store_true", help="skip the training rows")
    ap.add_argument(
        "--descriptors",
        nargs="*",
        choices=sorted(DESCRIPTORS),
        default=sorted(DESCRIPTORS),
        help="random-weight committees to time (none: only --potential)",
    )
    ap.add_argument("--rows", nargs="+", choices=ROWS, default=ROWS, help="model rows to time")
    ap.add_argument(
        "--torch-descriptor",
        action="store_true",
        help="also time the moment rows on the plain torch path (code suffix :torch)",
    )
    ap.add_argument("--json", help="also write the result to this file")
    args = ap.parse_args(argv)
    if not args.descriptors and not args.potential:
        ap.error("nothing to time: give --potential or at least one --descriptors name")
    torch.set_num_threads(1)
    committees = {
        name: Committee(elements=("Cu",), n_members=args.members, descriptor=DESCRIPTORS[name])
        for name in args.descriptors
    }
    if args.potential:
        from atomistic import load_potential

        committees["shipped"] = load_potential(args.potential)
    devices = [("cpu", torch.float64)]
    if torch.cuda.is_available():
        devices += [("cuda", torch.float64), ("cuda", torch.float32)]
    rows = []
    for n in args.sizes:
        atoms = structure(n)
        ref = bench_lammps(atoms, args.seconds)
        rows.append(
            {
                "n_atoms": len(atoms),
                "code": "lammps-eam",
                "device": "cpu",
                "dtype": "float64",
                "atom_steps_per_s": ref,
                "ratio_vs_lammps": 1.0,
            }
        )
        for device, dtype in devices:
            cases = [
                (f"{name}:{code}", model, mode)
                for name, committee in committees.items()
                for code, model, mode in (
                    ("mlip-member", committee.member(0), "mean"),
                    ("committee-mean", committee, "mean"),
                    ("committee-members-loop", committee, "members-loop"),
                    ("committee-members-batched", committee, "members-batched"),
                    ("committee-hvp", committee, "hvp"),
                )
                if code in args.rows
            ]
            if args.torch_descriptor:
                cases = [
                    (f"{code}{suffix}", model, mode, compiled)
                    for code, model, mode in cases
                    for suffix, compiled in ((":torch", False), ("", True))
                    if compiled or hasattr(model.descriptor, "compiled")
                ]
            else:
                cases = [(code, model, mode, True) for code, model, mode in cases]
            for code, model, mode, compiled in cases:
                if hasattr(model.descriptor, "compiled"):
                    model.descriptor.compiled = compiled
                rate = bench_model(atoms, model, mode, device, dtype, args.seconds)
                rows.append(
                    {
                        "n_atoms": len(atoms),
                        "code": code,
                        "device": device,
                        "dtype": str(dtype).removeprefix("torch."),
                        "atom_steps_per_s": rate,
                        "ratio_vs_lammps": rate / ref,
                    }
                )
                r = rows[-1]
                print(
                    f"{r['n_atoms']:>8d}  {code:<34s} {device:<4s} {r['dtype']:<7s} "
                    f"{rate:12.4g} atom-steps/s  ratio {rate / ref:.4f}",
                    file=sys.stderr,
                    flush=True,
                )
    training = []
    if not args.no_training:
        train_devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
        for device in train_devices:
            for name in args.descriptors:
                training.append(bench_training(1, False, device, name))
                training.append(bench_training(args.members, False, device, name))
                training.append(bench_training(args.members, True, device, name))
    meta = {
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "torch_threads": 1,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": sys.version.split()[0],
        "allocator_tuned": ALLOCATOR_TUNED,
        "members": args.members,
        "descriptors": {name: c.spec.to_dict() for name, c in committees.items()},
        "hidden": {name: list(c.hidden) for name, c in committees.items()},
    }
    result = {
        "benchmark": "mlip_cu_energy_forces",
        "meta": meta,
        "rows": rows,
        "training": training,
    }
    print_json(result, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
