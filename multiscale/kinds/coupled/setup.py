"""A coupled case turned into objects: ``"auto"`` keys resolved, checks that need the potential.

:func:`resolve_setup` is shared by ``multiscale run``, ``multiscale reference`` and
``multiscale check``, so a case that checks clean runs the same problem in all three. It
builds, once, everything the drivers use: the lattice, the potential with its Cauchy–Born
law, the outer domain, the :class:`~coupling.handshake.Handshake`, the mesh sizes, the defect
(a void radius or a :class:`~coupling.dislocation.VolterraDislocation`), the loading, the
coupling constants, the :class:`~coupling.solver.SolverOptions` and the reference's options.

=========================  =========================================================
``"auto"`` key             value
=========================  =========================================================
``lattice.a = "relax"``    ``argmin_a E/N`` of the perfect crystal (Cauchy–Born polish)
``handshake_width``        ``2 r_cut`` (``w ≥ 2 r_cut``)
``pad_width``              ``r_cut``: every atom with ``β > 0`` sees a full neighbourhood
``h_min``                  ``r_nn``, the nearest-neighbour distance
``h_max``                  ``5 h_min``
``coupling.kappa``         ``μ_V r_nn``: ``μ_V`` the Voigt average shear modulus of the
                           Cauchy–Born elastic constants, ``[(C11+C22+C33) − (C12+C13+C23)
                           + 3(C44+C55+C66)]/15`` in eV/Å³ (rotation invariant), times the
                           nearest-neighbour distance: the stiffness of one bond-length
                           spring of the lattice, in eV/Å²
``correction_passes``      with a dislocation or a crack :data:`AUTO_DISLOCATION_PASSES`,
                           else 1
``reference.fmax``         ``"solver"``: ``solver.fmax``
``reference.engine``       ``"lammps"`` where LAMMPS has the potential's pair style (EAM,
                           Stillinger–Weber), else ``"torch"``
=========================  =========================================================

Checks (one-line :class:`~multiscale.errors.CaseError` naming the key): the orientation is
orthogonal and right-handed; ``pad_width ≥ r_cut``; ``h_min ≤ h_max``; a void lies at least
``2 r_cut`` inside the core (``core_radius − defect.radius ≥ 2 r_cut``), so that the atoms
whose forces the void changes see no blending and the ghost-force correction leaves their
forces alone; the atoms (``core + handshake + pad``) fit inside the outer domain with an
element of room (``h_min``); ``reference.engine = "lammps"`` only with a potential LAMMPS has
(:func:`atomistic.mlip.oracles.lammps_equivalent`).

``r_cut`` is the potential's range (:func:`atomistic.potentials.interaction_range`): its
cutoff, or for a message-passing potential (MACE) its receptive field ``layers × cutoff``,
since a site energy there depends on atoms that far away. Neighbour lists keep the cutoff.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from coupling.crack import CrackTip
from coupling.dislocation import VolterraDislocation
from coupling.fields import Background
from coupling.handshake import Handshake
from coupling.passes import CorrectionPasses
from coupling.solver import SolverOptions
from multiscale.config import Case
from multiscale.config.schema import toml_value
from multiscale.errors import CaseError
from multiscale.resources import Estimate

__all__ = [
    "AUTO_DISLOCATION_PASSES",
    "CouplingSetup",
    "CoupledSetup",
    "Domain",
    "LatticeSetup",
    "Loading",
    "MeshSizes",
    "PotentialSetup",
    "ReferenceOptions",
    "resolve_setup",
]

#: ``coupling.correction_passes = "auto"`` with a dislocation: at most this many solves per
#: load step. Where the passes contract they settle within it; where they do not, the first
#: pass is kept (``coupling.passes.solve_with_passes``).
AUTO_DISLOCATION_PASSES = 8


@dataclass(frozen=True, kw_only=True)
class LatticeSetup:
    """The perfect crystal.

    Attributes:
        structure, element: the lattice.
        a: lattice constant in Å.
        orientation: ``(3, 3)`` Miller rows of x, y, z, or None (hcp).
        period: slab thickness along ``z`` in Å (2.5d: the lattice period; 3d: None).
        r_nn: nearest-neighbour distance in Å.
        cell: the unit cell (ASE ``Atoms``) in the lab frame.
    """

    structure: str
    element: str
    a: float
    orientation: np.ndarray | None
    period: float | None
    r_nn: float
    cell: Any


@dataclass(frozen=True, kw_only=True)
class PotentialSetup:
    """The potential, shared by the atoms and the continuum.

    Attributes:
        module: the potential (site energies from a graph).
        file: its file.
        cutoff: its cutoff in Å (neighbour lists).
        range: how far a site energy reaches, Å (``r_cut`` of the geometry).
        device: the torch device of atoms and Cauchy–Born.
        law: the Cauchy–Born law ``law(F) -> (W, P, A)`` of the same potential.
    """

    module: torch.nn.Module
    file: Path
    cutoff: float
    range: float
    device: torch.device
    law: Any


@dataclass(frozen=True, kw_only=True)
class Domain:
    """The outer domain, centred on the origin.

    Attributes:
        outer: ``"box"``, ``"ball"``, ``"rectangle"`` or ``"disk"``.
        half_size: ``(3,)`` half edge lengths in Å of a box or rectangle (``inf`` along
            ``z`` in 2.5d), or None.
        radius: radius in Å of a ball or disk, or None.
    """

    outer: str
    half_size: np.ndarray | None
    radius: float | None

    @property
    def inradius(self) -> float:
        """Distance from the origin to the nearest point of the outer boundary (Å)."""
        if self.half_size is not None:
            return float(np.min(self.half_size))
        assert self.radius is not None
        return self.radius

    def inside(self, X: np.ndarray, *, grow: float = 0.0, tol: float = 1e-6) -> np.ndarray:
        """``(n,)`` True for points inside the domain grown by ``grow`` Å.

        Points within ``tol`` of the boundary count as outside (they are held, as the FE
        boundary nodes are).
        """
        X = np.asarray(X, dtype=float).reshape(-1, 3)
        if self.half_size is not None:
            return np.all(np.abs(X) < self.half_size + grow - tol, axis=1)
        assert self.radius is not None
        k = 3 if self.outer == "ball" else 2
        return np.linalg.norm(X[:, :k], axis=1) < self.radius + grow - tol


@dataclass(frozen=True, kw_only=True)
class MeshSizes:
    """Element sizes of the graded mesh (Å).

    ``h_min`` up to the atoms, growing with slope ``growth`` beyond them, at most ``h_max``.
    """

    h_min: float
    h_max: float
    growth: float


@dataclass(frozen=True, kw_only=True)
class Loading:
    """Quasi-static load steps ``F_k = I + (k/steps)(F − I)``, ``K_k = K_0 + (k/steps)(K − K_0)``.

    A load ``k`` may be fractional: a step cut in two solves ``k − 1/2`` first.

    Attributes:
        strain: ``(3, 3)`` far-field ``F − I``.
        steps: number of load steps.
        max_cuts: how often a load step that does not converge may be cut in two.
        k_i: a crack's ``K_I`` at the last step, eV/Å^2.5 (0 without a crack).
        k_i_start: ``K_0``, the load before the first step, eV/Å^2.5.
    """

    strain: np.ndarray
    steps: int
    max_cuts: int = 0
    k_i: float = 0.0
    k_i_start: float = 0.0

    def stress_intensity(self, step: float) -> float:
        """``K_k`` in eV/Å^2.5 (``K_0`` at ``step = 0``)."""
        return self.k_i_start + self.factor(step) * (self.k_i - self.k_i_start)

    @property
    def F(self) -> np.ndarray:
        """The far-field deformation gradient ``I + strain``."""
        return np.eye(3) + self.strain

    def factor(self, step: float) -> float:
        """``k / steps``."""
        return step / self.steps

    def deformation(self, step: float) -> np.ndarray:
        """``F_k``."""
        return np.eye(3) + self.factor(step) * self.strain


@dataclass(frozen=True, kw_only=True)
class CouplingSetup:
    """How atoms and continuum are joined.

    Attributes:
        kappa: handshake penalty in eV/Å².
        shear_modulus: ``μ_V`` in eV/Å³ (the scale of the default ``kappa``).
        ghost_force_correction: whether the ghost forces are corrected.
        passes: correction passes per load step and their tolerance.
        hessian_dtype: torch dtype of the atoms' Hessian-vector products.
    """

    kappa: float
    shear_modulus: float
    ghost_force_correction: bool
    passes: CorrectionPasses
    hessian_dtype: torch.dtype


@dataclass(frozen=True, kw_only=True)
class ReferenceOptions:
    """The fully atomistic reference's relaxation.

    Attributes:
        fmax: tolerance on the largest free-atom force, eV/Å (``"solver"`` resolved).
        method: ``"lbfgs"`` or ``"fire"``.
        max_steps: budget of force evaluations per load step.
        engine: ``"torch"`` or ``"lammps"`` (``"auto"`` resolved).
    """

    fmax: float
    method: str
    max_steps: int
    engine: str


@dataclass(frozen=True, kw_only=True)
class CoupledSetup:
    """Everything a coupled case needs, ``"auto"`` values resolved.

    Attributes:
        dimension: ``"3d"`` or ``"2.5d"``.
        lattice: the perfect crystal.
        potential: the potential and its Cauchy–Born law.
        domain: the outer domain.
        handshake: the core, handshake and pad geometry.
        mesh: element sizes.
        void_radius: radius in Å of a void (None: no void).
        dislocation: the dislocation and its Volterra field (None: none).
        crack: the crack and its K field at the last load step (None: none).
        loading: the load steps.
        coupling: penalty, ghost-force correction, Hessian precision.
        solver: the Newton–Krylov options.
        reference: the reference's options.
        notes: dotted key → how an ``"auto"`` value was resolved (for case.resolved.toml).
    """

    dimension: str
    lattice: LatticeSetup
    potential: PotentialSetup
    domain: Domain
    handshake: Handshake
    mesh: MeshSizes
    void_radius: float | None
    dislocation: VolterraDislocation | None
    loading: Loading
    coupling: CouplingSetup
    solver: SolverOptions
    reference: ReferenceOptions
    notes: dict[str, str] = field(default_factory=dict)
    crack: CrackTip | None = None

    def problem_key(self) -> dict[str, Any]:
        """What defines the problem's solution; a reference is reused only if this matches."""
        lat, dom = self.lattice, self.domain
        k = 3 if self.dimension == "3d" else 2
        disl = self.dislocation
        return {
            "dimension": self.dimension,
            "structure": lat.structure,
            "element": lat.element,
            "a": round(lat.a, 10),
            "orientation": None if lat.orientation is None else lat.orientation.tolist(),
            "potential": self.potential.file.name,
            "outer": dom.outer,
            "half_size": None if dom.half_size is None else [float(v) for v in dom.half_size[:k]],
            "radius": dom.radius,
            "void_radius": self.void_radius,
            "dislocation": None
            if disl is None
            else {
                "burgers": [round(float(v), 10) for v in disl.burgers],
                "center": [round(float(v), 10) for v in disl.center],
            },
            "strain": self.loading.strain.tolist(),
            **(
                {}
                if self.crack is None
                else {
                    "crack": {
                        "tip": [round(float(v), 10) for v in self.crack.tip],
                        "k_i": round(self.loading.k_i, 10),
                        "k_i_start": round(self.loading.k_i_start, 10),
                        "steps": self.loading.steps,
                    }
                }
            ),
        }

    def background(self, step: float) -> Background | None:
        """The background field the FE unknown corrects at load step ``step``, or None.

        A dislocation's Volterra field (the same at every step), or a crack's K field under
        ``K_step`` (:meth:`Loading.stress_intensity`).
        """
        if self.dislocation is not None:
            d = self.dislocation
            return Background(displacement=d.displacement, gradient=d.gradient)
        if self.crack is not None:
            c = self.crack.at(self.loading.stress_intensity(step))
            return Background(displacement=c.displacement, gradient=c.gradient)
        return None

    def boundary_displacement(self, step: float) -> Callable[[np.ndarray], np.ndarray]:
        """``X (n, 3) -> u (n, 3)`` on the outer boundary at load step ``step``.

        ``(F_k − I) X``, plus the dislocation's Volterra field or the crack's K field under
        ``K_k`` when there is one.
        """
        D = self.loading.deformation(step) - np.eye(3)
        background = self.background(step)

        def u(X: np.ndarray) -> np.ndarray:
            X = np.asarray(X, dtype=float).reshape(-1, 3)
            return X @ D.T + (0.0 if background is None else background.displacement(X))

        return u


