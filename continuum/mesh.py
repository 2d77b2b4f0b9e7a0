"""Graded gmsh meshes of the continuum domain around the atomistic core.

The element size is a function of the distance ``d`` to a focus point ``c``::

    h(d) = clamp(h_min + growth · (d − focus_radius), h_min, h_max)

so elements are ``h_min`` within ``focus_radius`` of the core and coarsen linearly outward. In
2D the mesh is made of triangles (``gdim = 2``), in 3D of tetrahedra. A ``notch`` (a thin
rectangle from the hole to beyond the outer boundary: the faces of a crack) is cut out with the
hole; its faces are free boundary like the hole's (``inner_tag``), so the continuum on either
side of it does not interact. Only rank 0 runs gmsh;
the mesh is then distributed over the communicator by DOLFINx.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import gmsh
import numpy as np
from dolfinx.io import gmsh as dolfinx_gmsh
from dolfinx.mesh import GhostMode, Mesh, MeshTags, create_cell_partitioner
from mpi4py import MPI

from continuum.geometry import GeometryError, Shape, check_hole_inside

__all__ = ["INNER_TAG", "OUTER_TAG", "MeshData", "MeshError", "graded_mesh"]

OUTER_TAG = 1
INNER_TAG = 2
_DOMAIN_TAG = 1
_model_counter = itertools.count()


class MeshError(RuntimeError):
    """gmsh failed to build or mesh the domain."""


@dataclass(kw_only=True)
class MeshData:
    """A distributed continuum mesh with its boundary markers.

    Attributes:
        mesh: the DOLFINx mesh (triangles with ``gdim = 2`` or tetrahedra).
        facet_tags: facet markers; ``outer_tag`` on the outer boundary, ``inner_tag`` on the
            hole boundary.
        outer_tag: marker of every outer boundary facet.
        inner_tag: marker of the hole's boundary facets, ``None`` without a hole.
        dim: topological (and geometric) dimension, 2 or 3.
    """

    mesh: Mesh
    facet_tags: MeshTags
    outer_tag: int = OUTER_TAG
    inner_tag: int | None = None
    dim: int


def _size_field(
    focus: np.ndarray, *, focus_radius: float, h_min: float, h_max: float, growth: float
) -> str:
    """Gmsh MathEval expression of ``clamp(h_min + growth (d − focus_radius), h_min, h_max)``."""
    num = lambda v: f"{float(v):.17g}"
    cx, cy, cz = (num(c) for c in focus)
    dist = f"Sqrt((x-({cx}))^2+(y-({cy}))^2+(z-({cz}))^2)"
    ramp = f"{num(h_min)}+{num(growth)}*({dist}-{num(focus_radius)})"
    return f"Min({num(h_max)}, Max({num(h_min)}, {ramp}))"


def _is_inside(box: tuple[float, ...], hole: Shape, tol: float) -> bool:
    lo, hi = hole.bounds()
    return bool(np.all(np.asarray(box[:3]) >= lo - tol) and np.all(np.asarray(box[3:]) <= hi + tol))


def _build_model(
    *, outer: Shape, hole: Shape | None, size: str, notch: Shape | None = None
) -> None:
    """Build and mesh the current gmsh model (rank 0 only)."""
    dim = outer.dim
    occ = gmsh.model.occ
    body = outer.add_to_occ(occ)
    if hole is not None:
        tools = [(dim, hole.add_to_occ(occ))]
        if notch is not None:
            tools.append((dim, notch.add_to_occ(occ)))
        cut, _ = occ.cut([(dim, body)], tools)
        bodies = [tag for d, tag in cut if d == dim]
    else:
        bodies = [body]
    occ.synchronize()
    boundary = gmsh.model.getBoundary([(dim, b) for b in bodies], combined=True, oriented=False)
    tol = 1e-6 * max(1.0, float(np.ptp(np.concatenate(outer.bounds()))))
    inner: list[int] = []
    outer_ents: list[int] = []
    for d, tag in boundary:
        bbox = gmsh.model.getBoundingBox(d, abs(tag))
        is_inner = hole is not None and _is_inside(bbox, hole, tol)
        if notch is not None and _is_inside(bbox, notch, tol):
            is_inner = True
        (inner if is_inner else outer_ents).append(abs(tag))
    if hole is not None and not inner:
        raise MeshError(f"gmsh produced no boundary on the hole {hole!r}")
    gmsh.model.addPhysicalGroup(dim, bodies, _DOMAIN_TAG, name="domain")
    gmsh.model.addPhysicalGroup(dim - 1, outer_ents, OUTER_TAG, name="outer")
    if inner:
        gmsh.model.addPhysicalGroup(dim - 1, inner, INNER_TAG, name="inner")

    field = gmsh.model.mesh.field.add("MathEval")
    gmsh.model.mesh.field.setString(field, "F", size)
    gmsh.model.mesh.field.setAsBackgroundMesh(field)
    gmsh.model.mesh.generate(dim)


_OPTIONS = {
    "General.Terminal": 0,
    "General.Verbosity": 0,
    "General.NumThreads": 1,
    # HXT tetrahedra: much faster than the default Delaunay on graded 3D meshes, with fewer
    # cells for the same size field
    "Mesh.Algorithm3D": 10,
    "Mesh.MeshSizeExtendFromBoundary": 0,
    "Mesh.MeshSizeFromPoints": 0,
    "Mesh.MeshSizeFromCurvature": 0,
}


class _GmshSession:
    """A private gmsh model with quiet options; a caller's own gmsh session is left as found."""

    def __init__(self) -> None:
        self.owns = False
        self.saved: dict[str, float] = {}
        self.model: str | None = None

    def open(self, *, h_min: float, h_max: float) -> None:
        self.owns = not gmsh.isInitialized()
        if self.owns:
            gmsh.initialize(readConfigFiles=False, interruptible=False)
        options = {**_OPTIONS, "Mesh.MeshSizeMin": h_min, "Mesh.MeshSizeMax": h_max}
        for key, value in options.items():
            self.saved[key] = gmsh.option.getNumber(key)
            gmsh.option.setNumber(key, value)
        self.model = f"continuum-{next(_model_counter)}"
        gmsh.model.add(self.model)

    def close(self) -> None:
        if not gmsh.isInitialized():
            return
        if self.model is not None:
            gmsh.model.setCurrent(self.model)
            gmsh.model.remove()
        for key, value in self.saved.items():
            gmsh.option.setNumber(key, value)
        if self.owns:
            gmsh.finalize()


