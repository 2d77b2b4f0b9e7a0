"""Graded gmsh meshes: sizes follow h(d), boundaries are tagged, gmsh is left clean."""

import gmsh
import numpy as np
import pytest
import ufl
from dolfinx import fem
from dolfinx.mesh import entities_to_geometry, exterior_facet_indices
from mpi4py import MPI

from continuum import Ball, Box, Disk, GeometryError, Rectangle, graded_mesh


def cell_edges_and_distance(md, centre):
    """Mean edge length and centroid distance to ``centre`` of every cell."""
    mesh = md.mesh
    x = mesh.geometry.x[mesh.geometry.dofmaps[0]]  # (n_cells, n_vertices, 3)
    i, j = np.triu_indices(x.shape[1], k=1)
    edges = np.linalg.norm(x[:, i] - x[:, j], axis=2).mean(axis=1)
    distance = np.linalg.norm(x.mean(axis=1) - centre, axis=1)
    return edges, distance


def facet_midpoints(md, tag):
    nodes = entities_to_geometry(md.mesh, md.dim - 1, md.facet_tags.find(tag))
    return md.mesh.geometry.x[nodes].mean(axis=1)


def check_grading(md, *, centre, focus_radius, h_min, h_max, growth):
    edges, d = cell_edges_and_distance(md, np.asarray(centre))
    target = np.clip(h_min + growth * (d - focus_radius), h_min, h_max)
    ratio = edges / target
    near = d < focus_radius
    far = target >= 0.85 * h_max  # a small ball has no cell centroid where h = h_max exactly
    assert near.any() and far.any()
    # gmsh's HXT tetrahedra come out 5-10 % larger than its Delaunay ones (3D default here)
    assert 0.7 < ratio[near].mean() < 1.5, ratio[near].mean()
    assert 0.6 < ratio[far].mean() < 1.4, ratio[far].mean()
    # sizes grow outward: the far cells are several times larger than the near ones
    assert edges[far].mean() > 0.6 * (h_max / h_min) * edges[near].mean()


def check_boundary_tags(md):
    mesh = md.mesh
    fdim = md.dim - 1
    mesh.topology.create_connectivity(fdim, md.dim)
    exterior = exterior_facet_indices(mesh.topology)
    tagged = np.sort(md.facet_tags.indices)
    np.testing.assert_array_equal(tagged, np.sort(exterior))
    assert set(np.unique(md.facet_tags.values)) == (
        {md.outer_tag, md.inner_tag} if md.inner_tag is not None else {md.outer_tag}
    )


def test_graded_disk_with_hole():
    md = graded_mesh(
        comm=MPI.COMM_SELF,
        outer=Disk((0.0, 0.0), 20.0),
        hole=Disk((1.0, 0.5), 3.0),
        focus_radius=5.0,
        h_min=0.4,
        h_max=3.0,
    )
    assert md.dim == 2 and md.mesh.geometry.dim == 2 and md.mesh.topology.cell_name() == "triangle"
    assert (md.outer_tag, md.inner_tag) == (1, 2)
    check_grading(md, centre=(1.0, 0.5, 0.0), focus_radius=5.0, h_min=0.4, h_max=3.0, growth=0.25)
    check_boundary_tags(md)
    r_in = np.linalg.norm(facet_midpoints(md, 2) - [1.0, 0.5, 0.0], axis=1)
    r_out = np.linalg.norm(facet_midpoints(md, 1), axis=1)
    # P1 chords of the circles: midpoints sit at most h²/(8r) inside
    assert np.all(np.abs(r_in - 3.0) < 0.4**2 / 3.0) and np.all(np.abs(r_out - 20.0) < 0.5)
    assert not gmsh.isInitialized()


def test_graded_rectangle_with_rectangular_hole_and_explicit_centre():
    md = graded_mesh(
        comm=MPI.COMM_SELF,
        outer=Rectangle((-12.0, -8.0), (12.0, 8.0)),
        hole=Rectangle((-2.0, -1.0), (2.0, 1.0)),
        focus_radius=3.0,
        h_min=0.5,
        h_max=2.0,
        growth=0.5,
        center=(0.0, 0.0),
    )
    check_grading(md, centre=(0, 0, 0), focus_radius=3.0, h_min=0.5, h_max=2.0, growth=0.5)
    check_boundary_tags(md)
    inner = facet_midpoints(md, 2)
    on_hole = np.isclose(np.abs(inner[:, 0]), 2.0) | np.isclose(np.abs(inner[:, 1]), 1.0)
    assert on_hole.all()
    area = fem.assemble_scalar(fem.form(fem.Constant(md.mesh, 1.0) * ufl.dx(domain=md.mesh)))
    assert np.isclose(area, 24 * 16 - 4 * 2, rtol=1e-12)


@pytest.mark.parametrize(
    "outer, hole",
    [
        (Ball((0.0, 0.0, 0.0), 8.0), Ball((0.0, 0.0, 0.0), 2.0)),
        (Box((-6.0, -6.0, -6.0), (6.0, 6.0, 6.0)), Box((-1.5, -1.5, -1.5), (1.5, 1.5, 1.5))),
    ],
)
def test_graded_3d_with_hole(outer, hole):
    md = graded_mesh(
        comm=MPI.COMM_SELF,
        outer=outer,
        hole=hole,
        focus_radius=3.0,
        h_min=0.7,
        h_max=2.5,
        growth=0.4,
    )
    assert md.dim == 3 and md.mesh.topology.cell_name() == "tetrahedron"
    check_grading(md, centre=(0, 0, 0), focus_radius=3.0, h_min=0.7, h_max=2.5, growth=0.4)
    check_boundary_tags(md)
    inner = facet_midpoints(md, 2)
    assert np.all(np.abs(inner).max(axis=1) < 2.0 + 1e-9)


def test_no_hole_and_repeated_calls_inside_a_user_gmsh_session():
    gmsh.initialize(interruptible=False)
    try:
        gmsh.option.setNumber("General.Terminal", 1)
        for _ in range(2):
            md = graded_mesh(
                comm=MPI.COMM_SELF,
                outer=Disk((0.0, 0.0), 4.0),
                focus_radius=1.0,
                h_min=0.5,
                h_max=1.0,
            )
            assert md.inner_tag is None
            check_boundary_tags(md)
        assert gmsh.isInitialized()  # the caller's session is left open ...
        assert gmsh.option.getNumber("General.Terminal") == 1  # ... with its options
    finally:
        gmsh.finalize()


def test_inconsistent_shapes_are_rejected():
    kw = dict(comm=MPI.COMM_SELF, focus_radius=1.0, h_min=0.5, h_max=1.0)
    with pytest.raises(GeometryError, match="not strictly inside"):
        graded_mesh(outer=Disk((0.0, 0.0), 4.0), hole=Disk((3.5, 0.0), 1.0), **kw)
    with pytest.raises(GeometryError, match="does not match"):
        graded_mesh(outer=Disk((0.0, 0.0), 4.0), hole=Ball((0.0, 0.0, 0.0), 1.0), **kw)
    with pytest.raises(GeometryError, match="h_min"):
        graded_mesh(outer=Disk((0.0, 0.0), 4.0), **{**kw, "h_min": 2.0})
    with pytest.raises(GeometryError, match="positive"):
        Disk((0.0, 0.0), -1.0)