def _unit_cell(case: Case, a: float) -> tuple[Any, np.ndarray | None]:
    from atomistic.lattice import LatticeError, unit_cell

    lattice = case.config.lattice
    assert lattice is not None
    rows: np.ndarray | None = np.asarray(lattice.orientation, dtype=int)
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


def _lattice(case: Case, a: float) -> LatticeSetup:
    from atomistic.equilibrium import nearest_neighbour_distance
    from atomistic.lattice import crystal

    lattice = case.config.lattice
    assert lattice is not None
    cell, rows = _unit_cell(case, a)
    period = None
    if case.config.case.dimension == "2.5d":  # type: ignore[union-attr]
        block = crystal(lattice.structure, element=lattice.element, a=a, orientation=rows)
        period = float(block.cell.lengths()[2])
    return LatticeSetup(
        structure=lattice.structure,
        element=lattice.element,
        a=a,
        orientation=rows,
        period=period,
        r_nn=nearest_neighbour_distance(lattice.structure, a),
        cell=cell,
    )


def _potential(case: Case, comm: Any, notes: dict[str, str]) -> tuple[PotentialSetup, LatticeSetup]:
    """The potential, its device, the lattice it relaxes and their Cauchy–Born law."""
    from atomistic.cauchy_born import CauchyBorn
    from atomistic.potentials import interaction_range
    from multiscale.kinds.shared import case_device, case_lattice_constant, load_case_potential
    from multiscale.resources import check_neighbours, log_density

    potential, path = load_case_potential(case)
    device = case_device(case)
    notes["run.device"] = f"used: {device}"
    a = case_lattice_constant(case, potential, device=device, comm=comm)
    if case.config.lattice.a == "relax":  # type: ignore[union-attr]
        notes["lattice.a"] = f"relaxed: {a:.10f} Å"
    else:  # before any lattice is built: a = 1e-300 would put every atom on every other
        check_neighbours(
            log_density=log_density(case.config.lattice.structure, a),  # type: ignore[union-attr]
            cutoff=float(potential.cutoff),
            where=case.where("lattice.a"),
            key="lattice.a",
            value=toml_value(a),
        )
    lattice = _lattice(case, a)
    setup = PotentialSetup(
        module=potential,
        file=path,
        cutoff=float(potential.cutoff),
        range=interaction_range(potential),  # message passing: layers x cutoff
        device=device,
        law=CauchyBorn(potential, lattice.cell, device=device),
    )
    return setup, lattice


