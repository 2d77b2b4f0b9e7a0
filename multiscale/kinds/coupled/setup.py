"""A coupled case turned into numbers: ``"auto"`` keys resolved, checks that need the potential.

:func:`resolve_setup` is shared by ``multiscale run``, ``multiscale reference`` and
``multiscale check``, so a case that checks clean runs the same problem in all three.

=========================  =========================================================
``"auto"`` key             value
=========================  =========================================================
``lattice.a = "relax"``    ``argmin_a E/N`` of the perfect crystal (Cauchy–Born polish)
``handshake_width``        ``2 r_cut`` (DESIGN.md §2: ``w ≥ 2 r_cut``)
``pad_width``              ``r_cut``: every atom with ``β > 0`` sees a full neighbourhood
``h_min``                  ``r_nn``, the nearest-neighbour distance
``h_max``                  ``5 h_min``
``coupling.kappa``         ``μ_V r_nn``: ``μ_V`` the Voigt average shear modulus of the
                           Cauchy–Born elastic constants, ``[(C11+C22+C33) − (C12+C13+C23)
                           + 3(C44+C55+C66)]/15`` in eV/Å³ (rotation invariant), times the
                           nearest-neighbour distance: the stiffness of one bond-length
                           spring of the lattice, in eV/Å²
=========================  =========================================================

Checks (one-line :class:`~multiscale.errors.CaseError` naming the key): the orientation is
orthogonal and right-handed; ``pad_width ≥ r_cut``; ``h_min ≤ h_max``; a void lies at least
``2 r_cut`` inside the core (``core_radius − defect.radius ≥ 2 r_cut``), so that the atoms
whose forces the void changes see no blending and the ghost-force correction leaves their
forces alone; the atoms (``core + handshake + pad``) fit inside the outer domain with an
element of room (``h_min``).

``r_cut`` is the potential's range, :func:`atomistic.potentials.protocol.interaction_range`:
its cutoff, or for a message-passing potential (MACE) its receptive field ``layers × cutoff``, since a
site energy there depends on atoms that far away. Neighbour lists keep the cutoff.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from multiscale.config import Case
from multiscale.config.schema import toml_value
from multiscale.errors import CaseError

__all__ = ["CoupledSetup", "DislocationSetup", "lattice_plane_spacings", "resolve_setup"]

#: ``coupling.correction_passes = "auto"`` with a dislocation: at most this many solves per
#: load step (cases/edge-dislocation-cu: cores 60-160 Å in a 300 Å disk, and 40 Å in an 80 Å
#: disk, reach a change below 1e-3 eV/Å after 5-6 passes; 40 Å in the 200 Å disk of the case
#: as written does not contract and keeps its first pass).
AUTO_DISLOCATION_PASSES = 8


@dataclass(frozen=True, kw_only=True)
class DislocationSetup:
    """A straight dislocation along ``z`` and its anisotropic linear-elastic (Stroh) field.

    Attributes:
        burgers: ``(3,)`` Burgers vector in the lab frame, Å (FS/RH, line ``+z``).
        center: ``(2,)`` position of the line, Å.
        C66: ``(6, 6)`` Cauchy–Born elastic constants of the lattice in the lab frame, eV/Å³.
        plane_spacing: spacing of the lattice planes normal to ``y`` (the glide planes), Å.

    The field's branch cut is the half-plane ``y = center_y, x < center_x`` (the slip plane
    of an edge dislocation with ``b ∥ x``): the displacement jumps there by ``b``, a lattice
    vector, so the atoms see a perfect crystal across it.
    """

    burgers: np.ndarray
    center: np.ndarray
    C66: np.ndarray
    plane_spacing: float

    def displacement(self, X: np.ndarray) -> np.ndarray:
        """``(n, 3)`` Volterra displacement at ``X`` ``(n, 3)``, Å."""
        from continuum.elastic_fields import dislocation_displacement

        X = np.asarray(X, dtype=float).reshape(-1, 3)
        return dislocation_displacement(
            C66=self.C66, burgers=self.burgers, points=X[:, :2], center=self.center
        )

    def gradient(self, X: np.ndarray) -> np.ndarray:
        """``(n, 3, 3)`` displacement gradient ``∂u_i/∂X_j`` at ``X`` ``(n, 3)``."""
        from continuum.elastic_fields import dislocation_displacement_gradient

        X = np.asarray(X, dtype=float).reshape(-1, 3)
        return dislocation_displacement_gradient(
            C66=self.C66, burgers=self.burgers, points=X[:, :2], center=self.center
        )

    def crossing(self, Xi: np.ndarray, Xj: np.ndarray) -> np.ndarray:
        """``(m,)`` +1 where the bond ``i → j`` crosses the branch cut upwards, −1 downwards.

        The Volterra field is higher above the cut by ``b``, so ``u_j − u_i`` of such a bond
        carries ``s b`` that is not strain (``jump``).
        """
        yi = np.asarray(Xi, dtype=float)[:, 1] - self.center[1]
        yj = np.asarray(Xj, dtype=float)[:, 1] - self.center[1]
        xi = np.asarray(Xi, dtype=float)[:, 0] - self.center[0]
        xj = np.asarray(Xj, dtype=float)[:, 0] - self.center[0]
        crosses = (yi < 0) != (yj < 0)
        t = np.divide(-yi, yj - yi, out=np.zeros_like(yi), where=crosses)
        x_cut = xi + t * (xj - xi)
        s = np.where(yj > yi, 1.0, -1.0)
        return np.where(crosses & (x_cut < 0.0), s, 0.0)

    def jump(self, Xi: np.ndarray, Xj: np.ndarray) -> np.ndarray:
        """``(m, 3)`` displacement jump ``s b`` of bonds ``i → j`` across the branch cut."""
        return self.crossing(Xi, Xj)[:, None] * self.burgers[None, :]


@dataclass(frozen=True, kw_only=True)
class CoupledSetup:
    """Every number of a coupled problem, ``"auto"`` values resolved.

    Attributes:
        dimension: ``"3d"`` or ``"2.5d"``.
        structure, element: the lattice.
        a: lattice constant in Å.
        orientation: ``(3, 3)`` Miller rows, or None (hcp).
        period: slab thickness along ``z`` in Å (2.5d: the lattice period; 3d: None).
        cutoff: the potential's range ``r_cut`` in Å: its cutoff, or for a message-passing
            potential its receptive field (:func:`atomistic.potentials.protocol.interaction_range`).
        r_nn: nearest-neighbour distance in Å.
        outer: ``"box"``, ``"ball"``, ``"rectangle"`` or ``"disk"``.
        half_size: ``(3,)`` half edge lengths of a box or rectangle (``z``: inf in 2.5d).
        radius: radius of a ball or disk in Å.
        core_radius, handshake_width, pad_width: handshake geometry in Å.
        h_min, h_max, growth: mesh grading.
        void_radius: void radius in Å, or None.
        dislocation: the dislocation of ``defect.kind = "dislocation"``, or None.
        strain: ``(3, 3)`` ``F − I``.
        steps: load steps.
        kappa: penalty in eV/Å².
        shear_modulus: ``μ_V`` in eV/Å³.
        ghost_force_correction: whether the correction is on.
        correction_passes: solves per load step (the correction recomputed between them).
        correction_tolerance: stop the passes once the correction changes less (eV/Å).
        potential: the potential object; potential_file: its file.
        device: torch device name.
        hessian_dtype: ``"float64"`` or ``"float32"``, the atoms' Hessian-vector products.
        law: the Cauchy–Born law (``law(F) -> (W, P, A)``).
        notes: dotted key → how an ``"auto"`` value was resolved (for case.resolved.toml).
    """

    dimension: str
    structure: str
    element: str
    a: float
    orientation: np.ndarray | None
    period: float | None
    cutoff: float
    r_nn: float
    outer: str
    half_size: np.ndarray | None
    radius: float | None
    core_radius: float
    handshake_width: float
    pad_width: float
    h_min: float
    h_max: float
    growth: float
    void_radius: float | None
    strain: np.ndarray
    steps: int
    kappa: float
    shear_modulus: float
    ghost_force_correction: bool
    potential: Any
    potential_file: Path
    device: str
    law: Any
    hessian_dtype: str = "float64"
    correction_passes: int = 1
    correction_tolerance: float = 1e-3
    dislocation: DislocationSetup | None = None
    notes: dict[str, str] = field(default_factory=dict)

    @property
    def F(self) -> np.ndarray:
        """The far-field deformation gradient ``I + strain``."""
        return np.eye(3) + self.strain

    @property
    def atom_radius(self) -> float:
        """``core + handshake + pad``: how far from the origin atoms are needed (Å)."""
        return self.core_radius + self.handshake_width + self.pad_width

    @property
    def inradius(self) -> float:
        """Distance from the origin to the nearest point of the outer boundary (Å)."""
        if self.half_size is not None:
            return float(np.min(self.half_size))
        assert self.radius is not None
        return self.radius

    def load_factor(self, step: int) -> float:
        """``k / steps``."""
        return step / self.steps

    def deformation(self, step: int) -> np.ndarray:
        """``F_k = I + (k/steps)(F − I)``."""
        return np.eye(3) + self.load_factor(step) * self.strain

    def inside(self, X: np.ndarray, *, grow: float = 0.0, tol: float = 1e-6) -> np.ndarray:
        """``(n,)`` True for points inside the outer domain grown by ``grow`` Å.

        Points within ``tol`` of the boundary count as outside (they are held, as the FE
        boundary nodes are).
        """
        X = np.asarray(X, dtype=float).reshape(-1, 3)
        if self.half_size is not None:
            reach = self.half_size + grow - tol
            return np.all(np.abs(X) < reach, axis=1)
        assert self.radius is not None
        k = 3 if self.outer == "ball" else 2
        return np.linalg.norm(X[:, :k], axis=1) < self.radius + grow - tol

    def problem_key(self) -> dict[str, Any]:
        """What defines the problem's solution; a reference is reused only if this matches."""
        return {
            "dimension": self.dimension,
            "structure": self.structure,
            "element": self.element,
            "a": round(self.a, 10),
            "orientation": None if self.orientation is None else self.orientation.tolist(),
            "potential": self.potential_file.name,
            "outer": self.outer,
            "half_size": None
            if self.half_size is None
            else [float(v) for v in self.half_size[: 3 if self.dimension == "3d" else 2]],
            "radius": self.radius,
            "void_radius": self.void_radius,
            "dislocation": None
            if self.dislocation is None
            else {
                "burgers": [round(float(v), 10) for v in self.dislocation.burgers],
                "center": [round(float(v), 10) for v in self.dislocation.center],
            },
            "strain": self.strain.tolist(),
        }

    def boundary_displacement(self, step: int) -> Any:
        """``X (n, 3) -> u (n, 3)`` on the outer boundary at load step ``step``.

        ``(F_k − I) X``, plus the dislocation's Volterra field when there is one.
        """
        D = self.deformation(step) - np.eye(3)
        disl = self.dislocation

        def u(X: np.ndarray) -> np.ndarray:
            X = np.asarray(X, dtype=float).reshape(-1, 3)
            return X @ D.T + (0.0 if disl is None else disl.displacement(X))

        return u


