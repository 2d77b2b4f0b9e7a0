"""Time to solution: the coupled solve against LAMMPS relaxing the whole domain.

What a user would run instead of the coupled solver is LAMMPS on every atom of the domain.
For each case, one core each (``OMP_NUM_THREADS=1``), each solve in its own process so that
its wall time and peak memory are the whole process's:

1. ``multiscale reference CASE --engine lammps`` on the benchmark domain: the same sites,
   held shell, defect and start as the coupled problem, relaxed by LAMMPS ``minimize``
   (``min_style cg``, ``min_modify norm max``, ``etol`` 0) to the case's force tolerance on
   the largest per-atom force, then ``min_style fire`` from where cg stopped (cg's line search
   compares total energies, and on 2.5·10⁵ atoms their round-off stops it near 1e-5 eV/Å;
   ``min_modify line forcezero`` stops at the same point, and FIRE from the start takes about
   as many force evaluations as the two together: cases/void-cu-3d/README.md);
2. ``multiscale run CASE`` with a coupled configuration that reaches ≤ 1 % strain error on
   that domain (:data:`CONFIGS`), timed in an output folder of its own, then once more into
   the reference's folder, untimed, for its ``reference_error.strain_error_rel`` against
   step 1 (the comparison is validation, not solving: at 10⁶ reference sites it takes longer
   than the solve, and most of the memory);
3. the ratios: LAMMPS time / coupled time, process against process (``speedup``: both pay
   the Python start-up), the same in CPU time (``speedup_cpu``: user + system time of each
   one-thread process, which the other jobs of a shared machine inflate much less than its
   wall time), and solve against solve (``speedup_solve``: LAMMPS's own ``minimize`` time
   against the coupled run's build and solves, its ``summary.json`` ``wall_time_s``); coupled
   / LAMMPS
   peak memory (``memory_ratio``). The reference process's peak memory includes the Python and
   torch runtime it shares with the coupled one, so ``memory_ratio`` flatters the coupled
   solve where LAMMPS's own share is small.

The same is repeated on domains ``--scales`` times larger in each direction (default 1 and
2), with the same core and mesh keys, so the table shows how the gap opens with the domain.

Prints JSON (also written to ``--out``)::

    {"cases": [{"case", "config", "rows": [{"scale", "domain", "lammps": {...},
      "coupled": {...}, "speedup", "speedup_cpu", "speedup_solve", "memory_ratio",
      "error_at_most_1_percent"}]}]}

``lammps``: ``wall_time_s`` (process), ``cpu_time_s`` (process, user + system),
``minimize_time_s`` (its load steps), ``force_evaluations`` and ``minimizer_stops`` (why each
``min_style`` stopped, LAMMPS's words), ``peak_memory_GB`` (max RSS), ``n_atoms``, ``status``.
``coupled``: ``wall_time_s``, ``cpu_time_s``,
``solve_time_s`` (build and solves), ``peak_memory_GB``, ``status``, ``strain_error_rel``,
``n_free_atoms``, ``n_fe_dofs``, ``newton_iterations``, ``krylov_iterations``.

Run (about 20 minutes on 2 CPU cores; the 2× void domain holds 1.5 million atoms)::

    python bench/time_to_solution.py
    python bench/time_to_solution.py cases/void-cu-3d --scales 1

The goal (coupled ≥ 10× faster than LAMMPS at ≤ 1 % strain error) is checked here, by
measurement, never by a test.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import convergence as conv  # noqa: E402

CASES = [ROOT / "cases" / "void-cu-3d", ROOT / "cases" / "edge-dislocation-cu"]

#: Per case: the benchmark domain (linear size, Å, as :func:`convergence.domain_overrides`)
#: and the coupled configuration's keys. The void's are the benchmark row of
#: ``cases/void-cu-3d/README.md``; the dislocation's the core and mesh that
#: ``bench/adaptive_vs_uniform.py`` measured under 1 % (R = 36 Å; ``mesh_from``: the mesh
#: keys scaled from those of R = 14 Å as :func:`convergence.mesh_overrides` does, on the
#: scale-1 domain, and kept for the larger ones).
CONFIGS: dict[str, dict[str, Any]] = {
    "void-cu-3d": {
        "size": 120.0,
        "keys": conv.DEFAULTS["void-cu-3d"]["overrides"],
    },
    "edge-dislocation-cu": {
        "size": 120.0,
        "keys": ["solver.fmax=1e-5", "geometry.core_radius=36"],
        "mesh_from": 14.0,
    },
}
TARGET = 0.01


def log(message: str) -> None:
    print(f"[time_to_solution] {message}", file=sys.stderr, flush=True)


def timed(command: list[str], log_path: Path) -> tuple[int, float, float, float]:
    """Run ``command`` (one thread).

    Returns its exit code, wall time (s), peak RSS (GB) and CPU time (s, user + system): on a
    machine that other jobs share, the wall time of a one-thread process grows with their load
    and the CPU time much less, so the two are reported side by side.
    """
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    start = time.perf_counter()
    with open(log_path, "w") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    cpu = usage.ru_utime + usage.ru_stime
    return proc.returncode, time.perf_counter() - start, usage.ru_maxrss / 1024**2, cpu


def _sets(keys: list[str]) -> list[str]:
    return [arg for key in keys for arg in ("--set", key)]


def one_row(folder: Path, keys: list[str], domain: list[str], work: Path) -> dict[str, Any]:
    """LAMMPS reference and coupled run of one domain; their times, memory and error."""
    work.mkdir(parents=True, exist_ok=True)
    base = [sys.executable, "-m", "multiscale"]
    common = [str(folder), "--output", str(work), *_sets([*keys, *domain])]
    rc, t_ref, m_ref, c_ref = timed(
        [*base, "reference", *common, "--engine", "lammps"], work / "reference.out"
    )
    if rc != 0:
        raise SystemExit(f"time_to_solution: reference failed (exit {rc}); see {work}")
    ref = json.loads((work / "reference" / "summary.json").read_text())
    # timed where no reference is: the comparison with one (site gradients of every
    # reference site) is validation, not solving, and at 10^6 sites it dominates both
    solo = work / "coupled"
    alone = [str(folder), "--output", str(solo), *_sets([*keys, *domain])]
    rc, t_run, m_run, c_run = timed([*base, "run", *alone], work / "coupled.out")
    if rc != 0:
        raise SystemExit(f"time_to_solution: coupled run failed (exit {rc}); see {solo}")
    run = json.loads((solo / "summary.json").read_text())
    rc, _, _, _ = timed([*base, "run", *common], work / "run.out")
    if rc != 0:
        raise SystemExit(f"time_to_solution: coupled run failed (exit {rc}); see {work}")
    err = json.loads((work / "summary.json").read_text()).get("reference_error", {})
    if "strain_error_rel" not in err:
        raise SystemExit(f"time_to_solution: no strain error ({err.get('skipped')}); see {work}")
    strain_error = float(err["strain_error_rel"])
    minimize = sum(float(k["wall_time_s"]) for k in ref["load_steps"])
    return {
        "domain": domain,
        "lammps": {
            "wall_time_s": t_ref,
            "cpu_time_s": c_ref,
            "minimize_time_s": minimize,
            "force_evaluations": sum(int(k["force_evaluations"]) for k in ref["load_steps"]),
            "minimizer_stops": [
                stop for k in ref["load_steps"] for stop in k.get("minimizer_stops", [])
            ],
            "peak_memory_GB": m_ref,
            "n_atoms": int(ref["n_atoms"]),
            "engine": ref.get("engine"),
            "status": ref["status"],
        },
        "coupled": {
            "wall_time_s": t_run,
            "cpu_time_s": c_run,
            "solve_time_s": float(run["wall_time_s"]),
            "peak_memory_GB": m_run,
            "strain_error_rel": strain_error,
            "n_free_atoms": run.get("n_free_atoms"),
            "n_fe_dofs": run.get("n_fe_dofs"),
            "newton_iterations": run.get("newton_iterations"),
            "krylov_iterations": run.get("krylov_iterations"),
            "status": run["status"],
        },
        "speedup": t_ref / t_run,
        "speedup_cpu": c_ref / c_run,
        "speedup_solve": minimize / float(run["wall_time_s"]),
        "memory_ratio": m_run / m_ref,
        "error_at_most_1_percent": strain_error <= TARGET,
    }


def one_case(folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    from mpi4py import MPI

    from multiscale.config import load_case
    from multiscale.kinds.coupled.setup import resolve_setup

    name = folder.resolve().name
    config: dict[str, Any] = CONFIGS.get(name, {"size": None, "keys": []})
    keys = [*config["keys"], *args.overrides]
    base = load_case(folder, overrides=keys)
    size = args.size or config["size"] or conv.case_size(base)
    spacings = None
    if base.config.geometry.outer in ("box", "rectangle"):
        spacings = conv.plane_spacings(resolve_setup(base, comm=MPI.COMM_WORLD))
    if config.get("mesh_from") is not None:
        core = float(base.config.geometry.core_radius)
        domain = conv.domain_overrides(base, size, spacings)
        mesh = conv.mesh_overrides(
            argparse.Namespace(case=folder, mesh_scaling="proportional"),
            [float(config["mesh_from"]), core],
            [*keys, *domain],
        )
        keys = [*keys, *mesh(core)]
    rows = []
    for scale in args.scales:
        domain = conv.domain_overrides(base, size * scale, spacings)
        log(f"{name}: domain {' '.join(domain)} (scale {scale:g})")
        row = {"scale": scale, **one_row(folder, keys, domain, args.work / name / f"x{scale:g}")}
        lmp, cpl = row["lammps"], row["coupled"]
        log(
            f"{name} x{scale:g}: LAMMPS {lmp['n_atoms']} atoms {lmp['wall_time_s']:.1f} s "
            f"{lmp['peak_memory_GB']:.2f} GB; coupled {cpl['wall_time_s']:.1f} s "
            f"{cpl['peak_memory_GB']:.2f} GB, strain error {cpl['strain_error_rel']:.3e}; "
            f"speedup {row['speedup']:.2f}x process to process, "
            f"{row['speedup_cpu']:.2f}x in CPU time, "
            f"{row['speedup_solve']:.2f}x solve to solve; "
            f"CPU time LAMMPS {lmp['cpu_time_s']:.1f} s ({lmp['force_evaluations']} force "
            f"evaluations), coupled {cpl['cpu_time_s']:.1f} s"
        )
        rows.append(row)
    return {"case": str(folder), "config": keys, "rows": rows}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("cases", nargs="*", type=Path, default=CASES)
    p.add_argument("--scales", type=float, nargs="+", default=[1.0, 2.0])
    p.add_argument("--size", type=float, default=None, help="benchmark domain size (Å)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--work", type=Path, default=Path("output") / "time_to_solution")
    p.add_argument("--out", type=Path, default=None)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = {
        "target_strain_error": TARGET,
        "threads": 1,
        "cases": [one_case(folder, args) for folder in args.cases],
    }
    text = json.dumps(result, indent=2)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_suffix(args.out.suffix + ".tmp")
        tmp.write_text(text + "\n")
        tmp.replace(args.out)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