def _auto(value: float | str, default: float, key: str, how: str, notes: dict) -> float:
    if value == "auto":
        notes[key] = f"{how} = {default:.6g}"
        return float(default)
    return float(value)


def _handshake(case: Case, dimension: str, rc: float, notes: dict) -> Handshake:
    geo = case.config.geometry
    assert geo is not None
    width = _auto(geo.handshake_width, 2 * rc, "geometry.handshake_width", "2 r_cut", notes)
    pad = _auto(geo.pad_width, rc, "geometry.pad_width", "r_cut", notes)
    if pad < rc:
        raise CaseError(
            f"{case.where('geometry.pad_width')}: geometry.pad_width = {pad:g} Å is less than "
            f"the potential's range r_cut = {rc:.4f} Å; blended atoms would miss neighbours"
        )
    return Handshake(
        shape="sphere" if dimension == "3d" else "cylinder",
        center=(0.0, 0.0, 0.0),
        core_radius=geo.core_radius,
        width=width,
        pad_width=pad,
    )


def _mesh_sizes(case: Case, r_nn: float, notes: dict) -> MeshSizes:
    geo = case.config.geometry
    assert geo is not None
    h_min = _auto(geo.h_min, r_nn, "geometry.h_min", "r_nn", notes)
    h_max = _auto(geo.h_max, 5 * h_min, "geometry.h_max", "5 h_min", notes)
    if h_min > h_max:
        raise CaseError(
            f"{case.where('geometry.h_max')}: geometry.h_max = {h_max:g} Å is below "
            f"geometry.h_min = {h_min:g} Å"
        )
    return MeshSizes(h_min=h_min, h_max=h_max, growth=geo.growth)


