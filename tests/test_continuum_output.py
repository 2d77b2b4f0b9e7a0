"""VTX and XDMF output: files exist, carry the fields, and are replaced atomically."""

import xml.etree.ElementTree as ET

import numpy as np
from mpi4py import MPI

from continuum import (
    Disk,
    HyperelasticProblem,
    LinearElasticLaw,
    graded_mesh,
    isotropic_stiffness,
    write_fields,
)

CELL_FIELDS = [
    "green_lagrange_strain",
    "small_strain",
    "stress_pk1",
    "stress_cauchy",
    "energy_density",
]


def test_write_fields_vtx_and_xdmf(tmp_path):
    mesh_data = graded_mesh(
        comm=MPI.COMM_SELF,
        outer=Disk((0.0, 0.0), 5.0),
        hole=Disk((0.0, 0.0), 1.5),
        focus_radius=2.0,
        h_min=0.6,
        h_max=1.2,
    )
    law = LinearElasticLaw(isotropic_stiffness(lam=0.6, mu=0.4))
    problem = HyperelasticProblem(mesh_data=mesh_data, law=law, mode="2.5d")
    F = np.eye(3) + np.array([[0.01, 0.0, 0.0], [0.0, -0.02, 0.0], [0.01, 0.0, 0.0]])
    problem.u.x.array[:] = (problem.dof_coordinates() @ (F - np.eye(3)).T).ravel()
    cells = problem.material.cell_averages()  # what the DG0 stress/strain fields are made of
    n_cells = mesh_data.mesh.topology.index_map(2).size_local
    np.testing.assert_allclose(cells["F"], np.broadcast_to(F, (n_cells, 3, 3)), atol=1e-14)
    P = law(F[None])[1]
    np.testing.assert_allclose(cells["P"], np.broadcast_to(P, (n_cells, 3, 3)), atol=1e-14)
    beta = lambda x: np.clip(2.5 - np.linalg.norm(x, axis=1), 0.0, 1.0)

    out = tmp_path / "out"
    paths = write_fields(problem=problem, directory=out, time=1.5, beta=beta, stem="step")
    assert sorted(p.name for p in paths) == sorted(
        ["step_nodes.bp", "step_cells.bp", "step.xdmf", "step.h5"]
    )
    for p in paths:
        assert p.exists()
        files = [f for f in p.rglob("*") if f.is_file()] if p.is_dir() else [p]
        assert files and all(f.stat().st_size > 0 for f in files)
    nodes_md = b"".join(f.read_bytes() for f in (out / "step_nodes.bp").glob("md.*"))
    cells_md = b"".join(f.read_bytes() for f in (out / "step_cells.bp").glob("md.*"))
    assert b"displacement" in nodes_md and b"beta" in nodes_md
    assert all(name.encode() in cells_md for name in CELL_FIELDS)

    root = ET.parse(out / "step.xdmf").getroot()
    attributes = {a.get("Name"): a.get("Center") for a in root.iter("Attribute")}
    assert attributes == {"displacement": "Node", "beta": "Node"} | dict.fromkeys(
        CELL_FIELDS, "Cell"
    )
    assert {t.get("Value") for t in root.iter("Time")} == {"1.5"}

    # a second write replaces the snapshot and leaves no temporary folder behind
    write_fields(problem=problem, directory=out, time=2.0, stem="step")
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in paths)
    root = ET.parse(out / "step.xdmf").getroot()
    assert {t.get("Value") for t in root.iter("Time")} == {"2"}
    assert "beta" not in {a.get("Name") for a in root.iter("Attribute")}
