"""``[adaptivity]`` of a coupled case: the a posteriori estimator and what it may change.

Without the section a coupled case runs exactly as it always did: the load steps, once.
With it, the last load step (or, with ``load_steps = "every"``, every load step) is followed
by the adaptive loop (:mod:`multiscale.kinds.coupled.adaptive`): estimate, mark (Dörfler,
``theta``), act (refine the mesh, grow the atomistic region, retrain the committee), solve
again at that load, until the estimate ``eta_total`` is below ``tolerance`` or a budget is
reached.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from multiscale.config.schema import Context, option, toml_value
from multiscale.config.sections import at_least_one, positive

__all__ = ["ACTIONS", "AdaptivitySection", "check_adaptivity"]

#: What the loop may do at a marked location, by the term that dominates there.
ACTIONS = ("refine", "expand", "retrain")


def _fraction(value: float) -> str | None:
    return None if 0.0 < value <= 1.0 else "must be in (0, 1]"


def _budget(value: int | str) -> str | None:
    if value == "none":
        return None
    return None if isinstance(value, int) and value >= 0 else 'must be an integer >= 0 or "none"'


def _actions(value: tuple[str, ...]) -> str | None:
    bad = [a for a in value if a not in ACTIONS]
    if bad or not value:
        return f"must be a non-empty list of {', '.join(map(toml_value, ACTIONS))}"
    return None


@dataclass(frozen=True, kw_only=True)
class AdaptivitySection:
    """``[adaptivity]``: the adaptive loop after the last load step (or after every one)."""

    load_steps: Literal["last", "every"] = option(
        "last",
        doc='when the loop runs: `"last"`, once the last load step is solved; `"every"`, '
        "after each load step, at its load, before the next (the atoms follow a defect "
        "that moves with the load, e.g. a crack tip); `max_iterations` then counts per load "
        "step, the other budgets over the whole run",
    )

    theta: float = option(
        0.5,
        check=_fraction,
        doc="Dörfler parameter: mark the fewest cells and atoms whose squared indicators sum "
        "to at least `theta` of the total",
    )
    tolerance: float = option(
        0.01,
        check=positive,
        doc="stop once `eta_total`, the estimate of the relative strain error "
        "(`reference_error.strain_error_rel`), is below this",
    )
    actions: tuple[str, ...] = option(
        ACTIONS,
        check=_actions,
        doc='what the loop may do: `"refine"` the mesh where `eta_fe` dominates, '
        '`"expand"` the atomistic region where `eta_model` dominates, `"retrain"` the '
        "committee where `eta_ml` dominates (a committee potential and an `oracle` only)",
    )
    max_iterations: int = option(
        8,
        check=at_least_one,
        doc="budget: estimate–mark–act–solve rounds after the load steps (per load step with "
        '`load_steps = "every"`)',
    )
    max_atoms: int | Literal["none"] = option(
        "none", check=_budget, doc="budget: free atoms; an action that would exceed it stops"
    )
    max_fe_dofs: int | Literal["none"] = option(
        "none", check=_budget, doc="budget: FE degrees of freedom; as `max_atoms`"
    )
    max_oracle_calls: int | Literal["none"] = option(
        "none", check=_budget, doc="budget: oracle evaluations (labelled clusters) in the run"
    )
    buffer: float | Literal["auto"] = option(
        "auto",
        unit="Å",
        check=positive,
        doc="an expansion adds to the core a ball (disk in 2.5d) of radius `h_K + buffer` "
        "around each marked cell's centre",
        default_doc="`r_nn`",
    )
    lo: float = option(
        0.05,
        unit="eV/Å",
        check=positive,
        doc="retraining: calibrated committee force spread below which an atom is trusted",
    )
    hi: float = option(
        0.15,
        unit="eV/Å",
        check=positive,
        doc="retraining: above this spread the loop first returns to the last accepted state",
    )
    oracle: str = option(
        "none",
        doc='oracle that labels carved clusters, e.g. `"lammps:Cu_mishin1.eam.alloy"` or '
        '`"emt"`; `"none"`: no retraining',
    )
    cluster_radius: float = option(
        5.0, unit="Å", check=positive, doc="retraining: atoms whose forces are labels"
    )
    cluster_buffer: float | Literal["auto"] = option(
        "auto",
        unit="Å",
        check=positive,
        doc="retraining: shell of unlabelled atoms around a cluster",
        default_doc="twice the larger of the committee's and the oracle's cutoffs",
    )
    max_clusters: int = option(8, check=at_least_one, doc="retraining: clusters per round")
    epochs: int = option(60, check=at_least_one, doc="retraining: fine-tuning epochs per round")
    learning_rate: float = option(
        1e-3, check=positive, doc="retraining: Adam learning rate of the fine-tuning"
    )
    replay: float = option(1.0, check=positive, doc="retraining: old frames replayed per new frame")
    label_predictor: bool = option(
        False,
        doc="retraining: also label, around each centre, a cluster cut from the homogeneous "
        "predictor (the unrelaxed state the relaxation starts from; up to two oracle calls "
        "per centre)",
    )
    energy_noise: float = option(
        0.02,
        unit="eV/atom",
        check=positive,
        doc="retraining: energy noise `σ_E` of the fine-tuning loss on the labelled clusters",
    )
    replay_energy_noise: float | Literal["auto"] = option(
        "auto",
        unit="eV/atom",
        check=positive,
        doc="retraining: `σ_E` of the replayed frames; tighter than `energy_noise` keeps "
        "the committee's bulk energy where it was",
        default_doc="`energy_noise`",
    )


def check_adaptivity(section: AdaptivitySection, ctx: Context) -> None:
    """Checks across the keys of ``[adaptivity]``.

    Without an oracle retraining is simply off (``"retrain"`` in ``actions`` does nothing).

    Raises:
        CaseError: ``lo >= hi``, or an ``oracle`` that is not ``"none"``, ``"emt"`` or
            ``"lammps:<potential file>"``.
    """
    name = section.oracle
    kind, _, file = name.partition(":")
    if name not in ("none", "emt") and not (kind == "lammps" and file):
        ctx.fail(
            "adaptivity.oracle",
            f'adaptivity.oracle = {toml_value(name)} must be "none", "emt" or '
            '"lammps:<potential file>" (e.g. "lammps:Cu_mishin1.eam.alloy")',
        )
    if section.lo >= section.hi:
        ctx.fail(
            "adaptivity.lo",
            f"adaptivity.lo = {section.lo:g} eV/Å must be below adaptivity.hi = {section.hi:g}",
        )