def _void_radius(case: Case, rc: float) -> float | None:
    defect, geo = case.config.defect, case.config.geometry
    assert defect is not None and geo is not None
    if defect.kind != "void":
        return None
    void = defect.radius
    assert void is not None
    if geo.core_radius - void < 2 * rc:
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
    return void


def _dislocation(
    case: Case, lattice: LatticeSetup, law: Any, rc: float, notes: dict
) -> VolterraDislocation | None:
    """Resolve ``[defect]`` of kind ``dislocation`` (Burgers vector, centre, elastic field)."""
    from atomistic.cauchy_born import EV_PER_A3_TO_GPA
    from atomistic.equilibrium import lattice_plane_spacings
    from coupling.dislocation import NotALatticeVectorError, lab_burgers_vector

    defect = case.config.defect
    assert defect is not None
    if defect.kind != "dislocation":
        return None
    rows = lattice.orientation
    if rows is None:
        raise CaseError(
            f'{case.where("defect.kind")}: defect.kind = "dislocation" needs a cubic lattice '
            "(defect.burgers is given along the cubic axes)"
        )
    try:
        b = lab_burgers_vector(
            np.asarray(defect.burgers, dtype=float),
            a=lattice.a,
            orientation=rows,
            cell=np.asarray(lattice.cell.cell),
        )
    except NotALatticeVectorError as err:
        raise CaseError(
            f"{case.where('defect.burgers')}: defect.burgers = {toml_value(defect.burgers)} is "
            f"not a lattice vector of {lattice.structure} (in units of the primitive cell: "
            f"{np.round(err.fractional, 4).tolist()}); the cut would leave a fault"
        ) from None
    spacing = lattice_plane_spacings(lattice.structure, lattice.element, lattice.a, rows)
    center = _line_center(case, spacing, rc, notes, what="the dislocation")
    C66 = np.asarray(law.elastic_constants(relaxed=True), dtype=float) / EV_PER_A3_TO_GPA
    return VolterraDislocation(burgers=b, center=center, C66=C66, plane_spacing=float(spacing[1]))


