"""The a posteriori error estimate of a coupled solution, every term in one unit.

**Unit.** Every local indicator ``η_T²`` estimates ``Σ_{i∈T} |G_i − G*_i|²``: the squared
error of the site strain (the least-squares displacement gradient of
:func:`atomistic.strain.site_gradients`, dimensionless), summed over the lattice sites ``i`` in
``T`` (a cell holds ``n_K = t |K| / Ω_0`` sites, ``t`` the slab period in 2.5d, 1 in 3d). A
term's total is normalised by the solution's own defect strain, exactly as
``reference_error.strain_error_rel`` is normalised by the reference's::

    eta_X     = sqrt(Σ_T η_{X,T}²) / D,     D² = Σ_i β_i |G_i − (F−I)|² + Σ_K n_K w_K |Ḡ_K − (F−I)|²
    eta_total    = sqrt(eta_fe² + eta_model² + eta_ml²)
    eta_infinite = sqrt(eta_total² + eta_trunc²)

so ``eta_total`` estimates ``strain_error_rel`` against a fully atomistic reference **on the
same domain** (``multiscale reference``), which has no truncation error; ``eta_infinite``
adds the truncation term and estimates the error against the infinite crystal. The relation
assumed: the errors of the sources add in squares, and ``D`` (the reference's denominator
evaluated on the solution) stands for the reference's.

=============  ============================  =====================================================
term           where                         ``η_T²``
=============  ============================  =====================================================
``eta_fe``     FE cell ``K``                 ``c_fe t/(Ω_0 μ²) · ¼ Σ_e h_e ‖{w̄} [[P̄]] n‖²_e``: the
                                             stress jumps of the continuum in strain units
                                             (``μ`` the shear modulus; no element term, see
                                             :mod:`continuum.estimator`)
``eta_model``  FE cell ``K``                 ``c_cb w_K r_cut² t/Ω_0 · ½ Σ_e ‖[[Ḡ]]‖²_e / h_e``
                                             ``· min(1, (r_cut/ℓ_K)²)`` (Cauchy–Born validity:
                                             strain gradient × ``r_cut``, second order where
                                             the strain varies on ``ℓ_K > r_cut``; in 3d
                                             ``|K| |∇(Π Ḡ)|²``, the recovered gradient's
                                             slope, for the facet sum: :func:`_gradient_jump`)
                                             ``+ c_s n_K |P̄^atoms_K − P̄_K|²/μ²`` in cells that hold
                                             handshake atoms (virial against Cauchy–Born stress):
                                             the cell indicator the marks use. The **total**
                                             counts instead of this mismatch the handshake's
                                             consistency error ``Σ_i β_i |G_i(e*)|² +
                                             Σ_K n_K w_K |∇e*_h|²_K``, the coupled solution's
                                             error ``e*`` projected on its own Newton direction
                                             for the atomistic energy (:func:`projected_error`;
                                             without a ghost-force correction the mismatch)
``eta_ml``     free atom ``i``               ``c_ml β_i (σ_i / (μ Ω_0^{2/3}))²``, ``σ_i`` the
                                             calibrated committee force spread (eV/Å): a force
                                             error over the stiffness of one site
``eta_trunc``  cell on the outer boundary    ``c_tr n_K |Ḡ_K − G_far(x_K)|² R/(d h_K)``: the strain
                                             still left at the boundary, continued to infinity
                                             (``R`` the domain's inradius, ``d`` 2 or 3)
=============  ============================  =====================================================

``Ḡ`` is the cell average of the total displacement gradient (background included), ``G_far``
the far field's (``F − I`` plus the background's gradient), ``w`` the continuum weight
``1 − β``. The constants ``c_*`` are those of :class:`EstimatorConstants`.

In 2.5d the continuum problem's weight is ``t (1 − β)`` (it integrates per Å of thickness),
and :class:`continuum.estimator.CellIndicators` ``weight`` is its cell average: ``D²`` divides
it by ``t``. ``eta_fe`` and the Cauchy–Born part of ``eta_model`` use it as it is: ``c_fe``
and ``c_cb`` were calibrated on 2.5d cases with that weight (Cu, ``t`` = 4.427 Å), so for
``w`` the share their values are ``c_fe t²`` and ``c_cb t`` there; in 3d ``w`` is the share.
The projected error has no constant: ``e*`` is a displacement, measured like ``D``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from mpi4py import MPI

from atomistic.regions import REGION_HANDSHAKE
from atomistic.strain import SHELL_FACTOR, site_gradients
from continuum.estimator import CellIndicators, cell_indicators, recovered_slope
from coupling.interpolation import containing_cells
from coupling.system import CoupledSystem

__all__ = [
    "TERMS",
    "Estimate",
    "EstimatorConstants",
    "Material",
    "Projection",
    "estimate",
    "projected_error",
]

#: The terms of the estimate, in the order they are reported.
TERMS = ("eta_fe", "eta_model", "eta_ml", "eta_trunc")

#: ``stresses(u (n, 3)) -> (n, 3, 3)`` first Piola site stresses (eV/Å³) of the free and pad
#: atoms at displacements ``u`` (rank 0 is asked; None elsewhere).
SiteStresses = Callable[[np.ndarray], np.ndarray]
#: ``spread(u (n, 3)) -> (n,)`` calibrated committee force spread of the atoms (eV/Å).
ForceSpread = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True, kw_only=True)
class EstimatorConstants:
    """Dimensionless weights of the local indicators (module docstring).

    The defaults were calibrated against fully atomistic references of two 2.5d Cu (Mishin
    EAM) cases at their first iteration (``cases/adaptive-refine``: a void on a mesh too
    coarse, where the true error is the FE's; ``cases/adaptive-expand``: a dislocation core
    too small, where it is the Cauchy–Born model's): ``fe`` makes the facet-jump sum match
    the true squared error ring by ring (within 2× from the handshake to the boundary),
    ``cb`` puts the crossover between the two terms near ``h ≈ r_cut``. ``ml`` and ``trunc``
    are not calibrated (1).
    """

    fe: float = 1.0 / 450.0
    cb: float = 0.1
    stress: float = 0.05
    ml: float = 1.0
    trunc: float = 1.0


@dataclass(frozen=True, kw_only=True)
class Material:
    """What the estimate needs to know about the crystal and the problem.

    Attributes:
        strain: ``(3, 3)`` far-field ``F − I``.
        shear_modulus: ``μ`` in eV/Å³ (the Voigt average of the Cauchy–Born constants).
        r_cut: the potential's range, Å.
        r_nn: nearest-neighbour distance, Å.
        volume_per_atom: ``Ω_0`` in Å³.
        inradius: the outer domain's inradius, Å.
        jump: a known displacement jump across bonds (a dislocation's branch cut), as for
            :func:`atomistic.strain.site_gradients`; None: none.
    """

    strain: np.ndarray
    shear_modulus: float
    r_cut: float
    r_nn: float
    volume_per_atom: float
    inradius: float
    jump: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None


@dataclass(kw_only=True)
class Estimate:
    """Local indicators (squared, in site-strain² units) and the normalised totals.

    Attributes:
        cells: the FE cell data the indicators were made from (this rank's owned cells).
        fe, model, trunc: ``(n_cells,)`` squared cell indicators of this rank, what the marks
            use (``model``: Cauchy–Born validity plus the handshake's stress mismatch).
        ml: ``(n_free,)`` squared atom indicators (every rank holds all of them).
        spread: ``(n_free,)`` committee force spread in eV/Å, or None without a committee.
        norm2: ``D²``, the solution's defect strain (sites).
        mismatch: ``(n_cells,)`` the stress-mismatch part of ``model``.
        projection: the projected error (:func:`projected_error`), or None. When there is
            one, ``eta_model``'s total counts it in place of the mismatch: the mismatch says
            where the handshake disagrees with the atoms (where to act), the projection how
            much that moves the solution (how large the error is).
        totals: ``eta_fe``, ``eta_model``, ``eta_ml``, ``eta_trunc``, ``eta_total`` and
            ``eta_infinite``.
    """

    cells: CellIndicators
    fe: np.ndarray
    model: np.ndarray
    trunc: np.ndarray
    ml: np.ndarray
    spread: np.ndarray | None
    norm2: float
    mismatch: np.ndarray | None = None
    projection: Projection | None = None
    totals: dict[str, float] = field(default_factory=dict)

    def cell_total(self) -> np.ndarray:
        """``(n_cells,)`` the squared indicator of each cell (all its terms)."""
        return self.fe + self.model + self.trunc

    def cell_dominant(self) -> np.ndarray:
        """``(n_cells,)`` name of each cell's largest term (``eta_fe``, ``eta_model`` …)."""
        stack = np.stack([self.fe, self.model, self.trunc])
        names = np.array(["eta_fe", "eta_model", "eta_trunc"])
        return names[np.argmax(stack, axis=0)] if stack.shape[1] else names[:0]


def _thickness(system: CoupledSystem) -> float:
    period = system.slab_period
    return 1.0 if period is None else float(period)


def _atom_gradients(system: CoupledSystem, material: Material, u: np.ndarray) -> np.ndarray:
    """``(n_free, 3, 3)`` site gradients of the free atoms (pad atoms as neighbours)."""
    X = system.positions
    period = system.slab_period
    cell = np.diag([1.0, 1.0, period]) if period is not None else None
    pbc = (False, False, period is not None)
    G = site_gradients(
        X, u, cutoff=SHELL_FACTOR * material.r_nn, cell=cell, pbc=pbc, jump=material.jump
    )
    return G[: system.n_free]


def _stress_mismatch(
    system: CoupledSystem,
    cells: CellIndicators,
    stresses: np.ndarray,
    positions: np.ndarray,
    codes: np.ndarray,
    r_cut: float,
) -> np.ndarray:
    """``(n_cells,)`` ``|P̄^atoms_K − P̄_K|²`` over cells holding handshake atoms, else 0.

    Only handshake atoms whose ``2 r_cut`` neighbourhood lies within the atoms are used (an
    EAM site stress feels its neighbours' neighbours): depth ``<= w + p − 2 r_cut``.
    """
    out = np.zeros(len(cells.h))
    hs = system.handshake
    deep_enough = hs.depth(positions) <= hs.width + hs.pad_width - 2.0 * r_cut
    pick = np.flatnonzero((codes == REGION_HANDSHAKE) & deep_enough)
    where = containing_cells(system.problem.V, positions[pick])
    ok = where >= 0
    if not np.any(ok):
        return out
    cell_of, P = where[ok], stresses[pick[ok]]
    total = np.zeros((len(out), 3, 3))
    count = np.zeros(len(out))
    np.add.at(total, cell_of, P)
    np.add.at(count, cell_of, 1.0)
    held = count > 0
    mean = total[held] / count[held, None, None]
    out[held] = np.sum((mean - cells.mean_stress[held]) ** 2, axis=(1, 2))
    return out


def _gradient_jump(problem: Any, cells: CellIndicators) -> np.ndarray:
    """``(n_cells,)`` ``|∇G|² |K|`` per cell, Å^(d−2), as the Cauchy–Born term reads it.

    On a 2D mesh (2.5d) the facet jumps, ``cells.gradient_jump``, with which ``c_cb`` was
    fitted; on tetrahedra ``|K|`` times the slope of the recovered gradient
    (:func:`continuum.estimator.recovered_slope`). For the P1 interpolant of a smooth field
    the facet sum reads about 1.16 |∇G|² |K| on gmsh's triangles but 1.7 |∇G|² |K| on its
    HXT tetrahedra, whose poorly shaped cells have large jumps; the recovered slope reads
    about 1.15 |∇G|² there, the scale the fitted constant knows (``tests/test_estimator.py``,
    a point dilatation's analytic field). Collective.
    """
    if problem.mesh.topology.dim == 3:
        return recovered_slope(problem, cells.mean_gradient) * cells.volume
    return cells.gradient_jump


def _second_order(cells: CellIndicators, material: Material, jump: np.ndarray) -> np.ndarray:
    """``(n_cells,)`` ``min(1, (r_cut/ℓ_K)²)``, ``ℓ_K = |Ḡ_K − (F − I)| / |∇G|_K``.

    A centrosymmetric lattice's Cauchy–Born error is second order: the site strain error is
    ``~ r_cut² |∇²G| ~ (r_cut/ℓ)² |G|`` where the strain varies on a length ``ℓ`` (``r`` for a
    dislocation's ``1/r`` field, ``r/3`` for a void's ``1/r³``), not ``r_cut |∇G|``, which is
    ``ℓ/r_cut`` times larger. The first-order form alone overstates the model error by that
    factor away from the defect: the loop then grew the atoms over the whole domain. Where
    ``ℓ ≤ r_cut`` (the core) the two agree; ``|∇G|²`` is ``jump / |K|``
    (:func:`_gradient_jump`).
    """
    deviation = cells.mean_gradient - np.asarray(material.strain, dtype=float)
    strain2 = np.sum(deviation**2, axis=(1, 2))
    slope2 = jump / np.maximum(cells.volume, 1e-300)
    ratio = material.r_cut**2 * slope2 / np.maximum(strain2, 1e-300)
    return np.minimum(1.0, ratio)


def _cauchy_born(
    problem: Any, cells: CellIndicators, material: Material, scale: tuple[float, float, float]
) -> np.ndarray:
    """``(n_cells,)`` the Cauchy–Born validity part of ``model``; ``scale``: ``(c_cb, t, Ω_0)``."""
    cb, t, omega = scale
    jump = _gradient_jump(problem, cells)
    model = cb * cells.weight * material.r_cut**2 * jump * t / omega
    return model * _second_order(cells, material, jump)


def _far_gradient(system: CoupledSystem, material: Material, x: np.ndarray) -> np.ndarray:
    """``(n, 3, 3)`` the far field's gradient at points ``x``: ``F − I`` plus the background."""
    G = np.broadcast_to(np.asarray(material.strain, dtype=float), (len(x), 3, 3)).copy()
    if system.background is not None and len(x):
        G += np.asarray(system.background.gradient(x), dtype=float).reshape(-1, 3, 3)
    return G


def estimate(
    system: CoupledSystem,
    *,
    material: Material,
    stresses: SiteStresses | None = None,
    spread: ForceSpread | None = None,
    constants: EstimatorConstants | None = None,
    project: bool = True,
) -> Estimate:
    """The estimate of the current state ``system.z`` (collective).

    Args:
        system: the coupled system at its solution.
        material: the crystal's scales and the far field.
        stresses: the atoms' first Piola site stresses (for the model term's virial part);
            None leaves that part out.
        spread: the committee's calibrated force spread; None: ``eta_ml`` is 0.
        constants: weights of the local indicators.
        project: the handshake's part of ``eta_model``'s total is the coupled solution's
            error projected on its Newton direction (:func:`projected_error`); where that
            cannot be had (no ghost-force correction) or with False, the
            virial-against-Cauchy–Born stress mismatch (``stresses``) stands for it. The cell
            indicators (the marks) keep the mismatch either way.
    """
    c = constants or EstimatorConstants()
    comm = system.comm
    lay = system.model.layout
    lay.fe_of(system.z, out=system.problem.u)
    cells = cell_indicators(system.problem)
    t, omega, mu = _thickness(system), material.volume_per_atom, material.shear_modulus
    n_sites = cells.volume * t / omega
    fe = c.fe * cells.stress_residual * t / (omega * mu**2)
    model = _cauchy_born(system.problem, cells, material, (c.cb, t, omega))
    u = system.atom_displacements()
    mismatch = np.zeros_like(model)
    if stresses is not None:
        P = comm.bcast(stresses(u) if comm.rank == 0 else None, root=0)
        mismatch = (
            c.stress
            * n_sites
            * _stress_mismatch(system, cells, P, system.positions, system.region, material.r_cut)
            / mu**2
        )
    model = model + mismatch
    projection = projected_error(system, material, cells.centroid) if project else None
    far = _far_gradient(system, material, cells.centroid)
    trunc = np.zeros_like(fe)
    edge = cells.on_outer_boundary
    if np.any(edge):
        d = 2.0 if system.slab_period is not None else 3.0
        dev = np.sum((cells.mean_gradient[edge] - far[edge]) ** 2, axis=(1, 2))
        trunc[edge] = c.trunc * n_sites[edge] * dev * material.inradius / (d * cells.h[edge])
    beta = system.beta[: system.n_free]
    sigma = None
    ml = np.zeros(system.n_free)
    if spread is not None:
        sigma = comm.bcast(spread(u) if comm.rank == 0 else None, root=0)
        ml = c.ml * beta * (sigma / (mu * omega ** (2.0 / 3.0))) ** 2
    G_atoms = _atom_gradients(system, material, u)
    strain = np.asarray(material.strain, dtype=float)
    norm_atoms = float(np.sum(beta * np.sum((G_atoms - strain) ** 2, axis=(1, 2))))
    share = cells.weight / t  # the continuum's share 1 − β (the problem's weight is t (1 − β))
    norm_cells = float(
        np.sum(n_sites * share * np.sum((cells.mean_gradient - strain) ** 2, axis=(1, 2)))
    )
    norm2 = norm_atoms + comm.allreduce(norm_cells, op=MPI.SUM)
    result = Estimate(
        cells=cells,
        fe=fe,
        model=model,
        trunc=trunc,
        ml=ml,
        spread=sigma,
        norm2=norm2,
        mismatch=mismatch,
        projection=projection,
    )
    result.totals = _totals(result, comm)
    return result


def _totals(result: Estimate, comm: MPI.Comm) -> dict[str, float]:
    model = result.model.sum()
    if result.projection is not None:  # the total: the projected error for the mismatch
        model += result.projection.cells.sum()
        if result.mismatch is not None:
            model -= result.mismatch.sum()
    sums = np.array([result.fe.sum(), model, result.trunc.sum()])
    comm.Allreduce(MPI.IN_PLACE, sums, op=MPI.SUM)
    squared = {
        "eta_fe": sums[0],
        "eta_model": sums[1],
        "eta_ml": float(result.ml.sum()),
        "eta_trunc": sums[2],
    }
    scale = result.norm2 if result.norm2 > 0 else float("nan")
    totals = {name: float(np.sqrt(squared[name] / scale)) for name in TERMS}
    posed = squared["eta_fe"] + squared["eta_model"] + squared["eta_ml"]
    totals["eta_total"] = float(np.sqrt(posed / scale))
    totals["eta_infinite"] = float(np.sqrt((posed + squared["eta_trunc"]) / scale))
    return totals


@dataclass(frozen=True, kw_only=True)
class Projection:
    """What :func:`projected_error` found (for the log and the tests).

    Attributes:
        cells: ``(n_cells,)`` squared site strain of ``e*`` charged to this rank's cells.
        atoms: ``(n_free,)`` ``β_i |G_i(e*)|²`` of the free atoms (every rank).
        alpha: the step length ``α*`` (1 where ``H_a = H_c`` along ``d``).
        slope: ``∇E_a · d`` (eV), curvature: ``dᵀ H_a d`` (eV), both over the sites.
        max_displacement: ``max |e*|`` over the free atoms, Å.
    """

    cells: np.ndarray
    atoms: np.ndarray
    alpha: float
    slope: float
    curvature: float
    max_displacement: float


def _step_length(
    crystal: Any, sites: np.ndarray, g_atoms: np.ndarray, field: np.ndarray, d_atoms: np.ndarray
) -> tuple[float, float, float]:
    """``(g · d, dᵀ H_a d, α*)`` along a direction ``d``.

    ``field``: the site displacements of ``d``, ``d_atoms`` its free atoms' part. The
    curvature comes from central differences of ``∇E_a``; ``α* = 0`` unless ``d`` descends
    on a positive curvature.
    """
    slope = float(np.sum(g_atoms * d_atoms))
    size = float(np.abs(field).max())
    curvature = 0.0
    if size > 0:
        h = 1e-3 / size
        gp, gm = crystal.gradient(sites + h * field), crystal.gradient(sites - h * field)
        curvature = float(np.sum((gp - gm) * d_atoms) / (2 * h))
    alpha = -slope / curvature if curvature > 0 and slope < 0 else 0.0
    return slope, curvature, alpha


def _charge_atoms_to_cells(
    system: CoupledSystem, cells: np.ndarray, atoms: np.ndarray, centroid: np.ndarray
) -> None:
    """Add each free atom's ``atoms`` value to the cell holding it (collective).

    In the core, where no cell is, the value goes to the nearest cell of any rank; ``cells``
    is this rank's.
    """
    from scipy.spatial import cKDTree

    comm = system.comm
    where = containing_cells(system.problem.V, system.positions[: system.n_free])
    inside = comm.allreduce((where >= 0).astype(np.int64), op=MPI.SUM) > 0
    mine = where >= 0
    np.add.at(cells, where[mine], atoms[mine])
    outside = np.flatnonzero(~inside)
    if len(outside):
        k = 2 if system.slab_period is not None else 3
        offsets = np.cumsum([0, *comm.allgather(len(centroid))])
        every = np.vstack(comm.allgather(np.asarray(centroid)[:, :k]))
        _, nearest = cKDTree(every).query(system.positions[outside][:, :k])
        lo, hi = offsets[comm.rank], offsets[comm.rank + 1]
        take = (nearest >= lo) & (nearest < hi)
        np.add.at(cells, nearest[take] - lo, atoms[outside][take])


def projected_error(
    system: CoupledSystem, material: Material, centroid: np.ndarray
) -> Projection | None:
    """The coupled solution's error projected on its own Newton direction (collective).

    The fully atomistic solution ``y_a`` minimises ``E_a``; the coupled one ``y_c`` does not:
    ``g = ∇E_a(y_c)`` is the force the free atoms would feel in the fully atomistic crystal
    (every site within ``2 r_cut`` displaced: free atoms as solved, the others by the FE
    field and background). Linearised, ``e = y_a − y_c = −H_a⁻¹ g``. The coupled Hessian
    ``H_c`` (at hand: the Newton solver's) gives the direction ``d = −H_c⁻¹ g``, and the
    atomistic energy itself its length: ``e* = α* d`` with
    ``α* = −(g · d) / (dᵀ H_a d)``, ``dᵀ H_a d`` by central differences of ``∇E_a`` along
    ``d`` over the same sites. ``e*`` is the ``H_a``-orthogonal projection of ``e`` on
    ``d`` (``(e, d)_{H_a} = −g·d``), so ``‖e*‖_{H_a} ≤ ‖e‖_{H_a}``, with equality where
    ``H_c = H_a`` along ``d``. This is what the partials of a dislocation pushed by the
    handshake produce: the soft glide mode is in ``H_c`` (the core is atomistic), and its
    stiffness is measured on ``E_a``. The site strain of ``e*`` is summed like ``D²``:
    ``β_i |G_i(e*)|²`` per free atom (charged to the cell holding it, or, in the core, to
    the nearest cell: where growing the atoms acts on it) and ``n_K w_K |∇e*_h|²_K`` per
    cell. None without a ghost-force correction (it holds the fully atomistic sites).
    ``centroid``: ``(n_cells, 3)`` this rank's cell centroids.
    """
    import ufl

    from continuum.estimator import _as_vector, _CellSpace
    from coupling.solver import _NewtonKrylov

    corr = system.correction
    if corr is None:
        return None
    model = system.model
    lay = model.layout
    crystal = _Crystal(system, corr)
    sites = crystal.displacements(system.z, background=True)
    g_atoms = crystal.gradient(sites)
    g = lay.create_vec()
    g.zeroEntries()
    lay.set_atoms(g, g_atoms)
    model.zero_dirichlet(g)
    d = g.duplicate()
    kind = "gamg" if lay.V.mesh.topology.dim == 3 else "mumps"
    newton = _NewtonKrylov(model, system.preconditioner, kind)
    try:
        newton.direction(system.z, g, d, 1e-6, 3000)
    finally:
        newton.destroy()
    field = crystal.displacements(d, background=False)
    d_atoms = field[crystal.index]
    slope, curvature, alpha = _step_length(crystal, sites, g_atoms, field, d_atoms)
    d.scale(alpha)
    e_all = system.atom_displacements(d) - np.vstack(
        [np.zeros((system.n_free, 3)), model.pad_offset.reshape(-1, 3)]
    )
    G = _atom_gradients(system, dataclasses.replace(material, jump=None), e_all)
    beta = system.beta[: system.n_free]
    atoms = beta * np.sum(G**2, axis=(1, 2))
    problem = system.problem
    lay.fe_of(d, out=problem.u)
    tensors, scalars = _CellSpace(problem.mesh, 9), _CellSpace(problem.mesh, 2)
    dx = problem._dx
    q = scalars.test()
    grad = tensors.assemble(ufl.inner(_as_vector([problem._grad3(problem.u)]), tensors.test()) * dx)
    s2 = scalars.assemble((q[0] + problem._weight * q[1]) * dx)
    lay.fe_of(system.z, out=problem.u)
    model.split(system.z)  # the problem's field back at the state
    volume, t = s2[:, 0], _thickness(system)
    share = s2[:, 1] / volume / t
    mean = grad / volume[:, None]
    cells = volume * t / material.volume_per_atom * share * np.sum(mean**2, axis=1)
    _charge_atoms_to_cells(system, cells, atoms, centroid)
    return Projection(
        cells=cells,
        atoms=atoms,
        alpha=alpha,
        slope=slope,
        curvature=curvature,
        max_displacement=float(np.linalg.norm(alpha * d_atoms, axis=1).max(initial=0.0)),
    )


class _Crystal:
    """The fully atomistic crystal around the atoms: the correction's lattice sites that exist.

    The sites of ``correction.site_atoms`` (``2 r_cut`` beyond the free atoms) that are free
    atoms or lie in the mesh; a void's sites (in neither) are left out. Free atoms move as
    solved, the others with the FE field (and the background, for a state). Energies and
    gradients on rank 0, broadcast (collective).
    """

    def __init__(self, system: CoupledSystem, corr: Any) -> None:
        from scipy.spatial import cKDTree

        from coupling.correction import blended_sites
        from coupling.interpolation import p1_interpolation_matrix, points_in_mesh

        self.system, comm = system, system.comm
        atoms = corr.site_atoms
        X = np.asarray(atoms.positions, dtype=float)
        dist, index = cKDTree(X).query(system.positions[: system.n_free], distance_upper_bound=1e-6)
        if not np.all(np.isfinite(dist)):
            raise ValueError("the correction's sites must hold every free atom's site")
        free = np.zeros(len(X), dtype=bool)
        free[index] = True
        rest = np.flatnonzero(~free)
        keep = free.copy()
        keep[rest[points_in_mesh(system.problem.V, X[rest])]] = True
        kept = np.flatnonzero(keep)
        self.X = X[kept]
        where = np.full(len(X), -1)
        where[kept] = np.arange(len(kept))
        self.index = where[index]
        self.others = np.ones(len(kept), dtype=bool)
        self.others[self.index] = False
        self.interp = p1_interpolation_matrix(system.problem.V, self.X[self.others])
        self.full = None
        if comm.rank == 0:
            self.full = blended_sites(
                atoms[kept],
                np.ones(len(kept)),
                potential=corr._potential,
                device=corr._device,
                dtype=corr._dtype,
            )

    def displacements(self, z: Any, *, background: bool) -> np.ndarray:
        """``(n_sites, 3)`` at ``z`` (every rank)."""
        system = self.system
        lay = system.model.layout
        u = np.zeros_like(self.X)
        u[self.others] = lay.allsum(self.interp @ lay.fe_of(z)).reshape(-1, 3)
        if background and system.background is not None:
            u[self.others] += system.background.displacement(self.X[self.others])
        u[self.index] = lay.atoms_of(z)
        return u

    def gradient(self, u: np.ndarray) -> np.ndarray:
        """``(n_free, 3)`` ``∇E_a`` on the free atoms with the sites at ``u`` (every rank)."""
        grad = None
        if self.full is not None:
            _, grad = self.full.energy_gradient(u)
            self.full.release()
            grad = grad[self.index]
        return self.system.comm.bcast(grad, root=0)