def _lattice_constant(case: Case, potential: Any, calculator: Any, comm: Any) -> tuple[float, dict]:
    from atomistic.equilibrium import equilibrium_lattice_constant

    lattice = case.config.lattice
    assert lattice is not None
    if lattice.a != "relax":
        return float(lattice.a), {}
    a = None
    if comm is None or comm.rank == 0:
        a = equilibrium_lattice_constant(
            structure=lattice.structure,
            element=lattice.element,
            potential=potential,
            calculator=calculator,
        )
    if comm is not None:
        a = comm.bcast(a, root=0)  # every rank builds the same lattice and law
    return a, {"lattice.a": f"relaxed: {a:.10f} Å"}


def _unit_cell(case: Case, a: float) -> tuple[Any, np.ndarray | None]:
    from atomistic.lattice import LatticeError, unit_cell

    lattice = case.config.lattice
    assert lattice is not None
    rows = np.asarray(lattice.orientation, dtype=int)
    default = np.array_equal(rows, np.eye(3, dtype=int))
    where = case.where("lattice.orientation")
    if lattice.structure == "hcp":
        if not default:
            raise CaseError(f"{where}: lattice.orientation must be the default for hcp")
        rows = None
    try:
        cell = unit_cell(lattice.structure, element=lattice.element, a=a, orientation=rows)
    except LatticeError as err:
        given = toml_value(lattice.orientation)
        raise CaseError(f"{where}: lattice.orientation = {given}: {err}") from None
    return cell, rows