def _line_center(
    case: Case, spacing: np.ndarray, rc: float, notes: dict, *, what: str
) -> np.ndarray:
    """``defect.center`` of a dislocation line or crack front, checked against the core.

    Unset: midway between the lattice planes and atomic columns nearest the origin.
    """
    defect, geo = case.config.defect, case.config.geometry
    assert defect is not None and geo is not None
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
            f"{case.where('defect.center')}: defect.center = {toml_value(center.tolist())} "
            f"puts {what} within 2 r_cut = {2 * rc:.3f} Å of the handshake at "
            f"geometry.core_radius = {geo.core_radius:g} Å"
        )
    return center


def _crack(case: Case, lattice: LatticeSetup, law: Any, rc: float, notes: dict) -> CrackTip | None:
    """Resolve ``[defect]`` of kind ``crack`` (its tip and K field, at the last load step)."""
    from atomistic.cauchy_born import EV_PER_A3_TO_GPA
    from atomistic.equilibrium import lattice_plane_spacings
    from continuum.elastic_fields import MPA_SQRT_M_TO_EV_PER_A2_5

    defect, boundary = case.config.defect, case.config.boundary
    assert defect is not None and boundary is not None
    if defect.kind != "crack":
        return None
    rows = lattice.orientation
    if rows is None:
        raise CaseError(
            f'{case.where("defect.kind")}: defect.kind = "crack" needs a cubic lattice '
            "(lattice.orientation names the crack plane and front)"
        )
    spacing = lattice_plane_spacings(lattice.structure, lattice.element, lattice.a, rows)
    center = _line_center(case, spacing, rc, notes, what="the crack tip")
    assert boundary.k_i is not None
    C66 = np.asarray(law.elastic_constants(relaxed=True), dtype=float) / EV_PER_A3_TO_GPA
    return CrackTip(
        tip=center,
        C66=C66,
        K_I=boundary.k_i * MPA_SQRT_M_TO_EV_PER_A2_5,
        plane_spacing=float(spacing[1]),
    )


