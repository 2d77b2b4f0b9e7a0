"""The sections of a ``coupled`` case: atoms near the defect, Cauchy–Born continuum elsewhere.

The atomistic region is centred on the origin, which is a lattice site; so are the void and
the outer domain. All lengths are in Å. Keys whose default is ``"auto"`` are resolved from the
potential and the lattice when the case runs (:mod:`multiscale.kinds.coupled.setup`), and the value
used is written next to them in ``case.resolved.toml``.

==================================  ===============================  ==========================
key                                 allowed                          default
==================================  ===============================  ==========================
``case.kind``                       ``"coupled"``                    required
``case.dimension``                  ``"3d"``, ``"2.5d"``             ``"3d"``
``lattice.structure``               fcc, bcc, diamond, hcp           required
``lattice.element``                 symbol in the potential file     required
``lattice.a``                       Å, or ``"relax"``                ``"relax"``
``lattice.orientation``             Miller rows for x, y, z          cubic axes
``potential.kind``, ``.file``       as for every kind                ``"eam"``, required
``geometry.outer``                  3d: box, ball; 2.5d: rectangle,  required
                                    disk (centred on the origin)
``geometry.size``                   box ``[Lx, Ly, Lz]``,            box, rectangle only
                                    rectangle ``[Lx, Ly]`` (Å)
``geometry.radius``                 ball or disk radius (Å)          ball, disk only
``geometry.core_radius``            R (Å), β = 1 inside              required
``geometry.handshake_width``        w (Å) or ``"auto"``              ``2·r_cut``
``geometry.pad_width``              Å (≥ r_cut) or ``"auto"``        ``r_cut``
``geometry.h_min``                  Å or ``"auto"``                  ``r_nn``
``geometry.h_max``                  Å or ``"auto"``                  ``5·h_min``
``geometry.growth``                 dh/dr                            ``0.25``
``defect.kind``                     ``"none"``, ``"void"``,          ``"none"``
                                    ``"dislocation"`` (2.5d)
``defect.radius``                   void radius (Å)                  void only
``defect.burgers``                  units of a, cubic axes           dislocation only
``defect.center``                   ``[x, y]`` (Å)                   between planes near 0
``boundary.kind``                   ``"homogeneous"``,               ``"homogeneous"``
                                    ``"dislocation"``
``boundary.strain``                 F − I, 3 rows of 3               zeros
``loading.steps``                   ≥ 1                              ``1``
``coupling.kappa``                  eV/Å² or ``"auto"``              ``μ_V·r_nn``
``coupling.ghost_force_correction`` true, false                      ``true``
``coupling.correction_passes``      ≥ 1 or ``"auto"``; > 1 needs     ``"auto"``: 8 with a
                                    a dislocation                    dislocation, else 1
``coupling.correction_tolerance``   eV/Å                             ``1e-3``
``solver.fmax``                     eV/Å                             ``1e-6``
``solver.max_iterations``           Newton steps per load step       ``100``
``solver.linear_solver``            auto, gamg, mumps                ``"auto"``
``solver.tangent_tolerance``        ≥ 0, largest entry of ΔF         ``1e-2``
``solver.hessian_precision``        float32, float64                 ``"float32"``
``reference.fmax``                  eV/Å or ``"solver"``             ``solver.fmax``
``reference.method``                ``"lbfgs"``, ``"fire"``          ``"lbfgs"``
``reference.max_steps``             evaluations per load step        ``20000``
``run.device``                      auto, cpu, cuda                  ``"auto"``
``output.directory``                relative to the case folder      ``"output"``
==================================  ===============================  ==========================

``r_cut`` is the potential's range (its cutoff; for MACE ``layers × cutoff``), ``r_nn`` the
nearest-neighbour distance of the lattice and ``μ_V`` the Voigt average shear modulus of the
Cauchy–Born elastic constants. Checks that need the potential (the void at least ``2·r_cut``
inside the core, the atoms inside the outer domain) are made by
:func:`multiscale.kinds.coupled.setup.resolve_setup`, also by ``multiscale check``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from multiscale.config.schema import Context, option, toml_value
from multiscale.config.sections import (
    all_positive,
    at_least_one,
    lattice_names,
    non_negative,
    positive,
)

__all__ = [
    "BoundarySection",
    "CoupledCaseSection",
    "CoupledLatticeSection",
    "CouplingSection",
    "DefectSection",
    "GeometrySection",
    "LoadingSection",
    "OUTER_SHAPES",
    "ReferenceSection",
    "SolverSection",
    "check_coupled",
]

Vector3 = tuple[float, float, float]
Miller = tuple[int, int, int]

#: ``case.dimension`` → allowed ``geometry.outer`` shapes.
OUTER_SHAPES = {"3d": ("box", "ball"), "2.5d": ("rectangle", "disk")}


@dataclass(frozen=True, kw_only=True)
class CoupledCaseSection:
    """``[case]`` of a coupled problem."""

    kind: Literal["coupled"] = option(doc="coupled: atoms near the defect, continuum elsewhere")
    dimension: Literal["3d", "2.5d"] = option(
        "3d",
        doc="3d: 3D mesh and a ball of atoms; 2.5d: 2D mesh (u has 3 components) and a "
        "cylinder of atoms, periodic along z with the lattice period",
    )


@dataclass(frozen=True, kw_only=True)
class CoupledLatticeSection:
    """``[lattice]``: the perfect crystal that fills the domain."""

    structure: str = option(doc="lattice name", choices=lattice_names)
    element: str = option(doc="chemical symbol, as named in the potential file")
    a: float | Literal["relax"] = option(
        "relax",
        unit="Å",
        check=positive,
        doc='lattice constant; "relax" minimises the energy per atom under the potential',
    )
    orientation: tuple[Miller, Miller, Miller] = option(
        ((1, 0, 0), (0, 1, 0), (0, 0, 1)),
        doc="Miller indices of the crystal directions along x, y, z (orthogonal, right-handed)",
    )


@dataclass(frozen=True, kw_only=True)
class GeometrySection:
    """``[geometry]``: the outer domain, the atomistic core and its handshake, the mesh."""

    outer: Literal["box", "ball", "rectangle", "disk"] = option(
        doc="outer domain centred on the origin; 3d: box or ball, 2.5d: rectangle or disk"
    )
    size: tuple[float, ...] | None = option(
        None,
        unit="Å",
        check=all_positive,
        doc="edge lengths: [Lx, Ly, Lz] for a box, [Lx, Ly] for a rectangle",
    )
    radius: float | None = option(
        None, unit="Å", check=positive, doc="radius of a ball or disk outer domain"
    )
    core_radius: float = option(
        unit="Å", check=positive, doc="radius R of the fully atomistic core (beta = 1)"
    )
    handshake_width: float | Literal["auto"] = option(
        "auto", unit="Å", check=positive, doc='width w of the blended shell; "auto": 2 r_cut'
    )
    pad_width: float | Literal["auto"] = option(
        "auto",
        unit="Å",
        check=positive,
        doc='width of the pad of atoms slaved to the continuum, >= r_cut; "auto": r_cut',
    )
    h_min: float | Literal["auto"] = option(
        "auto",
        unit="Å",
        check=positive,
        doc='element size near the atoms; "auto": the nearest-neighbour distance',
    )
    h_max: float | Literal["auto"] = option(
        "auto", unit="Å", check=positive, doc='largest element size; "auto": 5 h_min'
    )
    growth: float = option(
        0.25, check=positive, doc="slope dh/dr of the element size beyond the atoms"
    )


@dataclass(frozen=True, kw_only=True)
class DefectSection:
    """``[defect]``: what is taken out of (or cut into) the perfect lattice near the origin."""

    kind: Literal["none", "void", "dislocation"] = option(
        "none",
        doc="none: perfect crystal; void: remove the sites within defect.radius; "
        "dislocation (2.5d): a straight dislocation along z with Burgers vector defect.burgers",
    )
    radius: float | None = option(
        None,
        unit="Å",
        check=positive,
        doc="void radius (a ball in 3d, a cylinder along z in 2.5d); void only",
    )
    burgers: Vector3 | None = option(
        None,
        doc="dislocation only: Burgers vector in units of a along the cubic crystal axes, "
        "e.g. [0.5, 0.5, 0.0] for a/2[110]; must be a lattice vector",
    )
    center: tuple[float, float] | None = option(
        None,
        unit="Å",
        doc="dislocation only: [x, y] of the line; default: between the two lattice planes "
        "normal to y nearest the origin and between two atomic columns along x",
    )


def _finite_rows(rows: tuple[Vector3, Vector3, Vector3]) -> str | None:
    if not np.all(np.isfinite(np.asarray(rows, dtype=float))):
        return "entries must be finite"
    return None


@dataclass(frozen=True, kw_only=True)
class BoundarySection:
    """``[boundary]``: the displacement imposed on the outer boundary."""

    kind: Literal["homogeneous", "dislocation"] = option(
        "homogeneous",
        doc="homogeneous: u = (F - I) X on the outer boundary; dislocation: u = (F - I) X plus "
        "the anisotropic linear-elastic (Stroh) field of the defect's dislocation",
    )
    strain: tuple[Vector3, Vector3, Vector3] = option(
        ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0), (0.0, 0.0, 0.0)),
        check=_finite_rows,
        doc="displacement gradient F - I, rows i, columns j = du_i/dX_j; 2.5d: third column 0",
    )


@dataclass(frozen=True, kw_only=True)
class LoadingSection:
    """``[loading]``: quasi-static load steps."""

    steps: int = option(
        1,
        check=at_least_one,
        doc="load steps F_k = I + (k/steps)(F - I); each starts from the previous solution",
    )


def _passes(value: int | str) -> str | None:
    if isinstance(value, int) and value < 1:
        return 'must be >= 1 or "auto"'
    return None


@dataclass(frozen=True, kw_only=True)
class CouplingSection:
    """``[coupling]``: how atoms and continuum are joined."""

    kappa: float | Literal["auto"] = option(
        "auto",
        unit="eV/Å²",
        check=positive,
        doc='handshake penalty; "auto": Voigt shear modulus x nearest-neighbour distance',
    )
    ghost_force_correction: bool = option(
        True, doc="subtract the ghost forces of the homogeneous predictor (patch test exact)"
    )
    correction_passes: int | Literal["auto"] = option(
        "auto",
        check=_passes,
        doc="solves per load step; each pass after the first recomputes the ghost-force "
        "correction at the previous solution (dislocations only)",
    )
    correction_tolerance: float = option(
        1e-3,
        unit="eV/Å",
        check=positive,
        doc="stop the passes once the correction changes by less than this on every atom and node",
    )


@dataclass(frozen=True, kw_only=True)
class SolverSection:
    """``[solver]``: the monolithic Newton–Krylov minimisation."""

    fmax: float = option(
        1e-6,
        unit="eV/Å",
        check=positive,
        doc="tolerance on the max atom force and the max FE nodal residual",
    )
    max_iterations: int = option(100, check=at_least_one, doc="Newton iterations per load step")
    linear_solver: Literal["auto", "gamg", "mumps"] = option(
        "auto",
        doc='preconditioner of the Newton-CG steps: "gamg" (algebraic multigrid), "mumps" '
        '(exact LU), "auto": gamg in 3d, mumps in 2.5d',
    )
    tangent_tolerance: float = option(
        1e-2,
        check=non_negative,
        doc="the Cauchy-Born tangent of a cell is recomputed once its F moved by more than "
        "this (largest entry); 0: exact tangent at every Newton step",
    )
    hessian_precision: Literal["float32", "float64"] = option(
        "float32",
        doc="precision of the atoms' Hessian-vector products, which only steer the Krylov "
        "solver (energy and forces stay float64)",
    )


@dataclass(frozen=True, kw_only=True)
class ReferenceSection:
    """``[reference]``: the fully atomistic reference (``multiscale reference``)."""

    fmax: float | Literal["solver"] = option(
        "solver",
        unit="eV/Å",
        check=positive,
        doc='tolerance on the max free-atom force; "solver": the same as solver.fmax',
    )
    method: Literal["lbfgs", "fire"] = option("lbfgs", doc="minimiser")
    max_steps: int = option(
        20000, check=at_least_one, doc="budget of force evaluations per load step"
    )


def _check_geometry(geometry: GeometrySection, dimension: str, ctx: Context) -> None:
    shapes = OUTER_SHAPES[dimension]
    if geometry.outer not in shapes:
        ctx.fail(
            "geometry.outer",
            f"geometry.outer = {toml_value(geometry.outer)} is not allowed with case.dimension "
            f"= {toml_value(dimension)}; allowed: {' or '.join(map(toml_value, shapes))}",
        )
    if geometry.outer in ("box", "rectangle"):
        n = 3 if geometry.outer == "box" else 2
        if geometry.radius is not None:
            ctx.fail(
                "geometry.radius",
                f"geometry.radius is for a ball or disk; a {geometry.outer} takes geometry.size",
            )
        if geometry.size is None or len(geometry.size) != n:
            got = "nothing" if geometry.size is None else toml_value(geometry.size)
            ctx.fail(
                "geometry.size",
                f"geometry.size must be {n} edge lengths in Å for geometry.outer = "
                f"{toml_value(geometry.outer)}, got {got}",
            )
    else:
        if geometry.size is not None:
            ctx.fail(
                "geometry.size",
                f"geometry.size is for a box or rectangle; a {geometry.outer} takes "
                "geometry.radius",
            )
        if geometry.radius is None:
            ctx.fail(
                "geometry.radius",
                f"missing key 'geometry.radius' (radius in Å of the {geometry.outer})",
            )


def _check_defect(defect: DefectSection, dimension: str, ctx: Context) -> None:
    if defect.kind == "void" and defect.radius is None:
        ctx.fail("defect.radius", "missing key 'defect.radius' (void radius in Å)")
    if defect.kind != "void" and defect.radius is not None:
        ctx.fail("defect.radius", 'defect.radius is only used with defect.kind = "void"')
    if defect.kind != "dislocation":
        for key in ("burgers", "center"):
            if getattr(defect, key) is not None:
                ctx.fail(
                    f"defect.{key}", f'defect.{key} is only used with defect.kind = "dislocation"'
                )
        return
    if dimension != "2.5d":
        ctx.fail(
            "defect.kind",
            'defect.kind = "dislocation" needs case.dimension = "2.5d" (a straight line along '
            f"z), got {toml_value(dimension)}",
        )
    if defect.burgers is None:
        ctx.fail(
            "defect.burgers",
            "missing key 'defect.burgers' (Burgers vector in units of a along the cubic axes, "
            "e.g. [0.5, 0.5, 0.0])",
        )
    b = np.asarray(defect.burgers, dtype=float)
    if not np.all(np.isfinite(b)) or np.linalg.norm(b) == 0.0:
        ctx.fail("defect.burgers", "defect.burgers must be finite and non-zero")
    if defect.center is not None and not np.all(np.isfinite(defect.center)):
        ctx.fail("defect.center", "defect.center must be two finite numbers [x, y] in Å")


def check_coupled(sections: dict, ctx: Context) -> None:
    """Checks across the keys of a coupled case that need no potential.

    Args:
        sections: section name → built section (``case``, ``geometry``, ...).
        ctx: the file and ``--set`` bookkeeping, for messages.

    Raises:
        CaseError: a shape that does not match the dimension, a size or radius that is missing
            or not used, a void without a radius (or a radius without a void), a strain with a
            non-zero third column in 2.5d, or ``det F <= 0``.
    """
    dimension = sections["case"].dimension
    _check_geometry(sections["geometry"], dimension, ctx)
    defect = sections["defect"]
    _check_defect(defect, dimension, ctx)
    boundary_kind = sections["boundary"].kind
    if (boundary_kind == "dislocation") != (defect.kind == "dislocation"):
        if boundary_kind == "dislocation":
            ctx.fail(
                "boundary.kind",
                'boundary.kind = "dislocation" needs defect.kind = "dislocation" (the field '
                f"of which dislocation?), got defect.kind = {toml_value(defect.kind)}",
            )
        ctx.fail(
            "boundary.kind",
            'defect.kind = "dislocation" needs boundary.kind = "dislocation" (its Volterra '
            f"field on the outer boundary), got boundary.kind = {toml_value(boundary_kind)}",
        )
    coupling = sections["coupling"]
    passes = coupling.correction_passes
    if passes != "auto" and passes > 1 and defect.kind != "dislocation":
        ctx.fail(
            "coupling.correction_passes",
            'coupling.correction_passes > 1 needs defect.kind = "dislocation" (the correction '
            "is recomputed on the defect's full lattice, which a void lacks), got "
            f"{coupling.correction_passes} with defect.kind = {toml_value(defect.kind)}",
        )
    if passes != "auto" and passes > 1 and not coupling.ghost_force_correction:
        ctx.fail(
            "coupling.correction_passes",
            "coupling.correction_passes > 1 needs coupling.ghost_force_correction = true, got "
            f"{coupling.correction_passes}",
        )
    strain = np.asarray(sections["boundary"].strain, dtype=float)
    if dimension == "2.5d" and np.any(strain[:, 2] != 0.0):
        ctx.fail(
            "boundary.strain",
            "boundary.strain must have a zero third column in 2.5d (F = I + [du/dx, du/dy, 0]), "
            f"got column {toml_value(strain[:, 2].tolist())}",
        )
    if np.linalg.det(np.eye(3) + strain) <= 0.0:
        ctx.fail("boundary.strain", "boundary.strain must give det(I + strain) > 0")
