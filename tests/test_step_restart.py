"""``multiscale run CASE --restart`` of a run killed between load steps (no ``[adaptivity]``).

A small coupled mode-I crack in Cu (disk of 42 Å) loaded in 3 steps of ``K_I`` (0.6, 0.65,
0.7 MPa√m): the crack's background K field changes every step and its tip moves by ~4 Å per
step, so a restart that put back the wrong step, field or state would not land on the same
solution. One run straight through (``--restart`` into an empty folder: it must say there is
no checkpoint and run from the start); another killed with SIGKILL once the checkpoint of
load step 1 is on disk, then restarted; then that finished folder restarted once more (from
the last step's checkpoint: nothing left but one solve that rebuilds the correction). The
killed folder, copied before its serial restart, is also restarted on two MPI ranks: a
checkpoint is not tied to the number of ranks that wrote it.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import kill_after_checkpoint, subprocess_environment, write_case

CRACK = """
[case]
kind = "coupled"
dimension = "2.5d"

[lattice]
structure = "fcc"
element = "Cu"
a = 3.614925

[potential]
file = "Cu_mishin1.eam.alloy"

[geometry]
outer = "disk"
radius = 42.0
core_radius = 14.0

[defect]
kind = "crack"

[boundary]
kind = "crack"
k_i = 0.7
k_i_start = 0.55

[loading]
steps = 3

[solver]
fmax = 1e-4
"""

#: Fields of a load step that must agree exactly once restored from the checkpoint.
COPIED = ("step", "load_factor", "status", "newton_iterations", "energy_eV", "k_i_MPa_sqrt_m")


MPIEXEC = Path(sys.executable).with_name("mpiexec")


def mpiexec() -> str | None:
    return str(MPIEXEC) if MPIEXEC.exists() else shutil.which("mpiexec")


def command(case: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "multiscale", "run", str(case), "--output", str(out), *extra]


def finish(case: Path, out: Path, launcher: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [*launcher, *command(case, out, "--restart")],
        env=subprocess_environment(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text(encoding="utf-8"))


def assert_same_run(got: dict, want: dict, *, copied: int, tip: float = 1e-6) -> None:
    """Same steps, energies to what the correction passes allow, same tip.

    The passes before the last are solved loosely (to a tenth of the change), and where a
    loose solve stops moves with round-off; each path then settles within
    ``coupling.correction_tolerance`` of the fixed point (measured: 1.4e-5 eV apart on this
    crack of −5 953 eV).
    """
    assert len(got["load_steps"]) == len(want["load_steps"]) == 3
    assert got["status"] == want["status"] == "converged"
    for k, (a, b) in enumerate(zip(got["load_steps"], want["load_steps"], strict=True)):
        if k < copied:  # from the checkpoint: the same numbers
            assert {f: a[f] for f in COPIED} == {f: b[f] for f in COPIED}
        assert a["step"] == b["step"] and a["k_i_MPa_sqrt_m"] == b["k_i_MPa_sqrt_m"]
        assert a["energy_eV"] == pytest.approx(b["energy_eV"], abs=2e-4)
        assert a["crack_tip_x_A"] == pytest.approx(b["crack_tip_x_A"], abs=tip)
        assert abs(a["newton_iterations"] - b["newton_iterations"]) <= 2
    assert got["energy_eV"] == pytest.approx(want["energy_eV"], abs=2e-4)
    assert got["crack"]["tip_x_A"] == pytest.approx(want["crack"]["tip_x_A"], abs=tip)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_restart_after_sigkill_between_load_steps(tmp_path):
    case = write_case(tmp_path, CRACK)
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    done = finish(case, straight)
    assert f"restart: no checkpoint in {straight}; running from the start" in done.stderr
    want = summary(straight)
    tips = [s["crack_tip_x_A"] for s in want["load_steps"]]
    assert tips[0] < tips[1] < tips[2]  # the tip moves: every step's state differs

    record = killed / "checkpoint" / "record.json"
    reached = kill_after_checkpoint(command(case, killed), record, "step", 1)
    assert reached < 3 and not (killed / "summary.json").exists()  # killed before the end
    on_two = tmp_path / "killed-then-2-ranks"
    shutil.copytree(killed, on_two)
    done = finish(case, killed)
    assert f"restart: from the checkpoint of load step {reached} in {killed}" in done.stderr
    assert f"load step {reached}/3:" not in done.stderr  # the steps before are not solved
    restarted = summary(killed)
    assert_same_run(restarted, want, copied=reached)
    assert json.loads(record.read_text(encoding="utf-8"))["step"] == 3  # kept, last step

    done = finish(case, killed)  # a finished run: from its last step, nothing left
    assert "restart: from the checkpoint of load step 3" in done.stderr
    assert "load step 3/3:" not in done.stderr
    assert_same_run(summary(killed), restarted, copied=3)

    if mpiexec() is None:
        return
    done = finish(case, on_two, launcher=(mpiexec(), "-n", "2"))  # written serial, read on 2
    assert f"restart: from the checkpoint of load step {reached} in {on_two}" in done.stderr
    assert summary(on_two)["mpi_ranks"] == 2
    assert_same_run(summary(on_two), want, copied=reached, tip=1e-4)