def _voigt_shear_modulus(C: np.ndarray) -> float:
    """``μ_V`` of a 6×6 Voigt matrix (same unit as ``C``)."""
    d = np.diag(C)
    return float((d[:3].sum() - (C[0, 1] + C[0, 2] + C[1, 2]) + 3.0 * d[3:].sum()) / 15.0)


def _coupling(case: Case, law: Any, r_nn: float, dislocation: bool, notes: dict) -> CouplingSetup:
    """Penalty, correction and passes; ``dislocation``: a dislocation or a crack (passes)."""
    from atomistic.cauchy_born import EV_PER_A3_TO_GPA

    cfg = case.config
    assert cfg.coupling is not None and cfg.solver is not None
    mu = _voigt_shear_modulus(law.elastic_constants()) / EV_PER_A3_TO_GPA
    kappa = _auto(cfg.coupling.kappa, mu * r_nn, "coupling.kappa", "mu_V r_nn", notes)
    passes = cfg.coupling.correction_passes
    if passes == "auto":
        passes = 1
        if not cfg.coupling.ghost_force_correction or not dislocation:
            notes["coupling.correction_passes"] = (
                "auto = 1 (no dislocation or crack, or no correction)"
            )
        else:
            passes = AUTO_DISLOCATION_PASSES
            notes["coupling.correction_passes"] = (
                f"auto = {passes} (a dislocation or a crack: the correction is recomputed at the "
                "solution until it changes by less than coupling.correction_tolerance)"
            )
    return CouplingSetup(
        kappa=kappa,
        shear_modulus=mu,
        ghost_force_correction=cfg.coupling.ghost_force_correction,
        passes=CorrectionPasses(passes=int(passes), tolerance=cfg.coupling.correction_tolerance),
        hessian_dtype=getattr(torch, cfg.solver.hessian_precision),
    )


def _domain(case: Case) -> Domain:
    geo = case.config.geometry
    assert geo is not None
    half = None
    if geo.size is not None:
        half = np.full(3, np.inf)
        half[: len(geo.size)] = 0.5 * np.asarray(geo.size, dtype=float)
    return Domain(outer=geo.outer, half_size=half, radius=geo.radius)


