"""The adaptive loop's figures (``plots/``), made from its history.

=====================  ======================================================================
file                   what it shows
=====================  ======================================================================
``convergence.png``    ``eta_total`` and, with a reference, ``strain_error_rel`` against
                       ``n_dof`` (log–log), with reference slopes ``N^(-1/2)`` and ``N^(-1)``;
                       the last load step's iterations when the loop ran at several
``terms.png``          each term of the estimate over the iterations (log scale)
``actions.png``        which actions each iteration took, and the free atoms and FE dofs
=====================  ======================================================================

When the loop ran at several load steps (``adaptivity.load_steps = "every"``), ``terms.png``
and ``actions.png`` mark where each load step's iterations begin.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.ticker import MaxNLocator

from multiscale.outputs import atomic_file

__all__ = ["write_plots"]

_TERMS = ("eta_fe", "eta_model", "eta_ml", "eta_trunc", "eta_total")
_ACTIONS = ("refine", "expand", "retrain")


def _save(fig: Any, path: Path) -> None:
    """Save as PNG atomically, as every output file is (:func:`multiscale.outputs.atomic_file`)."""
    with atomic_file(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=120, bbox_inches="tight")


def _load_steps(ax: Any, history: list[Any]) -> None:
    """Dotted lines where a new load step's iterations begin, labelled with the step."""
    steps = [getattr(it, "load_step", 0) for it in history]
    if len(set(steps)) < 2:
        return
    for i, (before, now) in enumerate(zip(steps, steps[1:], strict=False), start=1):
        if now != before:
            x = history[i].iteration - 0.5
            ax.axvline(x, color="grey", linestyle=":", linewidth=0.8)
    for i, step in enumerate(steps):
        if i == 0 or steps[i - 1] != step:
            ax.annotate(
                f"load {step:g}",
                xy=(history[i].iteration, 1.0),
                xycoords=("data", "axes fraction"),
                fontsize=7,
                color="grey",
                va="top",
            )


def _convergence(plt: Any, history: list[Any], path: Path) -> None:
    last = getattr(history[-1], "load_step", 0)
    several = len({getattr(it, "load_step", 0) for it in history}) > 1
    history = [it for it in history if getattr(it, "load_step", 0) == last]
    n = np.array([it.n_dof for it in history], dtype=float)
    eta = np.array([it.eta["eta_total"] for it in history])
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    ax.loglog(n, eta, "o-", label="estimate eta_total")
    true = [it.strain_error_rel for it in history]
    if all(t is not None for t in true):
        ax.loglog(n, np.array(true, dtype=float), "s--", label="true strain_error_rel")
    for power, style in ((0.5, ":"), (1.0, "-.")):
        ax.loglog(n, eta[0] * (n / n[0]) ** -power, style, color="grey", label=f"N^-{power:g}")
    if several:
        ax.set_title(f"at the last load step ({last})")
    ax.set_xlabel("n_dof = 3 × free atoms + FE dofs")
    ax.set_ylabel("relative strain error")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    _save(fig, path)
    plt.close(fig)


def _terms(plt: Any, history: list[Any], path: Path) -> None:
    k = [it.iteration for it in history]
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    for name in _TERMS:
        values = np.array([it.eta[name] for it in history])
        if np.any(values > 0):
            ax.semilogy(k, np.where(values > 0, values, np.nan), "o-", label=name)
    _load_steps(ax, history)
    ax.set_xlabel("iteration")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("term of the estimate (relative strain)")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    _save(fig, path)
    plt.close(fig)


def _actions(plt: Any, history: list[Any], path: Path) -> None:
    k = np.array([it.iteration for it in history])
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(5.5, 4.8), sharex=True)
    for row, name in enumerate(_ACTIONS):
        taken = [it.iteration for it in history if name in it.action.split("+")]
        top.plot(taken, [row] * len(taken), "s", markersize=12, label=name)
    top.set_yticks(range(len(_ACTIONS)), _ACTIONS)
    top.set_ylim(-0.5, len(_ACTIONS) - 0.5)
    top.set_title("actions taken after each iteration's estimate")
    _load_steps(bottom, history)
    bottom.plot(k, [it.n_free_atoms for it in history], "o-", label="free atoms")
    bottom.plot(k, [it.n_fe_dofs for it in history], "s-", label="FE dofs")
    bottom.set_yscale("log")
    bottom.set_ylabel("count")
    bottom.set_xlabel("iteration")
    bottom.xaxis.set_major_locator(MaxNLocator(integer=True))
    bottom.legend(fontsize=8)
    _save(fig, path)
    plt.close(fig)


def write_plots(history: list[Any], folder: Path) -> list[Path]:
    """Write the three figures of the loop's ``history`` into ``folder`` (rank 0 only).

    Returns:
        The files written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / "convergence.png", folder / "terms.png", folder / "actions.png"]
    _convergence(plt, history, paths[0])
    _terms(plt, history, paths[1])
    _actions(plt, history, paths[2])
    return paths