def _check_arguments(
    outer: Shape,
    hole: Shape | None,
    notch: Shape | None,
    focus_radius: float,
    h_min: float,
    h_max: float,
    growth: float,
) -> None:
    """Raise :class:`GeometryError` for the inconsistent arguments of :func:`graded_mesh`."""
    if outer.dim not in (2, 3):
        raise GeometryError(f"outer shape must be 2D or 3D, got {outer!r}")
    if hole is not None:
        check_hole_inside(outer, hole)
    elif notch is not None:
        raise GeometryError("a notch needs a hole to start from")
    if not (0.0 < h_min <= h_max) or not np.isfinite(h_max):
        raise GeometryError(f"need 0 < h_min <= h_max, got h_min={h_min}, h_max={h_max}")
    if focus_radius < 0.0 or growth <= 0.0:
        raise GeometryError(f"need focus_radius >= 0 and growth > 0, got {focus_radius}, {growth}")


def graded_mesh(
    *,
    comm: MPI.Comm,
    outer: Shape,
    hole: Shape | None = None,
    focus_radius: float,
    h_min: float,
    h_max: float,
    growth: float = 0.25,
    center: tuple[float, ...] | np.ndarray | None = None,
    notch: Shape | None = None,
) -> MeshData:
    """Mesh ``outer`` minus ``hole`` with elements graded away from the atomistic core.

    Args:
        comm: communicator the mesh is distributed over; gmsh runs on its rank 0 only.
        outer: outer shape (:class:`~continuum.geometry.Disk`/``Rectangle`` in 2D,
            ``Ball``/``Box`` in 3D).
        hole: optional shape of the same dimension removed from the domain (the atomistic
            core); its boundary facets get ``inner_tag = 2``.
        focus_radius: radius in Å within which the element size is ``h_min``.
        h_min: smallest element size in Å.
        h_max: largest element size in Å.
        growth: slope ``dh/dd`` of the size beyond ``focus_radius`` (dimensionless).
        center: focus point ``(2,)`` or ``(3,)`` in Å; the hole's centroid by default, else the
            outer shape's.
        notch: a shape removed with the hole (needs one), e.g. a thin
            :class:`~continuum.geometry.Rectangle` from inside the hole to beyond the outer
            boundary: a crack's faces. Its boundary facets get ``inner_tag`` (free).

    Returns:
        The distributed mesh with facet tags (``outer_tag = 1``, ``inner_tag = 2`` or
        ``None``).

    Raises:
        GeometryError: inconsistent shapes or sizes.
        MeshError: gmsh failed (the message is gmsh's, raised on every rank).
    """
    _check_arguments(outer, hole, notch, focus_radius, h_min, h_max, growth)
    dim = outer.dim
    if center is None:
        focus = (hole if hole is not None else outer).centroid
    else:
        c = np.asarray(center, dtype=np.float64).reshape(-1)
        if c.shape[0] not in (dim, 3):
            raise GeometryError(f"center must have {dim} components, got {center!r}")
        focus = np.concatenate([c, np.zeros(3 - c.shape[0])])
    size = _size_field(focus, focus_radius=focus_radius, h_min=h_min, h_max=h_max, growth=growth)

    session = _GmshSession() if comm.rank == 0 else None
    error = None
    if session is not None:
        try:
            session.open(h_min=h_min, h_max=h_max)
            _build_model(outer=outer, hole=hole, size=size, notch=notch)
        except Exception as exc:  # gmsh raises plain Exceptions; re-raised on every rank
            error = f"{type(exc).__name__}: {exc}"
    try:
        error = comm.bcast(error, root=0)
        if error is not None:
            raise MeshError(f"gmsh could not mesh outer={outer!r}, hole={hole!r}: {error}")
        # dolfinx registers create_cell_partitioner(mode, max_links) with
        # functools.singledispatch; mypy sees only create_cell_partitioner(part, mode, max_links)
        partitioner = create_cell_partitioner(GhostMode.shared_facet, 2)  # type: ignore[call-arg]
        data = dolfinx_gmsh.model_to_mesh(
            gmsh.model if comm.rank == 0 else None, comm, 0, gdim=dim, partitioner=partitioner
        )
    finally:
        if session is not None:
            session.close()
    if data.facet_tags is None:  # pragma: no cover - the model always has facet groups
        raise MeshError(f"gmsh gave no facet markers for outer={outer!r}, hole={hole!r}")
    inner_tag = INNER_TAG if hole is not None else None
    return MeshData(mesh=data.mesh, facet_tags=data.facet_tags, inner_tag=inner_tag, dim=dim)