def _reference_engine(case: Case, potential: PotentialSetup, notes: dict) -> str:
    """``reference.engine``: ``"auto"`` is LAMMPS where it has the potential's pair style."""
    from atomistic.mlip.oracles import lammps_equivalent

    engine = case.config.reference.engine  # type: ignore[union-attr]
    if engine == "torch":
        return engine
    try:
        lammps = lammps_equivalent(potential.module, potential.file)
    except ValueError as err:
        if engine == "auto":
            notes["reference.engine"] = "auto = torch (LAMMPS lacks the potential)"
            return "torch"
        kind = case.config.potential.kind  # type: ignore[union-attr]
        raise CaseError(
            f'{case.where("reference.engine")}: reference.engine = "lammps" cannot relax '
            f'potential.kind = {toml_value(kind)} ({err}); allowed: "torch"'
        ) from None
    if engine == "auto":
        notes["reference.engine"] = f"auto = lammps (pair_style {lammps.pair_style})"
    return "lammps"


def _options(
    case: Case, potential: PotentialSetup, notes: dict
) -> tuple[SolverOptions, ReferenceOptions]:
    cfg = case.config
    solver, ref = cfg.solver, cfg.reference
    assert solver is not None and ref is not None
    options = SolverOptions(
        fmax=solver.fmax,
        max_iterations=solver.max_iterations,
        linear_solver=solver.linear_solver,
        tangent_tolerance=solver.tangent_tolerance,
        linear_far_field=solver.linear_far_field,
    )
    fmax = solver.fmax if ref.fmax == "solver" else float(ref.fmax)
    if ref.fmax == "solver":
        notes["reference.fmax"] = f"solver.fmax = {fmax:g}"
    engine = _reference_engine(case, potential, notes)
    return options, ReferenceOptions(
        fmax=fmax, method=ref.method, max_steps=ref.max_steps, engine=engine
    )


def _check_fit(case: Case, setup: CoupledSetup) -> None:
    """The atoms (core + handshake + pad) and one element must fit inside the domain."""
    hs, dom, h_min = setup.handshake, setup.domain, setup.mesh.h_min
    need = hs.reach + h_min
    if dom.inradius < need:
        key = "geometry.size" if dom.half_size is not None else "geometry.radius"
        what = "half of the smallest edge" if dom.half_size is not None else "radius"
        raise CaseError(
            f"{case.where(key)}: {key}: the outer {dom.outer}'s {what} is {dom.inradius:g} Å, "
            f"but the atoms reach {hs.reach:.3f} Å (core {hs.core_radius:g} + "
            f"handshake {hs.width:.3f} + pad {hs.pad_width:.3f}) and need one element (h_min "
            f"{h_min:.3f} Å) beyond; make it at least {need:.3f} Å"
        )


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
    cfg = case.config
    assert cfg.boundary is not None and cfg.loading is not None
    dimension = cfg.case.dimension  # type: ignore[union-attr]
    notes: dict[str, str] = {}
    potential, lattice = _potential(case, comm, notes)
    rc = potential.range
    handshake = _handshake(case, dimension, rc, notes)
    mesh = _mesh_sizes(case, lattice.r_nn, notes)
    void = _void_radius(case, rc)
    dislocation = _dislocation(case, lattice, potential.law, rc, notes)
    crack = _crack(case, lattice, potential.law, rc, notes)
    solver, reference = _options(case, potential, notes)
    from continuum.elastic_fields import MPA_SQRT_M_TO_EV_PER_A2_5 as K_UNIT

    loading = Loading(
        strain=np.asarray(cfg.boundary.strain, dtype=float),
        steps=cfg.loading.steps,
        max_cuts=cfg.loading.max_cuts,
        k_i=0.0 if cfg.boundary.k_i is None else cfg.boundary.k_i * K_UNIT,
        k_i_start=cfg.boundary.k_i_start * K_UNIT,
    )
    setup = CoupledSetup(
        dimension=dimension,
        lattice=lattice,
        potential=potential,
        domain=_domain(case),
        handshake=handshake,
        mesh=mesh,
        void_radius=void,
        dislocation=dislocation,
        loading=loading,
        coupling=_coupling(
            case, potential.law, lattice.r_nn, dislocation is not None or crack is not None, notes
        ),
        solver=solver,
        reference=reference,
        notes=notes,
        crack=crack,
    )
    _check_fit(case, setup)
    check_resources(case, setup)
    return setup


