"""The adaptive loop's pieces that need no solve: Dörfler marking, [adaptivity], history.csv."""

import csv
import io
from pathlib import Path

import numpy as np
import pytest
from mpi4py import MPI

from coupling.marking import dorfler
from multiscale.config import load_case
from multiscale.errors import CaseError
from multiscale.kinds.coupled.adaptive import (
    HISTORY_COLUMNS,
    AdaptiveRecord,
    Iteration,
    history_csv,
)

ROOT = Path(__file__).resolve().parents[1]
PATCH = ROOT / "cases" / "patch-test" / "case.toml"


def brute_force_dorfler(values, theta):
    """The smallest set reaching theta of the total, by trying every subset size."""
    order = np.argsort(values)[::-1]
    total = values.sum()
    for k in range(1, len(values) + 1):
        if values[order[:k]].sum() >= theta * total:
            return set(order[:k].tolist())
    return set(order.tolist())


@pytest.mark.parametrize("theta", [0.1, 0.3, 0.5, 0.9, 1.0])
def test_dorfler_marks_the_fewest_largest(theta):
    values = np.random.default_rng(3).exponential(size=200) ** 3
    marked = dorfler(values, theta=theta, comm=MPI.COMM_SELF)
    assert set(np.flatnonzero(marked).tolist()) == brute_force_dorfler(values, theta)
    assert values[marked].sum() >= theta * values.sum()


def test_dorfler_marks_all_ties_and_nothing_on_zero():
    values = np.array([1.0, 1.0, 1.0, 0.5])
    assert dorfler(values, theta=0.5, comm=MPI.COMM_SELF).tolist() == [True, True, True, False]
    assert not dorfler(np.zeros(4), theta=0.5, comm=MPI.COMM_SELF).any()
    with pytest.raises(ValueError, match="theta"):
        dorfler(values, theta=0.0, comm=MPI.COMM_SELF)


def case_with(tmp_path, section: str) -> Path:
    folder = tmp_path / "case"
    folder.mkdir()
    (folder / "case.toml").write_text(PATCH.read_text() + "\n" + section)
    return folder


def test_without_the_section_there_is_no_loop(tmp_path):
    assert load_case(case_with(tmp_path, "")).config.adaptivity is None


def test_the_section_is_read_with_its_defaults(tmp_path):
    cfg = load_case(case_with(tmp_path, "[adaptivity]\ntheta = 0.3\n")).config.adaptivity
    assert cfg is not None
    assert cfg.theta == 0.3 and cfg.tolerance == 0.01
    assert cfg.actions == ("refine", "expand", "retrain")
    assert cfg.max_atoms == "none"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("theta = 1.5", "adaptivity.theta must be in (0, 1]"),
        ('actions = ["refine", "grow"]', "adaptivity.actions must be a non-empty list"),
        ("lo = 0.3\nhi = 0.2", "adaptivity.lo = 0.3 eV/Å must be below adaptivity.hi"),
        ("max_atoms = -3", 'adaptivity.max_atoms must be an integer >= 0 or "none"'),
        ("thta = 0.5", "adaptivity.thta"),
        ('oracle = "mishin"', 'adaptivity.oracle = "mishin" must be "none", "emt" or'),
    ],
)
def test_bad_keys_name_the_file_and_key(tmp_path, text, expected):
    folder = case_with(tmp_path, f"[adaptivity]\n{text}\n")
    with pytest.raises(CaseError) as err:
        load_case(folder)
    message = str(err.value)
    assert expected in message
    assert str(folder / "case.toml") in message
    assert "\n" not in message


def test_history_has_the_contract_columns():
    record = AdaptiveRecord()
    eta = {"eta_fe": 0.1, "eta_model": 0.2, "eta_ml": 0.0, "eta_trunc": 0.01, "eta_total": 0.3}
    record.history.append(
        Iteration(
            iteration=0,
            eta=eta,
            action="refine+expand",
            n_atoms=10,
            n_free_atoms=8,
            n_fe_dofs=30,
            oracle_calls=0,
            energy=-1.5,
            wall_time_s=2.0,
            strain_error_rel=0.15,
        )
    )
    rows = list(csv.DictReader(io.StringIO(history_csv(record))))
    assert tuple(rows[0]) == HISTORY_COLUMNS
    assert rows[0]["action"] == "refine+expand"
    assert int(rows[0]["n_dof"]) == 3 * 8 + 30
    assert float(rows[0]["effectivity"]) == pytest.approx(2.0)
