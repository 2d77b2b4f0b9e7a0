"""Figures of a coupled run's model: its sizes (``counts.png``) and, in 2.5d, its atoms.

``atoms.png`` shows the atoms at their reference positions projected on x–y, coloured by
``region`` (core, handshake, pad), over the FE mesh drawn with thin edges: the whole
domain on the left, the atomistic region enlarged on the right.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["atoms_figure", "counts_figure"]

#: ``region`` values of ``atoms/coupled.extxyz``: name and colour.
REGIONS = {
    0: ("core (β = 1)", "tab:red"),
    1: ("handshake (0 < β < 1)", "tab:orange"),
    2: ("pad (β = 0, follows the FE field)", "tab:blue"),
}


def counts_figure(plt: Any, summary: dict[str, Any], *, reference_atoms: int | None) -> Any:
    """Atoms and degrees of freedom of the final state, with the reference's atoms if any.

    Args:
        plt: ``matplotlib.pyplot``.
        summary: a coupled run's ``summary.json``.
        reference_atoms: atoms of ``reference/summary.json`` (the fully atomistic problem),
            or None.
    """
    free, pad, dofs = summary["n_free_atoms"], summary["n_pad_atoms"], summary["n_fe_dofs"]
    rows = [
        ("free atoms", free, "C0"),
        ("pad atoms", pad, "C0"),
        ("FE nodes", dofs // 3, "C1"),
        ("FE dofs (3 per node)", dofs, "C1"),
        ("unknowns: 3 × free atoms + FE dofs", 3 * free + dofs, "C2"),
    ]
    if reference_atoms is not None:
        rows.append(("atoms of the fully atomistic reference", reference_atoms, "C7"))
    fig, ax = plt.subplots(figsize=(7.0, 0.5 * len(rows) + 1.4))
    y = np.arange(len(rows))[::-1]
    bars = ax.barh(y, [r[1] for r in rows], color=[r[2] for r in rows])
    ax.bar_label(bars, [f"{r[1]:,}" for r in rows], padding=3, fontsize=8)
    ax.set_yticks(y, [r[0] for r in rows])
    ax.set_xscale("log")
    ax.set_xlim(1, ax.get_xlim()[1] * 4)  # bars from 1; room for the numbers
    ax.set_xlabel("count (log scale)")
    after = ""
    if "adaptivity" in summary:
        after = f", after {summary['adaptivity']['iterations']} adaptive iteration(s)"
    ax.set_title(f"size of the coupled problem{after}", fontsize=10)
    ax.grid(True, axis="x", which="both", alpha=0.3)
    return fig


def _draw(ax: Any, atoms: Any, mesh: tuple[np.ndarray, np.ndarray], size: float) -> None:
    points, cells = mesh
    ax.triplot(points[:, 0], points[:, 1], cells[:, :3], color="0.45", lw=0.3, zorder=1)
    xy = atoms.arrays["reference_position"][:, :2]
    region = atoms.arrays["region"]
    for value, (name, colour) in REGIONS.items():
        chosen = region == value
        label = f"{name}: {int(chosen.sum())} atoms"
        ax.scatter(*xy[chosen].T, s=size, color=colour, lw=0, label=label, zorder=2)
    ax.set_aspect("equal")
    ax.set_xlabel("x (Å)")
    ax.set_ylabel("y (Å)")


def atoms_figure(plt: Any, atoms: Any, mesh: tuple[np.ndarray, np.ndarray]) -> Any:
    """Atoms coloured by region over the mesh edges (2.5d, projected on x–y).

    Args:
        plt: ``matplotlib.pyplot``.
        atoms: ``atoms/coupled.extxyz`` (arrays ``reference_position`` and ``region``).
        mesh: ``(points, cells)`` of the triangle mesh, Å.
    """
    fig, (whole, zoom) = plt.subplots(1, 2, figsize=(12.0, 6.0))
    _draw(whole, atoms, mesh, size=2.0)
    whole.set_title(f"whole domain: {len(mesh[1])} triangles, {len(atoms)} atoms", fontsize=10)
    _draw(zoom, atoms, mesh, size=9.0)
    xy = atoms.arrays["reference_position"][:, :2]
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    centre, half = (lo + hi) / 2, 0.6 * np.max(hi - lo)
    zoom.set_xlim(centre[0] - half, centre[0] + half)
    zoom.set_ylim(centre[1] - half, centre[1] + half)
    zoom.set_title("atomistic region (reference positions)", fontsize=10)
    handles, labels = zoom.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=9, markerscale=2.5)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig
