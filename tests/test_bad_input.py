"""Bad input across every verb: refused before any work, in one line, with exit 2.

Each test gives one malformed input (TOML, keys, types, NaN/inf, resources, files,
permissions, devices, the output lock, signals) and checks what the user sees: exit 2, no
traceback, at most three lines on stderr, the file or option and the key named, and nothing
computed or overwritten (no new results in the output folder, nothing labelled or trained,
files written before intact). Most run in-process (``multiscale.cli.main``); the signal tests
run ``python -m multiscale``. ``tests/test_cli.py`` holds more (unknown key, lattice name,
missing potential, absent element, bad type, bad ``--set``, missing case file).
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import cli

from multiscale.cli import main

ROOT = Path(__file__).resolve().parents[1]
VACANCY = ROOT / "cases" / "vacancy-cu"
PATCH = ROOT / "cases" / "patch-test"
VOID = ROOT / "cases" / "void-cu-3d"
CUDA = pytest.importorskip("torch").cuda.is_available()


def refused(capsys, argv, *words, code=2):
    """Run ``multiscale ARGV`` in-process; check the refusal and return its error line."""
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert rc == code, err
    assert "Traceback" not in err and "Warning" not in err, err
    lines = err.strip().splitlines()
    assert 1 <= len(lines) <= 3, err
    assert lines[-1].startswith("multiscale: error: "), err
    for word in words:
        assert str(word) in lines[-1], (word, lines[-1])
    return lines[-1]


def case_copy(tmp_path, source=VACANCY, text=None, **replace):
    """The case ``source`` in ``tmp_path/case``; ``replace`` swaps the first ``key = ...`` line."""
    folder = tmp_path / "case"
    folder.mkdir(exist_ok=True)
    text = (source / "case.toml").read_text() if text is None else text
    for key, new in replace.items():
        line = next(ln for ln in text.splitlines() if ln.split("=")[0].strip() == key)
        text = text.replace(line, new, 1)
    (folder / "case.toml").write_text(text)
    return folder


def results(folder):
    """The result files of a folder (its log and lock left out), with their bytes."""
    if not folder.exists():
        return {}
    return {
        p.relative_to(folder): p.read_bytes()
        for p in folder.rglob("*")
        if p.is_file() and p.name not in ("log.txt", ".multiscale.lock")
    }


@pytest.fixture
def earlier(tmp_path):
    """An output folder holding the results of an earlier run (they must survive)."""
    out = tmp_path / "out"
    (out / "atoms").mkdir(parents=True)
    (out / "summary.json").write_text('{"status": "converged", "energy_eV": 1.0}\n')
    (out / "atoms" / "relaxed.extxyz").write_text("1\n\nCu 0 0 0\n")
    return out


# ------------------------------------------------------------------------ TOML and keys


@pytest.mark.parametrize(
    ("replace", "words"),
    [
        ({"size": "size = [3, 3"}, ["not valid TOML"]),
        ({"size": "size = [3, 3, 3]\nsize = [4, 4, 4]"}, ["not valid TOML"]),
        ({"device": 'device = "auto"\ngpu = 1'}, ["run.gpu", "device"]),
        ({"directory": 'directory = "output"\n[geometry]\nouter = "box"'}, ["[geometry]"]),
        ({"element": ""}, ["lattice.element", "missing"]),
        ({"kind": 'kind = "crack"'}, ["case.kind", '"crack"', "vacancy-formation"]),
        ({"size": 'size = "big"'}, ["lattice.size", "array of 3 integers"]),
        ({"max_steps": "max_steps = 1.5"}, ["relax.max_steps", "integer"]),
        ({"device": "device = 3"}, ["run.device", '"cuda"']),
        ({"size": "size = [0, 3, 3]"}, ["lattice.size", ">= 1"]),
        ({"fmax": "fmax = nan"}, ["relax.fmax", "finite", "nan"]),
        ({"fmax": "fmax = -inf"}, ["relax.fmax", "finite", "-inf"]),
        ({"a": "a = inf"}, ["lattice.a", "finite", "inf"]),
        ({"method": 'method = "bfgs"'}, ["relax.method", '"lbfgs"']),
    ],
    ids=[
        "toml-syntax",
        "toml-duplicate-key",
        "unknown-key",
        "section-of-other-kind",
        "missing-key",
        "unknown-kind",
        "size-string",
        "steps-float",
        "device-number",
        "size-zero",
        "fmax-nan",
        "fmax-minus-inf",
        "a-inf",
        "unknown-method",
    ],
)
def test_bad_case_file(tmp_path, capsys, earlier, replace, words):
    folder = case_copy(tmp_path, **replace)
    before = results(earlier)
    for verb in ("check", "run"):
        extra = ["--output", earlier] if verb == "run" else []
        refused(capsys, [verb, folder, *extra], folder / "case.toml", *words)
    assert results(earlier) == before


def test_non_utf8_case_file(tmp_path, capsys):
    folder = tmp_path / "case"
    folder.mkdir()
    (folder / "case.toml").write_bytes((VACANCY / "case.toml").read_bytes() + b"# \xff\xfe\n")
    refused(capsys, ["check", folder], folder / "case.toml", "UTF-8")
    refused(capsys, ["run", folder], folder / "case.toml", "UTF-8")
    assert not (folder / "output").exists()


def test_coupled_strain_nan(tmp_path, capsys):
    folder = case_copy(tmp_path, PATCH)
    bad = "boundary.strain=[[nan, 0, 0], [0, 0, 0], [0, 0, 0]]"
    refused(capsys, ["check", folder, "--set", bad], "--set boundary.strain", "finite")


# ------------------------------------------------------------------------ resources


@pytest.mark.parametrize(
    ("setting", "words"),
    [
        ("lattice.size=[1000, 1000, 1000]", ["lattice.size", "4.0e+09 atoms", "memory"]),
        (f"lattice.size=[{2**70}, 1, 1]", ["lattice.size", "atoms", "memory"]),
        ("lattice.a=1e-300", ["lattice.a", "1e-300", "within the potential's cutoff"]),
    ],
    ids=["1000-cubed", "2-to-the-70", "a-1e-300"],
)
def test_vacancy_beyond_the_machine(tmp_path, capsys, earlier, setting, words):
    before = results(earlier)
    refused(capsys, ["check", VACANCY, "--set", setting], f"--set {setting.split('=')[0]}", *words)
    refused(capsys, ["run", VACANCY, "--set", setting, "--output", earlier], *words)
    assert results(earlier) == before


def test_estimate_counts_the_supercell():
    """The estimate's atoms are the supercell's sites, exactly (4 per fcc cell)."""
    from multiscale.resources import Estimate, count_text

    assert count_text(np.log10(4 * 1000**3)) == "4.0e+09"
    est = Estimate(log_atoms=np.log10(500), log_pairs=np.log10(500 * 80))
    assert est.text().startswith("about 500 atoms, 40000 neighbour pairs")


@pytest.mark.parametrize(
    ("setting", "words"),
    [
        ("geometry.h_min=1e-4", ["--set geometry.h_min", "mesh elements", "memory"]),
        ("lattice.a=1e-300", ["--set lattice.a", "within the potential's cutoff"]),
        ("geometry.radius=1e300", ["--set geometry.radius", "mesh elements"]),
    ],
    ids=["h_min-1e-4", "a-1e-300", "radius-1e300"],
)
def test_coupled_beyond_the_machine(tmp_path, capsys, setting, words):
    out = tmp_path / "out"
    refused(capsys, ["check", PATCH, "--set", setting], *words)
    refused(capsys, ["run", PATCH, "--set", setting, "--output", out], *words)
    assert results(out) == {}


def test_a_reference_that_lammps_relaxes_is_estimated_with_lammps_memory(monkeypatch):
    """The void benchmark's domain twice as large (238.6 Å, 1 523 944 atoms with the held
    shell): LAMMPS relaxed it in 2.28 GB (cases/void-cu-3d/README.md), while the torch engine's
    estimate, 400 B per neighbour pair, exceeded this machine's 23.5 GiB and refused it before
    LAMMPS ran. The estimate now follows the engine, and stays above what LAMMPS used."""
    from multiscale import resources
    from multiscale.config import load_case
    from multiscale.errors import CaseError
    from multiscale.kinds.coupled.setup import check_resources, estimate, resolve_setup

    monkeypatch.setattr(resources, "machine_memory", lambda: int(23.5 * 2**30))
    size = "geometry.size=[238.585054348613, 238.585054348613, 238.585054348613]"
    for engine in ("lammps", "torch"):
        case = load_case(VOID, overrides=[size, f"reference.engine={engine}"])
        setup = resolve_setup(case)
        need = 10 ** estimate(setup, reference=True).log_bytes
        if engine == "lammps":
            check_resources(case, setup, reference=True)
            assert 2.28e9 < need < 5 * 2.28e9
        else:
            with pytest.raises(CaseError, match="fully atomistic reference would need"):
                check_resources(case, setup, reference=True)


def test_reference_of_a_1000_A_box(tmp_path, capsys):
    """1000 Å of atoms is ~1e8 atoms: the reference is refused, naming the size."""
    out = tmp_path / "out"
    line = refused(
        capsys,
        ["reference", VOID, "--set", "geometry.size=[1000.0, 1000.0, 1000.0]", "--output", out],
        "--set geometry.size",
        "fully atomistic reference",
        "e+07 atoms",
    )
    assert "233 GiB" in line  # relaxed by LAMMPS (the void is EAM); the torch engine: 2 TiB
    assert not out.exists()


@pytest.mark.parametrize(
    "strain",
    ["[[1e4, 0, 0], [0, 0, 0], [0, 0, 0]]", "[[-0.9, 0, 0], [0, 0, 0], [0, 0, 0]]"],
    ids=["1e4", "degenerate"],
)
def test_strain_beyond_the_stretch_limits(tmp_path, capsys, strain):
    out = tmp_path / "out"
    for verb in ("check", "run"):
        extra = ["--output", out] if verb == "run" else []
        refused(
            capsys,
            [verb, PATCH, "--set", f"boundary.strain={strain}", *extra],
            "--set boundary.strain",
            "principal stretches",
        )
    assert not out.exists()


# ------------------------------------------------------------------------ potential files


def test_unknown_element_named_by_its_potential(tmp_path, capsys, potentials_dir):
    """An EAM file whose element is "Xx": refused by check and run (was a KeyError in run)."""
    lines = (potentials_dir / "Cu_mishin1.eam.alloy").read_text().splitlines(keepends=True)
    assert lines[3].split() == ["1", "Cu"]
    folder = case_copy(tmp_path, element='element = "Xx"', file='file = "Xx.eam.alloy"')
    (folder / "Xx.eam.alloy").write_text("".join([*lines[:3], "1 Xx\n", *lines[4:]]))
    out = tmp_path / "out"
    for verb in ("check", "run"):
        extra = ["--output", out] if verb == "run" else []
        refused(capsys, [verb, folder, *extra], "case.toml", "lattice.element", '"Xx"', "symbol")
    assert results(out) == {}


def test_mlip_kind_on_an_eam_file(capsys):
    refused(
        capsys,
        ["check", VACANCY, "--set", 'potential.kind="mlip"'],
        "--set potential.kind",
        '"eam"',
    )


@pytest.mark.parametrize("kind", ["mlip", "mace"])
def test_garbage_model_file_is_one_line(tmp_path, kind):
    """In a fresh interpreter, so that third-party import warnings would show."""
    folder = case_copy(tmp_path)
    name = "bad.pt" if kind == "mlip" else "bad.model"
    (folder / name).write_bytes(b"garbage\x00\x01")
    sets = ["--set", f'potential.kind="{kind}"', "--set", f'potential.file="{name}"']
    proc = cli("check", folder, *sets)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("multiscale: error: --set potential.file")
    assert name in proc.stderr and "cannot be read" in proc.stderr


# ------------------------------------------------------------------------ outputs


def test_empty_output_option(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    refused(capsys, ["run", VACANCY, "--output", ""], "--output ''", "empty")
    refused(capsys, ["reference", PATCH, "--output", ""], "--output ''", "empty")
    assert list(tmp_path.iterdir()) == []


def test_empty_output_directory_key(tmp_path, capsys):
    folder = case_copy(tmp_path, directory='directory = ""')
    refused(capsys, ["run", folder], "case.toml", "output.directory", "empty")
    assert sorted(p.name for p in folder.iterdir()) == ["case.toml"]


def test_output_onto_a_file(tmp_path, capsys):
    target = tmp_path / "taken"
    target.write_text("keep me\n")
    refused(capsys, ["run", VACANCY, "--output", target], "--output", "cannot create")
    assert target.read_text() == "keep me\n"


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc")
def test_output_folder_not_writable(capsys):
    """An existing folder that cannot be written (/proc refuses new files, even to root)."""
    refused(capsys, ["run", VACANCY, "--output", "/proc"], "--output '/proc'", "cannot write")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder")
def test_output_folder_read_only(tmp_path, capsys, earlier):
    before = results(earlier)
    earlier.chmod(0o555)
    try:
        refused(capsys, ["run", VACANCY, "--output", earlier], "--output", "cannot write")
    finally:
        earlier.chmod(0o755)
    assert results(earlier) == before


# ------------------------------------------------------------------------ devices


@pytest.mark.skipif(CUDA, reason="needs a machine without CUDA")
@pytest.mark.parametrize("case", [VACANCY, PATCH], ids=["vacancy", "coupled"])
def test_cuda_without_a_gpu(tmp_path, capsys, case):
    out = tmp_path / "out"
    for verb in ("check", "run"):
        extra = ["--output", out] if verb == "run" else []
        refused(capsys, [verb, case, "--device", "cuda", *extra], "--device cuda", "CUDA", "cpu")
    refused(capsys, ["check", case, "--set", 'run.device="cuda"'], "--set run.device", "CUDA")
    assert results(out) == {}


def test_unknown_device_names_the_option(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["check", str(VACANCY), "--device", "gpu"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--device" in err and "'gpu'" in err


# ------------------------------------------------------------------------ the output lock


def write_lock(folder, *, pid, host=None):
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / ".multiscale.lock"
    holder = {
        "pid": pid,
        "host": host or socket.gethostname(),
        "started": "2026-12-06 01:02:03 UTC",
        "command": "multiscale run elsewhere",
    }
    lock.write_text(json.dumps(holder))
    return lock


def test_second_run_into_a_locked_folder(tmp_path, capsys, earlier):
    """A live holder (this test's parent process) keeps the folder: exit 2, naming it."""
    lock = write_lock(earlier, pid=os.getppid())
    text = lock.read_text()
    before = results(earlier)
    for verb, case in (("run", VACANCY), ("reference", PATCH)):
        refused(
            capsys,
            [verb, case, "--output", earlier],
            "--output",
            f"pid {os.getppid()}",
            socket.gethostname(),
            "2026-12-06 01:02:03 UTC",
        )
    assert lock.read_text() == text and results(earlier) == before
    assert not (earlier / "log.txt").exists()


def test_lock_from_another_host_is_kept(tmp_path, capsys, earlier):
    lock = write_lock(earlier, pid=1, host="elsewhere.example")
    refused(capsys, ["run", VACANCY, "--output", earlier], "elsewhere.example", str(lock))
    assert lock.exists()


def test_stale_lock_is_taken_over_and_released(tmp_path, capsys):
    out = tmp_path / "out"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock = write_lock(out, pid=dead.pid)
    rc = main(["run", str(VACANCY), "--output", str(out), "--set", "lattice.size=[2,2,2]"])
    err = capsys.readouterr().err
    assert rc == 0, err
    notes = [ln for ln in err.splitlines() if "stale lock" in ln]
    assert len(notes) == 1 and f"pid {dead.pid}" in notes[0]
    assert (out / "summary.json").is_file()
    assert not lock.exists()


def test_lock_released_after_a_refused_run(tmp_path, capsys):
    out = tmp_path / "out"
    refused(capsys, ["run", VACANCY, "--output", out, "--set", 'lattice.element="Al"'], "Al")
    assert out.is_dir() and not (out / ".multiscale.lock").exists()


def test_dataset_into_a_locked_file(tmp_path, capsys):
    config = dataset_config(tmp_path)
    dead_or_alive = os.getppid()
    (tmp_path / ".data.extxyz.lock").write_text(
        json.dumps({"pid": dead_or_alive, "host": socket.gethostname(), "started": "x"})
    )
    refused(capsys, ["dataset", config], "output.path", f"pid {dead_or_alive}")
    assert not (tmp_path / "data.extxyz").exists()


# ------------------------------------------------------------------------ dataset


DATASET = """
[oracle]
kind = "emt"
[lattice]
structure = "fcc"
element = "Cu"
a = 3.6
[generators.bulk]
count = 2
size = 1
[output]
path = "data.extxyz"
"""


def dataset_config(tmp_path, text=DATASET):
    path = tmp_path / "dataset.toml"
    path.write_text(text)
    return path


def test_dataset_output_onto_a_folder(tmp_path, capsys):
    config = dataset_config(tmp_path)
    (tmp_path / "folder").mkdir()
    refused(capsys, ["dataset", config, "--output", tmp_path / "folder"], "--output", "is a folder")
    assert list((tmp_path / "folder").iterdir()) == []


def test_dataset_output_key_onto_a_folder(tmp_path, capsys):
    config = dataset_config(tmp_path, DATASET.replace('"data.extxyz"', '"sub"'))
    (tmp_path / "sub").mkdir()
    refused(capsys, ["dataset", config], "dataset.toml", "output.path", "is a folder")


def test_dataset_append_onto_garbage(tmp_path, capsys):
    config = dataset_config(tmp_path)
    garbage = tmp_path / "data.extxyz"
    garbage.write_text("this is not\nan extxyz file\n")
    refused(capsys, ["dataset", config, "--append"], "output.path", "--append", "not")
    assert garbage.read_text() == "this is not\nan extxyz file\n"


def test_dataset_empty_output(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = dataset_config(tmp_path)
    refused(capsys, ["dataset", config, "--output", ""], "--output ''", "empty")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dataset.toml"]


def test_dataset_non_utf8_config(tmp_path, capsys):
    path = tmp_path / "dataset.toml"
    path.write_bytes(DATASET.encode() + b"# \xff\n")
    refused(capsys, ["dataset", path], "dataset.toml", "UTF-8")


# ------------------------------------------------------------------------ train


TRAIN = """
[data]
files = ["data.extxyz"]
[committee]
members = 1
[training]
epochs = 1
device = "cpu"
{training}
[output]
{output}
"""


@pytest.fixture
def train_folder(tmp_path):
    from ase.calculators.emt import EMT

    from atomistic.lattice import crystal
    from atomistic.mlip.dataset import label, write_dataset

    frames = []
    for k in range(3):
        atoms = crystal("fcc", element="Cu", a=3.6 + 0.02 * k)
        frames.append(label(atoms, EMT(), oracle="emt"))
    write_dataset(tmp_path / "data.extxyz", frames)
    return tmp_path


def train_config(folder, *, training="", output='potential = "model.pt"'):
    path = folder / "train.toml"
    path.write_text(TRAIN.format(training=training, output=output))
    return path


def test_train_corrupt_fine_tune_model(train_folder, capsys):
    (train_folder / "base.pt").write_bytes(b"not a torch file")
    config = train_config(train_folder, training='fine_tune_from = "base.pt"')
    refused(capsys, ["train", config, "--quiet"], "train.toml", "training.fine_tune_from")
    assert not (train_folder / "model.pt").exists()
    assert not (train_folder / "metrics.json").exists()


def test_train_potential_onto_a_folder(train_folder, capsys):
    (train_folder / "model.pt").mkdir()
    config = train_config(train_folder)
    refused(capsys, ["train", config, "--quiet"], "train.toml", "output.potential", "folder")
    assert not (train_folder / "metrics.json").exists()


def test_train_would_overwrite_its_data(train_folder, capsys):
    data = (train_folder / "data.extxyz").read_bytes()
    config = train_config(train_folder, output='potential = "data.extxyz"')
    refused(capsys, ["train", config, "--quiet"], "output.potential", "training data")
    assert (train_folder / "data.extxyz").read_bytes() == data


def test_train_two_outputs_one_file(train_folder, capsys):
    config = train_config(train_folder, output='potential = "m.pt"\nmetrics = "m.pt"')
    refused(capsys, ["train", config, "--quiet"], "output.metrics", "output.potential")


def test_train_into_a_locked_potential(train_folder, capsys):
    (train_folder / ".model.pt.lock").write_text(
        json.dumps({"pid": os.getppid(), "host": socket.gethostname(), "started": "x"})
    )
    config = train_config(train_folder)
    refused(capsys, ["train", config, "--quiet"], "output.potential", f"pid {os.getppid()}")
    assert not (train_folder / "model.pt").exists()


def test_train_toml_syntax(train_folder, capsys):
    path = train_folder / "train.toml"
    path.write_text("[data\nfiles = 1\n")
    refused(capsys, ["train", path], "train.toml", "not valid TOML")


# ------------------------------------------------------------------------ signals


def test_ctrl_c_during_shutdown_prints_no_traceback():
    """An interrupt after the command has finished (here: from an atexit hook) is ignored."""
    code = (
        "import atexit, os, signal, multiscale.cli as cli\n"
        "atexit.register(lambda: os.kill(os.getpid(), signal.SIGINT))\n"
        "cli.main = lambda argv=None: 0\n"
        "cli.console_main()\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "KeyboardInterrupt" not in proc.stderr


def test_sigterm_releases_the_lock(tmp_path):
    """SIGTERM mid-run exits through Python: the lock is removed, earlier results kept."""
    out = tmp_path / "out"
    lock = out / ".multiscale.lock"
    proc = subprocess.Popen(
        [sys.executable, "-m", "multiscale", "run", str(VACANCY), "--output", str(out)]
        + ["--set", "lattice.size=[8,8,8]", "--set", "relax.fmax=1e-9"],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    deadline = time.monotonic() + 120
    while not lock.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert lock.exists(), "the run never took the lock"
    assert json.loads(lock.read_text())["pid"] == proc.pid
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert not lock.exists()
    assert not (out / "summary.json").exists()