def _slab_period(case: Case, a: float, rows: np.ndarray | None) -> float:
    from atomistic.lattice import crystal

    lattice = case.config.lattice
    assert lattice is not None
    block = crystal(lattice.structure, element=lattice.element, a=a, orientation=rows)
    return float(block.cell.lengths()[2])


def _dislocation(
    case: Case, a: float, cell: Any, rows: np.ndarray | None, law: Any, rc: float, notes: dict
) -> DislocationSetup | None:
    """Resolve ``[defect]`` of kind ``dislocation`` (Burgers vector, centre, elastic field)."""
    from atomistic.cauchy_born import EV_PER_A3_TO_GPA

    defect, geo = case.config.defect, case.config.geometry
    assert defect is not None and geo is not None
    if defect.kind != "dislocation":
        return None
    if rows is None:
        raise CaseError(
            f'{case.where("defect.kind")}: defect.kind = "dislocation" needs a cubic lattice '
            "(defect.burgers is given along the cubic axes)"
        )
    axes = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    b = axes @ (a * np.asarray(defect.burgers, dtype=float))
    frac = np.linalg.solve(np.asarray(cell.cell).T, b)
    if np.max(np.abs(frac - np.round(frac))) > 1e-6:
        raise CaseError(
            f"{case.where('defect.burgers')}: defect.burgers = {toml_value(defect.burgers)} is "
            f"not a lattice vector of {case.config.lattice.structure} (in units of the primitive "
            f"cell: {np.round(frac, 4).tolist()}); the cut would leave a fault"
        )
    lattice = case.config.lattice
    spacing = lattice_plane_spacings(lattice.structure, lattice.element, a, rows)
    if defect.center is None:
        center = 0.5 * spacing[:2]
        notes["defect.center"] = (
            "between the planes and columns nearest the origin = "
            f"[{center[0]:.6g}, {center[1]:.6g}]"
        )
    else:
        center = np.asarray(defect.center, dtype=float)
    if np.linalg.norm(center) > geo.core_radius - 2 * rc:
        raise CaseError(
            f"{case.where('defect.center')}: defect.center = {toml_value(center.tolist())} is "
            f"within 2 r_cut = {2 * rc:.3f} Å of the handshake at geometry.core_radius = "
            f"{geo.core_radius:g} Å"
        )
    C66 = np.asarray(law.elastic_constants(relaxed=True), dtype=float) / EV_PER_A3_TO_GPA
    return DislocationSetup(burgers=b, center=center, C66=C66, plane_spacing=float(spacing[1]))


