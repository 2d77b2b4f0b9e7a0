"""``plots/*.png`` of an output folder, drawn from the files the run wrote (matplotlib, Agg).

``multiscale run`` calls :func:`plot_output` at its end (rank 0; an error there is a warning,
never a failed run) and ``multiscale plot OUTPUT`` calls it on an existing folder.

=====================  ==========================  ============================================
file                   cases                       what it shows
=====================  ==========================  ============================================
``solver.png``         every run                   energy above the solve's final energy and
                                                   the largest force (atoms, FE residual)
                                                   against ``fmax`` at every Newton iteration
                                                   (vacancy: every force evaluation), the
                                                   solves side by side (``iterations.csv``)
``load_steps.png``     coupled                     energy, relaxation energy, final forces,
                                                   Newton and CG iterations per load step
``counts.png``         coupled                     free and pad atoms, FE nodes and dofs, the
                                                   unknowns, the reference's atoms if any
``atoms.png``          coupled, 2.5d               atoms projected on x–y coloured by region
                                                   over the FE mesh edges, and enlarged
``convergence.png``,   coupled with                the adaptive loop (``history.csv``;
``terms.png``,         ``[adaptivity]``            :mod:`multiscale.kinds.coupled.plots`)
``actions.png``
=====================  ==========================  ============================================

A figure whose files are missing (an output of an older version without ``iterations.csv``,
say) is left out with a note; a figure of an earlier run that this run does not draw is
removed, so ``plots/`` always describes the run in its folder.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from multiscale.errors import CaseError
from multiscale.plotting import coupled, solver
from multiscale.plotting.files import (
    read_atoms,
    read_history,
    read_iterations,
    read_mesh,
    read_summary,
    save_figure,
)

__all__ = ["FIGURES", "plot_output"]

#: Every file this module may write into ``plots/``.
FIGURES = (
    "solver.png",
    "load_steps.png",
    "counts.png",
    "atoms.png",
    "convergence.png",
    "terms.png",
    "actions.png",
)


def plot_output(out: Path) -> tuple[list[Path], list[str]]:
    """Draw every figure that the files of the output folder ``out`` allow.

    Args:
        out: the output folder of a ``multiscale run``.

    Returns:
        The files written and notes on the figures left out.

    Raises:
        CaseError: ``out`` is not the output folder of a run, or ``plots/`` cannot be made.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = read_summary(out)
    folder = out / "plots"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CaseError(f"{out}: cannot create {folder} ({err.strerror})") from err
    written: list[Path] = []
    notes: list[str] = []
    for name, needs, draw in _figures(summary):
        missing = [f for f in needs if not (out / f).exists()]
        if missing:
            notes.append(f"{name}: left out, no {' or '.join(missing)} in {out}")
            continue
        fig = draw(plt, out, summary)
        try:
            save_figure(fig, folder / name)
        finally:
            plt.close(fig)
        written.append(folder / name)
    if "adaptivity" in summary:
        written += _adaptive(out, folder, notes)
    for stale in set(FIGURES) - {p.name for p in written}:
        (folder / stale).unlink(missing_ok=True)
    return written, notes


Draw = Callable[[Any, Path, dict[str, Any]], Any]


def _figures(summary: dict[str, Any]) -> list[tuple[str, tuple[str, ...], Draw]]:
    """``(file, files it needs, draw)`` of each figure of this run's kind."""
    figures: list[tuple[str, tuple[str, ...], Draw]] = [
        ("solver.png", ("iterations.csv",), _solver)
    ]
    if summary["kind"] == "coupled":
        figures += [("load_steps.png", (), _load_steps), ("counts.png", (), _counts)]
        if summary.get("dimension") == "2.5d":
            needs = ("atoms/coupled.extxyz", "continuum/continuum.h5")
            figures.append(("atoms.png", needs, _atoms))
    return figures


def _solver(plt: Any, out: Path, summary: dict[str, Any]) -> Any:
    coupled_run = summary["kind"] == "coupled"
    what = "Newton iteration" if coupled_run else "force evaluation"
    title = (
        f"monolithic Newton–CG solves, {summary['n_atoms']} atoms + {summary['n_fe_dofs']} "
        "FE dofs (iterations.csv)"
        if coupled_run
        else f"vacancy relaxation, {summary['n_atoms']} atoms, {summary['method']} (iterations.csv)"
    )
    return solver.solver_figure(
        plt,
        read_iterations(out),
        fmax=summary.get("fmax_eV_per_A"),
        xlabel=what,
        title=title,
    )


def _load_steps(plt: Any, out: Path, summary: dict[str, Any]) -> Any:
    note = ""
    if "adaptivity" in summary:
        note = "the last step holds the final adaptive re-solve"
    return solver.load_steps_figure(
        plt, summary["load_steps"], fmax=summary["fmax_eV_per_A"], note=note
    )


def _counts(plt: Any, out: Path, summary: dict[str, Any]) -> Any:
    reference = None
    path = out / "reference" / "summary.json"
    if path.is_file():
        reference = int(json.loads(path.read_text(encoding="utf-8"))["n_atoms"])
    return coupled.counts_figure(plt, summary, reference_atoms=reference)


def _atoms(plt: Any, out: Path, summary: dict[str, Any]) -> Any:
    return coupled.atoms_figure(plt, read_atoms(out), read_mesh(out))


def _adaptive(out: Path, folder: Path, notes: list[str]) -> list[Path]:
    """The adaptive loop's three figures, from ``history.csv``."""
    if not (out / "history.csv").is_file():
        notes.append(f"adaptive figures: left out, no history.csv in {out}")
        return []
    from multiscale.kinds.coupled.plots import write_plots

    return write_plots(read_history(out), folder)
