"""A run's results replace the previous ones as a set: a run killed (SIGKILL) while writing
them leaves the old set or the new one, never a mix, and the next run repairs the folder.

The kills are real: a child process stages a new set of results and is killed with SIGKILL
before its marker, or in the middle of moving the entries into place (after the first
``os.replace``). Then ``multiscale run`` into the same folder must report the repair and
leave a consistent folder.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from multiscale.output_set import INCOMING, recover, staged

ROOT = Path(__file__).resolve().parents[1]

OLD = {"summary.json": '{"run": "old"}', "atoms/a.extxyz": "old atoms", "continuum/f.bp": "old"}
NEW = {"summary.json": '{"run": "new"}', "atoms/a.extxyz": "new atoms", "continuum/f.bp": "new"}


def write_set(folder: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def read_set(folder: Path) -> dict[str, str]:
    return {name: (folder / name).read_text() for name in OLD if (folder / name).exists()}


def killed_child(out: Path, *, when: str) -> None:
    """Stage NEW over OLD in a child process that SIGKILLs itself at ``when``."""
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        from pathlib import Path
        sys.path.insert(0, {str(ROOT)!r})
        import multiscale.output_set as s
        out = Path({str(out)!r})
        files = {NEW!r}
        when = {when!r}
        real = os.replace
        moves = []
        def replace(a, b):
            real(a, b)
            moves.append(b)
            if when == "mid-move" and len(moves) == 2:
                os.kill(os.getpid(), signal.SIGKILL)
        s.os.replace = replace
        with s.staged(out) as stage:
            for name, text in files.items():
                p = stage / name
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_text(text)
                if when == "while-writing" and name.startswith("atoms"):
                    os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr


def test_a_finished_staging_replaces_every_file_and_folder(tmp_path):
    write_set(tmp_path, OLD)
    with staged(tmp_path) as stage:
        write_set(stage, NEW)
        assert read_set(tmp_path) == OLD  # nothing replaced before the end
    assert read_set(tmp_path) == NEW
    assert sorted(p.name for p in tmp_path.iterdir()) == ["atoms", "continuum", "summary.json"]


def test_an_exception_while_writing_keeps_the_old_set(tmp_path):
    write_set(tmp_path, OLD)
    with pytest.raises(RuntimeError), staged(tmp_path) as stage:
        write_set(stage, {"summary.json": "half"})
        raise RuntimeError("disk full")
    assert read_set(tmp_path) == OLD
    assert not (tmp_path / INCOMING).exists()


def test_killed_while_writing_the_old_set_survives(tmp_path):
    write_set(tmp_path, OLD)
    killed_child(tmp_path, when="while-writing")
    assert (tmp_path / INCOMING).exists()
    assert read_set(tmp_path) == OLD
    assert recover(tmp_path) == ["removed the incomplete results of an interrupted run"]
    assert read_set(tmp_path) == OLD
    assert not (tmp_path / INCOMING).exists()


def test_killed_while_moving_the_new_set_is_finished(tmp_path):
    write_set(tmp_path, OLD)
    killed_child(tmp_path, when="mid-move")
    mixed = read_set(tmp_path)
    assert mixed != OLD and mixed != NEW  # the kill did land between two moves
    lines = recover(tmp_path)
    assert any("finished moving" in line for line in lines), lines
    assert read_set(tmp_path) == NEW
    assert sorted(p.name for p in tmp_path.iterdir()) == ["atoms", "continuum", "summary.json"]


def test_the_next_run_repairs_the_folder_and_says_so(tmp_path):
    """A vacancy run into a folder whose previous run was killed mid-move."""
    out = tmp_path / "out"
    write_set(out, OLD)
    killed_child(out, when="mid-move")
    (out / ".summary.json.abc.tmp").write_text("torn")  # an atomic write cut short
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    case = ROOT / "cases" / "vacancy-cu"
    command = [sys.executable, "-m", "multiscale", "run", str(case), "--output", str(out)]
    command += ["--set", "lattice.size=[3,3,3]"]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "finished moving the complete results of an interrupted run" in proc.stderr
    assert "removed the temporary file .summary.json.abc.tmp" in proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "converged" and summary["n_atoms"] == 107
    assert not list(out.rglob(".*.tmp")) and not (out / INCOMING).exists()
    assert (out / "atoms" / "relaxed.extxyz").exists()
