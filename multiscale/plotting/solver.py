"""Figures of the solves: every Newton iteration (``solver.png``) and every load step.

``solver.png`` puts the iterations of all solves of a run side by side, in the order they
ran (load steps, correction passes, adaptive re-solves; for a vacancy case the force
evaluations of its relaxation): on top the energy above the solve's final energy, below the
largest force against ``fmax``. ``load_steps.png`` shows what each load step ended with.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["load_steps_figure", "solver_figure"]

#: Force columns of ``iterations.csv`` and their legend labels.
_FORCES = {
    "max_atom_force_eV_per_A": "atoms: max |f|",
    "max_fe_residual_eV_per_A": "FE nodes: max |residual|",
}


def _positive(values: np.ndarray) -> np.ndarray:
    """``values`` with the non-positive ones as NaN (for log axes)."""
    return np.where(values > 0, values, np.nan)


def _solve_bounds(rows: list[dict[str, Any]]) -> list[tuple[int, int, str]]:
    """``(first, end, label)`` of each solve: row indices of its iterations."""
    bounds: list[tuple[int, int, str]] = []
    for i, row in enumerate(rows):
        if not bounds or row["solve"] != rows[bounds[-1][0]]["solve"]:
            bounds.append((i, i + 1, str(row["label"])))
        else:
            bounds[-1] = (bounds[-1][0], i + 1, bounds[-1][2])
    return bounds


def _solve_names(bounds: list[tuple[int, int, str]]) -> list[str]:
    """Labels of the solves; repeats of one label (correction passes) get a pass number."""
    labels = [label.removesuffix(" Newton") for _, _, label in bounds]
    names = []
    for k, label in enumerate(labels):
        passes = labels[: k + 1][::-1]
        count = next((i for i, other in enumerate(passes) if other != label), len(passes))
        repeated = count > 1 or (k + 1 < len(labels) and labels[k + 1] == label)
        names.append(f"{label}, pass {count}" if repeated else label)
    return names


def _energy_panel(ax: Any, rows: list[dict[str, Any]], bounds: list[tuple[int, int, str]]) -> None:
    energy = np.array([r["energy_eV"] for r in rows], dtype=float)
    drop = np.full(len(rows), np.nan)
    for first, end, _ in bounds:
        drop[first:end] = energy[first:end] - energy[end - 1]
    if np.any(drop > 0):
        ax.semilogy(np.arange(len(rows)), _positive(drop), "o-", ms=3, color="C0")
    else:
        ax.text(0.5, 0.5, "every solve started at its minimum", ha="center", transform=ax.transAxes)
    ax.set_ylabel("E − E(end of solve) (eV)")
    ax.grid(True, which="both", alpha=0.3)


def _force_panel(ax: Any, rows: list[dict[str, Any]], fmax: float | None) -> None:
    x = np.arange(len(rows))
    columns = [c for c in _FORCES if any(r.get(c) is not None for r in rows)]
    if not columns:
        force = np.array([r["max_force_eV_per_A"] for r in rows], dtype=float)
        ax.semilogy(x, _positive(force), "o-", ms=3, label="max |F|")
    for k, column in enumerate(columns):
        force = np.array([np.nan if r[column] is None else r[column] for r in rows], dtype=float)
        ax.semilogy(x, _positive(force), "os"[k] + "-", ms=3, label=_FORCES[column])
    if fmax is not None:
        ax.axhline(fmax, color="k", ls="--", lw=1, label=f"fmax = {fmax:g} eV/Å")
    ax.set_ylabel("max force (eV/Å)")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)


def solver_figure(
    plt: Any, rows: list[dict[str, Any]], *, fmax: float | None, xlabel: str, title: str
) -> Any:
    """Energy and max force at every iteration of every solve (``iterations.csv`` rows).

    Args:
        plt: ``matplotlib.pyplot``.
        rows: from :func:`multiscale.plotting.files.read_iterations`, in order.
        fmax: the force tolerance in eV/Å (a dashed line), or None.
        xlabel: what one step is (``"Newton iteration"``, ``"force evaluation"``).
        title: the figure's title.
    """
    bounds = _solve_bounds(rows)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7.5, 6.0), sharex=True, layout="constrained")
    _energy_panel(top, rows, bounds)
    _force_panel(bottom, rows, fmax)
    for first, _, _ in bounds[1:]:
        for ax in (top, bottom):
            ax.axvline(first - 0.5, color="grey", lw=0.8, ls=":")
    numbered = len(rows) <= 40
    if numbered:  # each step numbered within its solve
        bottom.set_xticks(range(len(rows)), [str(r["iteration"]) for r in rows], fontsize=8)
    if len(bounds) > 1:  # name each solve above its iterations
        labels = top.secondary_xaxis("top")
        labels.set_xticks([(a + b - 1) / 2 for a, b, _ in bounds], _solve_names(bounds))
        turn = 0 if len(bounds) <= 4 else 40
        labels.tick_params(labelsize=8, length=0, labelrotation=turn)
        where = "within each solve" if numbered else "counted over all solves"
        bottom.set_xlabel(f"{xlabel} {where} (solves in the order they ran)")
    else:
        bottom.set_xlabel(f"{xlabel}: {bounds[0][2]}")
    fig.suptitle(title, fontsize=10)
    return fig


def _values(ax: Any, x: np.ndarray, y: list[float], fmt: str) -> None:
    """Write each value next to its point when there are only a few."""
    if len(x) <= 4:
        for xi, yi in zip(x, y, strict=True):
            ax.annotate(fmt.format(yi), (xi, yi), xytext=(6, 4), textcoords="offset points")


def load_steps_figure(plt: Any, steps: list[dict[str, Any]], *, fmax: float, note: str) -> Any:
    """Energy, relaxation energy, max forces and iterations of each load step.

    Args:
        plt: ``matplotlib.pyplot``.
        steps: ``summary["load_steps"]`` of a coupled run.
        fmax: ``solver.fmax`` in eV/Å.
        note: a line under the title (e.g. that the last step was re-solved adaptively).
    """
    lam = np.array([s["load_factor"] for s in steps], dtype=float)
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(2, 2, figsize=(8.5, 6.0), sharex=True, layout="constrained")
    (energy, relax), (force, iters) = axes
    energy.plot(lam, [s["energy_eV"] for s in steps], "o-")
    _values(energy, lam, [s["energy_eV"] for s in steps], "{:.6f} eV")
    energy.set_title("blended energy at the solution", fontsize=9)
    energy.set_ylabel("E (eV)")
    relax.plot(lam, [s["relaxation_energy_eV"] for s in steps], "o-", color="C2")
    _values(relax, lam, [s["relaxation_energy_eV"] for s in steps], "{:+.5g} eV")
    relax.set_title("relaxation from the homogeneous predictor", fontsize=9)
    relax.set_ylabel("E − E(predictor) (eV)")
    for key, marker in (("max_atom_force_eV_per_A", "o"), ("max_fe_residual_eV_per_A", "s")):
        values = np.array([s[key] for s in steps], dtype=float)
        force.semilogy(lam, _positive(values), marker + "-", label=_FORCES[key])
    force.axhline(fmax, color="k", ls="--", lw=1, label=f"fmax = {fmax:g} eV/Å")
    force.set_title("largest force at the solution", fontsize=9)
    force.set_ylabel("max force (eV/Å)")
    force.legend(fontsize=8)
    width = 0.6 * (lam[0] if len(lam) == 1 else np.min(np.diff(lam)))
    newton = [s["newton_iterations"] for s in steps]
    bars = iters.bar(lam, newton, width=width, color="C1")
    iters.bar_label(bars, [f"CG: {s['krylov_iterations']}" for s in steps], fontsize=7)
    iters.set_title("Newton iterations (CG iterations on top)", fontsize=9)
    iters.set_ylabel("Newton iterations")
    iters.set_ylim(0, max(max(newton), 1) * 1.25)
    iters.yaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in axes.flat:
        ax.grid(True, which="both", alpha=0.3)
    for ax in axes[1]:
        ax.set_xlabel("load factor k / steps")
        if len(lam) <= 10:
            ax.set_xticks(lam, [f"{x:.3g}" for x in lam])
    title = "load steps: F_k = I + (k / steps)(F − I)"
    fig.suptitle(f"{title}\n{note}" if note else title, fontsize=10)
    return fig