def lattice_plane_spacings(
    structure: str, element: str, a: float, orientation: np.ndarray | None
) -> np.ndarray:
    """``(3,)`` spacing (Å) of the lattice planes normal to x, y, z: the smallest positive
    coordinate of a site along each axis (a site sits at the origin)."""
    from atomistic.lattice import crystal

    block = crystal(structure, element=element, a=a, orientation=orientation)
    out = np.empty(3)
    for k in range(3):
        L = float(block.cell.lengths()[k])
        x = np.mod(block.positions[:, k] - block.positions[0, k], L)
        x = x[(x > 1e-6) & (x < L - 1e-6)]
        out[k] = x.min() if len(x) else L
    return out


def _correction_passes(cfg: Any, dislocation: bool, notes: dict) -> int:
    value = cfg.coupling.correction_passes
    if value != "auto":
        return int(value)
    if not cfg.coupling.ghost_force_correction or not dislocation:
        notes["coupling.correction_passes"] = "auto = 1 (no dislocation, or no correction)"
        return 1
    notes["coupling.correction_passes"] = (
        f"auto = {AUTO_DISLOCATION_PASSES} (a dislocation: the correction is recomputed at "
        "the solution until it changes by less than coupling.correction_tolerance)"
    )
    return AUTO_DISLOCATION_PASSES


def _auto(value: float | str, default: float, key: str, how: str, notes: dict) -> float:
    if value == "auto":
        notes[key] = f"{how} = {default:.6g}"
        return float(default)
    return float(value)


def _voigt_shear_modulus(C: np.ndarray) -> float:
    """``μ_V`` of a 6×6 Voigt matrix (same unit as ``C``)."""
    d = np.diag(C)
    return float((d[:3].sum() - (C[0, 1] + C[0, 2] + C[1, 2]) + 3.0 * d[3:].sum()) / 15.0)


