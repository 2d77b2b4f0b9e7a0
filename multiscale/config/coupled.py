"""The sections of a ``coupled`` case: atoms near the defect, Cauchy–Born continuum elsewhere.

The atomistic region is centred on the origin, which is a lattice site; so are the void and
the outer domain. All lengths are in Å. Keys whose default is ``"auto"`` are resolved from the
potential and the lattice when the case runs (:mod:`multiscale.kinds.coupled.setup`), and the
value used is written next to them in ``case.resolved.toml``.

Each key is documented once, by its :func:`~multiscale.config.schema.option` declaration
below; the table of keys in ``docs/case-coupled.md`` is generated from these declarations
(``python -m multiscale.config.tables``). In the docs, ``r_cut`` is the potential's range (its
cutoff; for MACE ``layers × cutoff``), ``r_nn`` the nearest-neighbour distance of the lattice
and ``μ_V`` the Voigt average shear modulus of the Cauchy–Born elastic constants.

Checks across keys that need no potential are made here (:func:`check_coupled`); those that
need it (the void at least ``2·r_cut`` inside the core, the atoms inside the outer domain)
by :func:`multiscale.kinds.coupled.setup.resolve_setup`, also run by ``multiscale check``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from multiscale.config.schema import Context, option, toml_value
from multiscale.config.sections import (
    CrystalSection,
    all_positive,
    at_least_one,
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
    "STRETCH_LIMITS",
    "SolverSection",
    "check_coupled",
]

#: Smallest and largest principal stretch of ``F = I + boundary.strain``: beyond them no
#: potential is meant to be used, and the neighbour lists of the deformed lattice blow up.
STRETCH_LIMITS = (0.5, 2.0)

Vector3 = tuple[float, float, float]
Miller = tuple[int, int, int]

#: ``case.dimension`` → allowed ``geometry.outer`` shapes.
OUTER_SHAPES = {"3d": ("box", "ball"), "2.5d": ("rectangle", "disk")}


@dataclass(frozen=True, kw_only=True)
class CoupledCaseSection:
    """``[case]`` of a coupled problem."""

    kind: Literal["coupled"] = option(
        doc="what to compute; `coupled`: atoms near the defect, a Cauchy–Born continuum of the "
        "same potential elsewhere, joined by a blended handshake"
    )
    dimension: Literal["3d", "2.5d"] = option(
        "3d",
        doc='`"3d"`: 3D tetrahedral mesh, a ball of atoms. `"2.5d"`: 2D triangle mesh carrying '
        "a 3-component displacement, `F = I + [∂u/∂x, ∂u/∂y, 0]` (plane strain and "
        "anti-plane), a cylinder of atoms in a slab periodic along `z` with the lattice period",
    )


@dataclass(frozen=True, kw_only=True)
class CoupledLatticeSection(CrystalSection):
    """``[lattice]``: the perfect crystal that fills the domain, and its orientation."""

    orientation: tuple[Miller, Miller, Miller] = option(
        ((1, 0, 0), (0, 1, 0), (0, 0, 1)),
        doc="Miller indices `[[h,k,l], [h,k,l], [h,k,l]]` of the crystal directions along x, "
        "y, z (orthogonal, right-handed; hcp: the default only)",
    )


@dataclass(frozen=True, kw_only=True)
class GeometrySection:
    """``[geometry]``: the outer domain, the atomistic core and its handshake, the mesh."""

    outer: Literal["box", "ball", "rectangle", "disk"] = option(
        doc='outer domain, centred on the origin: `"box"` or `"ball"` in 3d, `"rectangle"` or '
        '`"disk"` in 2.5d'
    )
    size: tuple[float, ...] | None = option(
        None,
        unit="Å",
        check=all_positive,
        doc="edge lengths of the outer domain: `[Lx, Ly, Lz]` for a box, `[Lx, Ly]` for a "
        "rectangle (box and rectangle only)",
    )
    radius: float | None = option(
        None,
        unit="Å",
        check=positive,
        doc="radius of a ball or disk outer domain (ball and disk only)",
    )
    core_radius: float = option(
        unit="Å",
        check=positive,
        doc="radius `R` of the fully atomistic core (β = 1); the mesh has a hole of this radius",
    )
    handshake_width: float | Literal["auto"] = option(
        "auto",
        unit="Å",
        check=positive,
        doc="width `w` of the blended shell around the core, in which β falls from 1 to 0 "
        "(C², smootherstep)",
        default_doc="`2 r_cut`",
    )
    pad_width: float | Literal["auto"] = option(
        "auto",
        unit="Å",
        check=positive,
        doc="width of the pad of atoms outside the handshake that are slaved to the FE field; "
        "must be ≥ `r_cut`",
        default_doc="`r_cut`",
    )
    h_min: float | Literal["auto"] = option(
        "auto",
        unit="Å",
        check=positive,
        doc="element size up to the outer edge of the atoms",
        default_doc="`r_nn`",
    )
    h_max: float | Literal["auto"] = option(
        "auto", unit="Å", check=positive, doc="largest element size", default_doc="`5 h_min`"
    )
    growth: float = option(
        0.25, check=positive, doc="slope `dh/dr` of the element size beyond the atoms"
    )


@dataclass(frozen=True, kw_only=True)
class DefectSection:
    """``[defect]``: what is taken out of (or cut into) the perfect lattice near the origin."""

    kind: Literal["none", "void", "dislocation", "crack"] = option(
        "none",
        doc='`"none"`: perfect crystal; `"void"`: the sites within `defect.radius` are removed; '
        '`"dislocation"` (2.5d only): a straight dislocation along z with Burgers vector '
        '`defect.burgers` (needs `boundary.kind = "dislocation"`); `"crack"` (2.5d only): a '
        "straight crack along z on the plane normal to y through `defect.center`, faces on "
        '`x < c_x`, opened by the mode-I K field (needs `boundary.kind = "crack"`); the '
        "mesh is cut along the faces from the atoms to the outer boundary",
    )
    radius: float | None = option(
        None,
        unit="Å",
        check=positive,
        doc="void only: the sites within this distance of the origin (in 2.5d of the z axis: "
        "a cylinder) are removed",
    )
    burgers: Vector3 | None = option(
        None,
        doc="dislocation only: Burgers vector in units of `a` along the cubic crystal axes, "
        "e.g. `[0.5, 0.5, 0.0]` for a/2[110]; converted to the lab frame with "
        "`lattice.orientation`; must be a lattice vector",
    )
    center: tuple[float, float] | None = option(
        None,
        unit="Å",
        doc="dislocation or crack only: `[x, y]` of the line, or of the crack front (the tip)",
        default_doc="midway between the two lattice planes normal to y, and the two atomic "
        "columns along x, nearest the origin",
    )


def _finite_rows(rows: tuple[Vector3, Vector3, Vector3]) -> str | None:
    if not np.all(np.isfinite(np.asarray(rows, dtype=float))):
        return "entries must be finite"
    return None


@dataclass(frozen=True, kw_only=True)
class BoundarySection:
    """``[boundary]``: the displacement imposed on the outer boundary."""

    kind: Literal["homogeneous", "dislocation", "crack"] = option(
        "homogeneous",
        doc='`"homogeneous"`: `u = (F − I) X` on the outer boundary; `"dislocation"`: '
        "`u = (F − I) X + u_d(X)`, `u_d` the anisotropic linear-elastic (Stroh) Volterra "
        "field of the defect's dislocation with the Cauchy–Born elastic constants (needs "
        '`defect.kind = "dislocation"`, and vice versa); `"crack"`: `u = (F − I) X + '
        "u_K(X)`, `u_K` the anisotropic (Stroh) mode-I near-tip field of the defect's crack "
        "under `boundary.k_i`, with the Cauchy–Born elastic constants, on the outer boundary "
        'only (the crack faces are free) (needs `defect.kind = "crack"`, and vice versa)',
    )
    strain: tuple[Vector3, Vector3, Vector3] = option(
        ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0), (0.0, 0.0, 0.0)),
        check=_finite_rows,
        doc="the displacement gradient `F − I`: row i, column j = `∂u_i/∂X_j`; in 2.5d the "
        "third column must be zero; the principal stretches of `F` must lie in [0.5, 2]",
    )
    k_i: float | None = option(
        None,
        unit="MPa√m",
        check=positive,
        doc="crack only: the mode-I stress intensity factor `K_I` of the last load step; "
        "load step k of `loading.steps` holds `K_k = K_0 + (k/steps)(K_I − K_0)`, "
        "`K_0 = boundary.k_i_start` (1 MPa√m = 0.62415 eV/Å^2.5)",
    )
    k_i_start: float = option(
        0.0,
        unit="MPa√m",
        check=non_negative,
        doc="crack only: `K_0`, the load before the first step (the atoms start on the K "
        "field of the first step, `K_1`, which opens the faces); must be below `boundary.k_i`",
    )


@dataclass(frozen=True, kw_only=True)
class LoadingSection:
    """``[loading]``: quasi-static load steps."""

    steps: int = option(
        1,
        check=at_least_one,
        doc="load steps `F_k = I + (k/steps)(F − I)`; each starts from the previous solution "
        "plus the homogeneous increment `(F_k − F_{k−1}) X`",
    )
    max_cuts: int = option(
        2,
        check=non_negative,
        doc="a load step whose solve does not converge is cut in two: the last converged "
        "state is restored and the half increment solved first (the adaptive loop runs "
        'there too with `adaptivity.load_steps = "every"`), then the other half; a half '
        "that does not converge is cut again, down to `1/2^max_cuts` of a step. "
        "`summary.json` lists every cut in `load_step_cuts`; `0`: a step that does not "
        "converge ends the run, as does one stalled at its forces' round-off "
        "(`DIVERGED_ROUNDOFF`, `solver.max_iterations`), which no cut can help",
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
        doc="handshake penalty `κ` on the difference between atom and FE displacements",
        default_doc="`μ_V r_nn`, the stiffness of a spring one bond long in the lattice's "
        "Voigt shear modulus",
    )
    ghost_force_correction: bool = option(
        True,
        doc="subtract the ghost forces of the homogeneous predictor, computed on the "
        "defect-free lattice (the patch test is then exact)",
    )
    correction_passes: int | Literal["auto"] = option(
        "auto",
        check=_passes,
        doc="solves per load step; each pass after the first recomputes the ghost-force "
        "correction at the previous solution. More than 1 needs a dislocation or a crack (the "
        "correction is recomputed on the defect's full lattice, which a void lacks)",
        default_doc="8 with a dislocation or a crack, else 1",
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
    max_iterations: int = option(
        100,
        check=at_least_one,
        doc="Newton iterations per load step; a solve whose largest force has not halved and "
        "whose energy has not fallen past round-off in 10 Newton steps stops before it "
        "(`DIVERGED_STALLED`; `DIVERGED_ROUNDOFF` when its forces are within 1000 machine "
        "epsilons of the largest it met: a `solver.fmax` below their round-off, which no "
        "load-step cut can meet, so the run ends there)",
    )
    linear_solver: Literal["auto", "gamg", "mumps"] = option(
        "auto",
        doc='preconditioner of the CG inside each Newton step: `"gamg"` (one '
        "algebraic-multigrid cycle; PETSc options with the prefix `multiscale_newton_gamg_` "
        'tune it), `"mumps"` (exact LU; under `mpiexec` each rank factorises the whole '
        "matrix, so that two runs of one command give the same numbers bit for bit), "
        '`"auto"`: gamg in 3d, mumps in 2.5d',
    )
    tangent_tolerance: float = option(
        1e-2,
        check=non_negative,
        doc="a cell's Cauchy–Born tangent is recomputed once its `F` has moved by more than "
        "this (largest entry) since; the gradient is always exact, so this changes only the "
        "Newton path, not the answer; `0`: exact tangent at every Newton step",
    )
    linear_far_field: float = option(
        0.0,
        check=non_negative,
        doc="where every entry of a cell's `F` is within this of the far field's (the load's "
        "homogeneous `F`), the Cauchy–Born law is replaced by its quadratic expansion there "
        "(the elastic constants of the same potential at that `F`: linear-elasticity "
        "enhanced coupling), which costs almost nothing per cell. It changes the model by "
        "at most `|∂A/∂F|·bound²` in those cells' stress. The cells are chosen after the "
        "first Newton step and kept; each load step in `summary.json` reports "
        "`linear_far_field` (`bound`, `cells`, `cells_total`, `max_deviation`: the largest "
        "entry of `|F − F_far|` in those cells at the solution), and the log warns when that "
        "exceeds the bound; `0`: Cauchy–Born everywhere",
    )
    hessian_precision: Literal["float32", "float64"] = option(
        "float32",
        doc="precision of the atoms' Hessian-vector products inside CG (written out for EAM "
        "and for network potentials with the compiled moment descriptor on the CPU, autograd "
        "otherwise). They only steer the Krylov solver; energies, forces and the convergence "
        "test stay float64, so the answer is the same",
    )


@dataclass(frozen=True, kw_only=True)
class ReferenceSection:
    """``[reference]``: the fully atomistic reference (``multiscale reference``)."""

    fmax: float | Literal["solver"] = option(
        "solver",
        unit="eV/Å",
        check=positive,
        doc="tolerance on the max free-atom force of `multiscale reference`",
        default_doc="`solver.fmax`",
    )
    engine: Literal["auto", "torch", "lammps"] = option(
        "auto",
        doc='what relaxes the atoms: `"torch"` (the project\'s potential and `reference.method`) '
        'or `"lammps"` (LAMMPS `minimize`, cg then FIRE, on the same potential file, for EAM '
        "and Stillinger–Weber potentials; `multiscale reference --engine`)",
        default_doc='`"lammps"` for `potential.kind = "eam"` or `"sw"`, else `"torch"`',
    )
    method: Literal["lbfgs", "fire"] = option(
        "lbfgs",
        doc="minimiser of the torch engine (and of the finish, should LAMMPS stop above "
        '`reference.fmax`): `"lbfgs"` (scipy\'s L-BFGS-B, then L-BFGS on forces alone once '
        'energy differences reach round-off) or `"fire"`',
    )
    max_steps: int = option(
        20000,
        check=at_least_one,
        doc="budget of force evaluations per load step (LAMMPS: of its iterations and of its "
        "force evaluations)",
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
    if defect.kind == "crack":
        if dimension != "2.5d":
            ctx.fail(
                "defect.kind",
                'defect.kind = "crack" needs case.dimension = "2.5d" (a straight front along '
                f"z), got {toml_value(dimension)}",
            )
        if defect.burgers is not None:
            ctx.fail(
                "defect.burgers", 'defect.burgers is only used with defect.kind = "dislocation"'
            )
    if defect.kind != "dislocation":
        keys = ("burgers",) if defect.kind == "crack" else ("burgers", "center")
        for key in keys:
            if getattr(defect, key) is not None:
                ctx.fail(
                    f"defect.{key}",
                    f'defect.{key} is only used with defect.kind = "dislocation"'
                    + (' or "crack"' if key == "center" else ""),
                )
        if defect.kind == "crack" and defect.center is not None:
            if not np.all(np.isfinite(defect.center)):
                ctx.fail("defect.center", "defect.center must be two finite numbers [x, y] in Å")
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


def _check_crack(boundary: BoundarySection, defect_kind: str, ctx: Context) -> None:
    """``boundary.kind = "crack"`` if and only if ``defect.kind = "crack"``; its ``K`` keys."""
    if (boundary.kind == "crack") != (defect_kind == "crack"):
        if boundary.kind == "crack":
            ctx.fail(
                "boundary.kind",
                'boundary.kind = "crack" needs defect.kind = "crack" (the K field of which '
                f"crack?), got defect.kind = {toml_value(defect_kind)}",
            )
        ctx.fail(
            "boundary.kind",
            'defect.kind = "crack" needs boundary.kind = "crack" (its K field on the outer '
            f"boundary), got boundary.kind = {toml_value(boundary.kind)}",
        )
    if boundary.kind != "crack":
        if boundary.k_i is not None:
            ctx.fail("boundary.k_i", 'boundary.k_i is only used with boundary.kind = "crack"')
        if boundary.k_i_start != 0.0:
            ctx.fail(
                "boundary.k_i_start", 'boundary.k_i_start is only used with boundary.kind = "crack"'
            )
        return
    if boundary.k_i is None:
        ctx.fail(
            "boundary.k_i",
            "missing key 'boundary.k_i' (mode-I stress intensity factor of the last load step, "
            "in MPa√m)",
        )
    if boundary.k_i_start >= boundary.k_i:
        ctx.fail(
            "boundary.k_i_start",
            f"boundary.k_i_start = {boundary.k_i_start:g} MPa√m must be below boundary.k_i = "
            f"{boundary.k_i:g} MPa√m",
        )


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
    _check_crack(sections["boundary"], defect.kind, ctx)
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
    if passes != "auto" and passes > 1 and defect.kind not in ("dislocation", "crack"):
        ctx.fail(
            "coupling.correction_passes",
            'coupling.correction_passes > 1 needs defect.kind = "dislocation" or "crack" (the '
            "correction is recomputed on the defect's full lattice, which a void lacks), got "
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
    stretches = np.linalg.svd(np.eye(3) + strain, compute_uv=False)
    lo, hi = STRETCH_LIMITS
    if stretches.min() < lo or stretches.max() > hi:
        ctx.fail(
            "boundary.strain",
            f"boundary.strain: the principal stretches of F = I + strain must lie in [{lo:g}, "
            f"{hi:g}] (bonds at most halved or doubled), got {stretches.min():.4g} to "
            f"{stretches.max():.4g}",
        )