def estimate(setup: CoupledSetup, *, reference: bool = False) -> Estimate:
    """Atoms, neighbour pairs and mesh elements of the coupled problem, or of its reference.

    The coupled atoms fill the ball (2.5d: the slab cylinder) to ``core + handshake + pad``;
    the reference's atoms fill the whole domain and it has no mesh; LAMMPS keeps far less
    per neighbour pair than the torch engine (:mod:`multiscale.resources` gives the formulas).
    """
    from multiscale.resources import (
        BYTES_PER_PAIR,
        BYTES_PER_PAIR_LAMMPS,
        Estimate,
        log_density,
        log_neighbours,
        mesh_elements,
    )

    lattice, hs, dom, mesh = setup.lattice, setup.handshake, setup.domain, setup.mesh
    three = setup.dimension == "3d"
    if dom.half_size is not None:
        edges = (2.0 * dom.half_size)[: 3 if three else 2]
        log_domain = sum(math.log10(e) for e in edges)
    else:
        assert dom.radius is not None
        r = dom.radius
        log_domain = (
            math.log10(4.0 / 3.0 * math.pi) + 3 * math.log10(r)
            if three
            else (math.log10(math.pi) + 2 * math.log10(r))
        )
    rho = log_density(lattice.structure, lattice.a)
    depth = 0.0 if three else math.log10(lattice.period or lattice.a)  # the slab's thickness
    if reference:
        log_atoms = rho + log_domain + depth
    else:
        log_ball = (
            math.log10(4.0 / 3.0 * math.pi) + 3 * math.log10(hs.reach)
            if three
            else math.log10(math.pi) + 2 * math.log10(hs.reach)
        )
        log_atoms = rho + log_ball + depth
    log_pairs = log_atoms + log_neighbours(log_density=rho, cutoff=setup.potential.cutoff)
    if reference:
        lammps = setup.reference.engine == "lammps"
        per_pair = BYTES_PER_PAIR_LAMMPS if lammps else BYTES_PER_PAIR
        return Estimate(log_atoms=log_atoms, log_pairs=log_pairs, bytes_per_pair=per_pair)
    elements = mesh_elements(
        dimension=setup.dimension,
        hole=hs.core_radius,
        reach=hs.reach,
        inradius=dom.inradius,
        log_domain=log_domain,
        h_min=mesh.h_min,
        h_max=mesh.h_max,
        growth=mesh.growth,
    )
    return Estimate(log_atoms=log_atoms, log_pairs=log_pairs, log_elements=elements)


def check_resources(case: Case, setup: CoupledSetup, *, reference: bool = False) -> None:
    """Refuse a case whose estimate (:func:`estimate`) exceeds the machine's memory.

    The key blamed is ``geometry.h_min`` (when given) or the outer size when the mesh needs
    most of the memory, else ``geometry.core_radius`` (the reference: the outer size).

    Raises:
        CaseError: naming the key, the estimate and the machine's memory.
    """
    from multiscale.resources import check_estimate

    geo = case.config.geometry
    assert geo is not None
    need = estimate(setup, reference=reference)
    outer = "geometry.size" if geo.size is not None else "geometry.radius"
    if reference:
        key = outer
    elif need.mesh_dominates:
        key = "geometry.h_min" if case.origins.get("geometry.h_min") != "default" else outer
    else:
        key = "geometry.core_radius"
    value = getattr(geo, key.split(".")[1])
    check_estimate(
        need,
        where=case.where(key),
        key=key,
        value=toml_value(value),
        what="the fully atomistic reference" if reference else "the coupled problem",
    )