def resolve_setup(case: Case, *, comm: Any = None) -> CoupledSetup:
    """Load the potential, resolve ``"auto"`` keys and check what needs the potential.

    Args:
        case: a loaded ``coupled`` case.
        comm: MPI communicator; the relaxed lattice constant is computed on its rank 0 and
            broadcast. None: serial.

    Raises:
        CaseError: bad potential file, element, device or orientation, or geometry that
            cannot work (see the module docstring); the message names the key.
    """
    from atomistic.calculator import Calculator
    from atomistic.cauchy_born import EV_PER_A3_TO_GPA, CauchyBorn
    from atomistic.equilibrium import NEAREST_NEIGHBOUR_FACTOR
    from atomistic.potentials.protocol import interaction_range
    from multiscale.kinds.shared import load_potential
    from multiscale.kinds.vacancy import torch_device

    cfg = case.config
    lattice, geo, defect = cfg.lattice, cfg.geometry, cfg.defect
    assert lattice is not None and geo is not None and defect is not None
    assert cfg.run is not None and cfg.coupling is not None and cfg.boundary is not None
    assert cfg.loading is not None
    dimension = cfg.case.dimension  # type: ignore[union-attr]
    potential, path = load_potential(case)
    device = torch_device(cfg.run.device)
    notes: dict[str, str] = {"run.device": f"used: {device}"}
    a, more = _lattice_constant(case, potential, Calculator(potential, device=device), comm)
    notes.update(more)
    cell, rows = _unit_cell(case, a)
    law = CauchyBorn(potential, cell, device=device)
    rc = interaction_range(potential)  # message passing: layers x cutoff
    r_nn = float(NEAREST_NEIGHBOUR_FACTOR[lattice.structure] * a)

    width = _auto(geo.handshake_width, 2 * rc, "geometry.handshake_width", "2 r_cut", notes)
    pad = _auto(geo.pad_width, rc, "geometry.pad_width", "r_cut", notes)
    h_min = _auto(geo.h_min, r_nn, "geometry.h_min", "r_nn", notes)
    h_max = _auto(geo.h_max, 5 * h_min, "geometry.h_max", "5 h_min", notes)
    mu = _voigt_shear_modulus(law.elastic_constants()) / EV_PER_A3_TO_GPA
    kappa = _auto(cfg.coupling.kappa, mu * r_nn, "coupling.kappa", "mu_V r_nn", notes)

    if pad < rc:
        raise CaseError(
            f"{case.where('geometry.pad_width')}: geometry.pad_width = {pad:g} Å is less than "
            f"the potential's range r_cut = {rc:.4f} Å; blended atoms would miss neighbours"
        )
    if h_min > h_max:
        raise CaseError(
            f"{case.where('geometry.h_max')}: geometry.h_max = {h_max:g} Å is below "
            f"geometry.h_min = {h_min:g} Å"
        )
    void = defect.radius if defect.kind == "void" else None
    if void is not None and geo.core_radius - void < 2 * rc:
        key = (
            "geometry.core_radius"
            if case.origins.get("geometry.core_radius") == "--set"
            else "defect.radius"
        )
        raise CaseError(
            f"{case.where(key)}: defect.radius = {void:g} Å is within 2 r_cut = {2 * rc:.3f} Å "
            f"of the handshake at geometry.core_radius = {geo.core_radius:g} Å; need "
            f"defect.radius <= {geo.core_radius - 2 * rc:.3f} Å or geometry.core_radius >= "
            f"{void + 2 * rc:.3f} Å"
        )
    dislocation = _dislocation(case, a, cell, rows, law, rc, notes)
    half = None
    if geo.size is not None:
        half = np.full(3, np.inf)
        half[: len(geo.size)] = 0.5 * np.asarray(geo.size, dtype=float)
    setup = CoupledSetup(
        dimension=dimension,
        structure=lattice.structure,
        element=lattice.element,
        a=a,
        orientation=rows,
        period=_slab_period(case, a, rows) if dimension == "2.5d" else None,
        cutoff=rc,
        r_nn=r_nn,
        outer=geo.outer,
        half_size=half,
        radius=geo.radius,
        core_radius=geo.core_radius,
        handshake_width=width,
        pad_width=pad,
        h_min=h_min,
        h_max=h_max,
        growth=geo.growth,
        void_radius=void,
        strain=np.asarray(cfg.boundary.strain, dtype=float),
        steps=cfg.loading.steps,
        kappa=kappa,
        shear_modulus=mu,
        ghost_force_correction=cfg.coupling.ghost_force_correction,
        correction_passes=_correction_passes(cfg, dislocation is not None, notes),
        correction_tolerance=cfg.coupling.correction_tolerance,
        potential=potential,
        potential_file=path,
        device=device,
        law=law,
        hessian_dtype=cfg.solver.hessian_precision,
        dislocation=dislocation,
        notes=notes,
    )
    need = setup.atom_radius + h_min
    if setup.inradius < need:
        key = "geometry.size" if half is not None else "geometry.radius"
        what = "half of the smallest edge" if half is not None else "radius"
        raise CaseError(
            f"{case.where(key)}: {key}: the outer {geo.outer}'s {what} is {setup.inradius:g} Å, "
            f"but the atoms reach {setup.atom_radius:.3f} Å (core {geo.core_radius:g} + "
            f"handshake {width:.3f} + pad {pad:.3f}) and need one element (h_min {h_min:.3f} "
            f"Å) beyond; make it at least {need:.3f} Å"
        )
    return setup
