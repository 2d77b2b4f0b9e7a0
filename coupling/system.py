"""A coupled problem: atoms, handshake, continuum and the blended energy, with its state.

The atoms passed to :func:`build_coupled_system` are the lattice sites (defect already
applied) of at least the core, the handshake and the pad; sites farther out are dropped.
Free atoms (core and handshake) are unknowns; pad atoms follow the FE field. Boundary
conditions act on the FE outer boundary: a homogeneous far-field ``F`` (``u = (F − I) X``)
or a displacement function. A background field (a dislocation's Volterra field) may be
carried: the FE unknown is then the continuous correction to it.

A :class:`~coupling.state.CoupledState` taken from one system (:meth:`CoupledSystem.snapshot`)
restores it exactly, or starts another system built on a refined mesh, a grown region or a
new potential (:meth:`CoupledSystem.restore`).
"""

from __future__ import annotations

from dataclasses import dataclass

import dolfinx
import numpy as np
import torch
import vesin
from ase import Atoms
from mpi4py import MPI
from petsc4py import PETSc

from atomistic.neighbours import vesin_box
from atomistic.potentials.protocol import Potential
from atomistic.regions import REGION_CORE, REGION_HANDSHAKE, REGION_PAD
from atomistic.strain import match_sites
from continuum.problem import HyperelasticProblem
from coupling.blended_atoms import BlendedAtoms
from coupling.correction import GhostForceCorrection
from coupling.fields import Background, Displacement, homogeneous
from coupling.handshake import Handshake
from coupling.interpolation import p1_interpolation_matrix, points_in_mesh
from coupling.model import BlendedModel, Correction, EnergyParts
from coupling.preconditioner import (
    NEAREST_NEIGHBOURS,
    PreconditionerData,
    atom_laplacian,
    fit_laplacian_scale,
)
from coupling.solver import Progress, SolveResult, SolverOptions, solve
from coupling.state import CoupledState, capture, restore_state

__all__ = [
    "AtomSet",
    "Background",
    "CoupledSystem",
    "Displacement",
    "build_coupled_system",
    "homogeneous",
]


@dataclass(frozen=True, kw_only=True)
class AtomSet:
    """The atoms of a coupled problem, free (core and handshake) first, then pad.

    Attributes:
        positions: ``(n_A + n_P, 3)`` reference sites in Å.
        symbols: their chemical symbols.
        beta: ``(n_A + n_P,)`` blending weights.
        region: ``(n_A + n_P,)`` region codes (:mod:`atomistic.regions`).
        n_free: number of free atoms ``n_A``.
        cell: ``(3, 3)`` cell rows in Å, used along periodic axes (a 2.5D slab).
        pbc: three bools.
    """

    positions: np.ndarray
    symbols: list[str]
    beta: np.ndarray
    region: np.ndarray
    n_free: int
    cell: np.ndarray
    pbc: tuple[bool, bool, bool]

    @property
    def n_pad(self) -> int:
        """Number of pad atoms ``n_P``."""
        return len(self.positions) - self.n_free


class CoupledSystem:
    """Everything needed to minimise, inspect and write one coupled problem.

    Build it with :func:`build_coupled_system`.

    Attributes:
        model: the blended energy.
        problem: the continuum problem.
        handshake: the geometry.
        atoms: the free and pad atoms.
        preconditioner: what the monolithic preconditioner needs beyond the tangent.
        correction: the ghost-force correction, or None when it is off.
        z: the current state ``(u_A, U)``.
        predictor: the state of the homogeneous far-field predictor of the current load
            (None until :meth:`set_boundary`).
        far_field_F: the predictor's deformation gradient ``(3, 3)`` (None until
            :meth:`set_boundary`).
        boundary: ``(displacement, predictor)`` of the current load, as given to
            :meth:`set_boundary` (None until then).
        background: the background field, or None.
    """

    def __init__(
        self,
        *,
        model: BlendedModel,
        problem: HyperelasticProblem,
        handshake: Handshake,
        atoms: AtomSet,
        preconditioner: PreconditionerData,
        correction: GhostForceCorrection | None,
    ) -> None:
        self.model = model
        self.problem = problem
        self.handshake = handshake
        self.atoms = atoms
        self.preconditioner = preconditioner
        self.correction = correction
        self.z: PETSc.Vec = model.layout.create_vec()
        self.predictor: PETSc.Vec | None = None
        self.boundary: tuple[Displacement, Displacement] | None = None
        self.background: Background | None = None
        self.far_field_F: np.ndarray | None = None

    # -- what the atoms are ----------------------------------------------------------------
    @property
    def positions(self) -> np.ndarray:
        """``(n_A + n_P, 3)`` reference sites, free atoms first."""
        return self.atoms.positions

    @property
    def symbols(self) -> list[str]:
        """Chemical symbols of the free and pad atoms."""
        return self.atoms.symbols

    @property
    def beta(self) -> np.ndarray:
        """``(n_A + n_P,)`` blending weights."""
        return self.atoms.beta

    @property
    def region(self) -> np.ndarray:
        """``(n_A + n_P,)`` region codes."""
        return self.atoms.region

    @property
    def n_free(self) -> int:
        """Number of free atoms."""
        return self.atoms.n_free

    @property
    def slab_period(self) -> float | None:
        """Period along ``z`` of a 2.5D slab (the cell's ``z`` length), None otherwise."""
        return float(self.atoms.cell[2, 2]) if self.atoms.pbc[2] else None

    @property
    def comm(self) -> MPI.Comm:
        """The MPI communicator of the mesh."""
        return self.model.comm

    # -- states ----------------------------------------------------------------------------
    def state_from(self, displacement: Displacement) -> PETSc.Vec:
        """The state with atoms and FE nodes at ``displacement(X)``."""
        lay = self.model.layout
        z = lay.create_vec()
        lay.set_atoms(z, displacement(self.positions[: self.n_free]))
        nodes = self.problem.dof_coordinates()[: lay.n_fe_owned // 3]
        lay.set_fe(z, np.asarray(displacement(nodes)).ravel())
        return z

    def atom_displacements(self, z: PETSc.Vec | None = None) -> np.ndarray:
        """``(n_A + n_P, 3)`` displacements of free and pad atoms (collective; every rank)."""
        z = self.z if z is None else z
        lay = self.model.layout
        U = lay.fe_of(z)
        pad = lay.allsum(self.model.I_P @ U).reshape(-1, 3) + self.model.pad_offset
        return np.vstack([lay.atoms_of(z), pad])

    def set_atom_displacements(self, u: np.ndarray) -> None:
        """Put the free atoms of the current state at ``u`` ``(n_A, 3)`` (rank 0's is used)."""
        self.model.layout.set_atoms(self.z, u)

    def fe_displacements_at(self, points: np.ndarray, z: PETSc.Vec | None = None) -> np.ndarray:
        """``(n, 3)`` FE field at ``points`` inside the mesh, background not added.

        Collective; every rank gets all of them.
        """
        lay = self.model.layout
        interp = p1_interpolation_matrix(self.problem.V, points)
        return lay.allsum(interp @ lay.fe_of(self.z if z is None else z)).reshape(-1, 3)

    def displacement_at(
        self, points: np.ndarray, *, far_field: Displacement, period: float | None = None
    ) -> np.ndarray:
        """The solution's displacement at lattice sites (collective; every rank gets all).

        Args:
            points: ``(n, 3)`` lattice sites in Å (same lattice and registry as the atoms).
            far_field: ``X (n, 3) -> u (n, 3)``, used outside the mesh.
            period: slab period along ``z`` in Å (2.5D), None in 3D.

        Returns:
            ``(n, 3)`` displacements in Å: the atom's where the site is a free or pad atom,
            else the FE field (plus the background) where the site is in the mesh, else
            ``far_field``.
        """
        points = np.asarray(points, dtype=float)
        u = np.asarray(far_field(points), dtype=float).reshape(-1, 3).copy()
        index = match_sites(points, self.positions, period=period)
        on_atom = index >= 0
        u[on_atom] = self.atom_displacements()[index[on_atom]]
        rest = np.flatnonzero(~on_atom)
        if len(rest):
            inside = rest[points_in_mesh(self.problem.V, points[rest])]
            if len(inside):
                u[inside] = self.fe_displacements_at(points[inside])
                if self.background is not None:  # the FE field is the correction to it
                    u[inside] += self.background.displacement(points[inside])
        return u

    def snapshot(self) -> CoupledState:
        """The current state, valid beyond this system (see :meth:`restore`)."""
        return capture(self)

    def restore(self, state: CoupledState) -> None:
        """Take ``state``: exactly if it came from this system, else carried over.

        Exactly means state, predictor and correction. Carried over
        (:func:`coupling.state.restore_state`): atoms by lattice site, the FE field by
        interpolation between the meshes, new atoms from the field, and the correction
        rebuilt at the state's load.
        """
        restore_state(self, state)

    # -- boundary, background, correction --------------------------------------------------
    def set_boundary(self, displacement: Displacement, *, predictor: Displacement) -> None:
        """Impose Dirichlet values on the outer boundary and reset the ghost-force correction.

        The correction is that of the defect-free lattice at the homogeneous predictor
        (:meth:`coupling.correction.GhostForceCorrection.reset`); :meth:`update_correction`
        then recomputes it at a solution. With a background field the predictor's atoms
        sit on it (``predictor(X) + u_bg(X)``) and its FE field (the correction) at 0.

        Args:
            displacement: ``X (n, 3) -> u (n, 3)`` on the outer boundary.
            predictor: the homogeneous far-field state used by the correction.
        """
        tag = self.problem.mesh_data.outer_tag
        self.problem.set_dirichlet(tag=tag, displacement=lambda X: displacement(X.T).T)
        self.boundary = (displacement, predictor)
        # the predictor is homogeneous, X ↦ (F − I) X: its F is the far field's
        D = np.asarray(predictor(np.eye(3)) - predictor(np.zeros((1, 3))), dtype=float)
        self.far_field_F = np.eye(3) + D.T
        # the correction below is measured with the law itself (a linearisation about an
        # earlier load's F would differ from it at this predictor); solve() sets it again
        self.problem.material.linearise(about=None)
        model = self.model
        model.refresh_dirichlet()
        z_bc = self.state_from(displacement)
        rows = model.layout.n_atom_dofs + model.dirichlet_owned
        self.z.getArray()[rows] = z_bc.getArray(readonly=True)[rows]
        model.set_correction(None)
        background = self.background
        if background is not None:
            self._use_background(None)
        self.predictor = self.state_from(predictor)
        if self.correction is not None:
            self.correction.reset(self, predictor, self.predictor)
        if background is not None:
            self._use_background(background)
            free = self.positions[: self.n_free]
            self.predictor = self.state_from(predictor)
            model.layout.set_atoms(self.predictor, predictor(free) + background.displacement(free))
            if model.correction is not None:  # measured from the dislocation's predictor
                gradient = model.correction.gradient
                model.set_correction(Correction(gradient=gradient, anchor=self.predictor.copy()))

    def advance_load(self, previous: np.ndarray, current: np.ndarray) -> None:
        """Move from the load ``F = previous`` to ``F = current``.

        Adds the homogeneous increment ``(current − previous) X`` to atoms and nodes, then
        calls :meth:`set_boundary` with ``(current − I) X`` as boundary and predictor.
        """
        z = self.z.copy()
        z.axpy(1.0, self.state_from(homogeneous(np.eye(3) + current - previous)))
        self.z = z
        self.set_boundary(homogeneous(current), predictor=homogeneous(current))

    def update_correction(self) -> float:
        """Recompute the ghost-force correction at ``z`` (one more pass).

        Returns:
            The largest change on any atom or node (eV/Å).

        Raises:
            RuntimeError: the correction is off or :meth:`set_boundary` was not called.
        """
        if self.correction is None:
            raise RuntimeError("update_correction needs the correction on and set_boundary")
        return self.correction.update(self)

    def set_background(self, background: Background | None) -> None:
        """Carry a prescribed displacement field (a Volterra dislocation), or None.

        The FE unknown becomes the continuous correction ``U`` to ``u_bg``: the continuum
        sees ``F = I + ∇U + ∇u_bg`` and pad/handshake atoms are tied to ``U(X) + u_bg(X)``.
        Atoms keep absolute displacements. The problem must be built with
        ``with_background=True``.
        """
        self._use_background(background)

    def _use_background(self, background: Background | None) -> None:
        model = self.model
        if background is None:
            self.problem.set_background(gradient=None)
            model.set_offsets(
                pad=np.zeros((model.n_pad, 3)), penalty=np.zeros((len(model.penalty_atoms), 3))
            )
        else:
            self.problem.set_background(gradient=background.gradient)
            X = self.positions
            model.set_offsets(
                pad=background.displacement(X[self.n_free :]),
                penalty=background.displacement(X[model.penalty_atoms]),
            )
        self.background = background

    # -- solving and inspecting ------------------------------------------------------------
    def solve(
        self, options: SolverOptions | None = None, *, progress: Progress | None = None
    ) -> SolveResult:
        """Minimise from the current state, updated in place (:func:`coupling.solver.solve`).

        With ``options.linear_far_field > 0`` the continuum's law is its quadratic expansion
        about :attr:`far_field_F` wherever ``F`` is that close to it
        (:meth:`continuum.material.QuadratureMaterial.linearise`); otherwise the law itself.
        """
        bound = (options or SolverOptions()).linear_far_field
        about = self.far_field_F if bound > 0 else None
        self.problem.material.linearise(about=about, within=bound)
        return solve(
            self.model,
            self.z,
            preconditioner=self.preconditioner,
            options=options,
            progress=progress,
        )

    def energy_parts(self, z: PETSc.Vec | None = None) -> EnergyParts:
        """Each term of the blended energy at ``z`` (default: the current state), eV."""
        return self.model.energy_parts(self.z if z is None else z)

    def ghost_forces(self, *, within: float | None = None) -> tuple[float, float]:
        """Ghost forces: max ``|∇E|`` at the predictor without the correction, eV/Å.

        Args:
            within: count only the free atoms within this distance (Å) of the handshake
                (``depth > −within``: the atoms that see blending; deeper atoms feel only
                the defect's true forces); None: every free atom.

        Returns:
            ``(atoms, fe)`` maxima over the free atoms and the free FE nodes.

        Raises:
            RuntimeError: :meth:`set_boundary` was not called.
        """
        if self.predictor is None:
            raise RuntimeError("set_boundary must be called first")
        model = self.model
        g = model.layout.create_vec()
        with model.without_correction():
            model.energy_gradient(self.predictor, g)
        _, fe = model.max_forces(g)
        f = np.linalg.norm(model.layout.atoms_of(g), axis=1)
        if within is not None:
            f = f[self.handshake.depth(self.positions[: self.n_free]) > -within]
        return float(f.max(initial=0.0)), float(fe)


def _atom_set(atoms: Atoms, handshake: Handshake) -> AtomSet:
    """The free and pad atoms among the sites of ``atoms``."""
    X_all = np.asarray(atoms.positions, dtype=float)
    codes_all = handshake.classify(X_all)
    free = np.flatnonzero((codes_all == REGION_CORE) | (codes_all == REGION_HANDSHAKE))
    pad = np.flatnonzero(codes_all == REGION_PAD)
    order = np.concatenate([free, pad])
    all_symbols = atoms.get_chemical_symbols()
    return AtomSet(
        positions=X_all[order],
        symbols=[all_symbols[k] for k in order],
        beta=handshake.beta(X_all[order]),
        region=codes_all[order],
        n_free=len(free),
        cell=np.asarray(atoms.cell.array, dtype=float),
        pbc=(bool(atoms.pbc[0]), bool(atoms.pbc[1]), bool(atoms.pbc[2])),
    )


def _preconditioner(
    model: BlendedModel, atoms: AtomSet, blended: BlendedAtoms | None
) -> PreconditionerData:
    """The Exp Laplacian of the atoms, scaled to their Hessian at the reference state."""
    X, beta, cell, pbc = atoms.positions, atoms.beta, atoms.cell, atoms.pbc
    r_nn = _nearest_neighbour_distance(X, cell, pbc)
    L = mu = None
    if model.comm.rank == 0:
        assert blended is not None
        # 3D (GAMG): nearest neighbours only; 2.5D (MUMPS): the default, three shells
        reach = NEAREST_NEIGHBOURS if model.layout.V.mesh.topology.dim == 3 else None
        links = {} if reach is None else {"cutoff_factor": reach}
        L = atom_laplacian(positions=X, beta=beta, cell=cell, pbc=pbc, r_nn=r_nn, **links)
        zero = np.zeros_like(X)
        unshifted = atom_laplacian(
            positions=X, beta=beta, cell=cell, pbc=pbc, r_nn=r_nn, shift=0.0, **links
        )
        mu = fit_laplacian_scale(lambda v: blended.hessian_vector(zero, v), X, unshifted)
        blended.release()
    return PreconditionerData(
        L=L,
        mu=float(model.comm.bcast(mu, root=0)),
        n_free=atoms.n_free,
        penalty_atoms=model.penalty_atoms,
        kappa=model.kappa,
        pad_interpolation=model.I_P,
        penalty_interpolation=model.I_H,
    )


def _correction(
    model: BlendedModel,
    atoms: AtomSet,
    sites: Atoms,
    handshake: Handshake,
    potential: Potential,
    device: str | torch.device | None,
    dtype: torch.dtype,
) -> GhostForceCorrection:
    """The ghost-force correction of the defect-free lattice ``sites``.

    The outer boundary's forces are physical and stay out of it.
    """
    fe_mask = np.ones(model.layout.n_fe_owned, dtype=bool)
    outer = outer_boundary_dofs(model.problem)
    fe_mask[outer[outer < len(fe_mask)]] = False
    return GhostForceCorrection(
        perfect_atoms=sites,
        site_atoms=sites,
        positions=atoms.positions,
        n_free=atoms.n_free,
        handshake=handshake,
        fe_mask=fe_mask,
        potential=potential,
        device=device,
        dtype=dtype,
        rank=model.comm.rank,
    )


def build_coupled_system(
    *,
    potential: Potential,
    atoms: Atoms,
    handshake: Handshake,
    problem: HyperelasticProblem,
    kappa: float,
    ghost_force_correction: bool = True,
    perfect_atoms: Atoms | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float64,
    hessian_dtype: torch.dtype | None = None,
) -> CoupledSystem:
    """Assemble a :class:`CoupledSystem` at zero displacement.

    Args:
        potential: project potential for the atoms (the continuum law is in ``problem``).
        atoms: ASE ``Atoms`` of the lattice sites with the defect applied; ``cell``/``pbc``
            give the slab periodicity (2.5D: periodic along ``z`` only).
        handshake: core, handshake and pad geometry.
        problem: continuum problem built with weight ``handshake.continuum_weight``.
        kappa: penalty stiffness in eV/Å², on every handshake atom inside the mesh.
        ghost_force_correction: subtract the ghost forces of the homogeneous predictor.
        perfect_atoms: the defect-free lattice sites (ASE ``Atoms``, same lattice and
            registry) whose ghost forces are corrected; default ``atoms`` itself, which is
            right only when ``atoms`` is a perfect lattice (patch tests, dislocations whose
            defect is in the displacement). Pass it for vacancies, voids and interstitials.
            :meth:`CoupledSystem.update_correction` also needs the plain atomistic forces of
            the free atoms: pass sites reaching ``2 r_cut`` beyond them.
        device: torch device of the atoms.
        dtype: torch dtype of the atoms.
        hessian_dtype: torch dtype of the atoms' Hessian-vector products (default ``dtype``;
            see :class:`~coupling.blended_atoms.BlendedAtoms`).
    """
    atom_set = _atom_set(atoms, handshake)
    X, n_free = atom_set.positions, atom_set.n_free
    comm = problem.V.mesh.comm
    blended = None
    if comm.rank == 0:
        blended = BlendedAtoms(
            potential=potential,
            reference_positions=X,
            symbols=atom_set.symbols,
            beta=atom_set.beta,
            cell=atom_set.cell,
            pbc=atom_set.pbc,
            device=device,
            dtype=dtype,
            hessian_dtype=hessian_dtype,
        )
    # the penalty ties the handshake atoms inside the mesh to it (a grown core's cut mesh can
    # leave a few just inside the handshake, β near 1, outside: coupling.core_cells)
    handshake_atoms = np.flatnonzero(atom_set.region[:n_free] == REGION_HANDSHAKE)
    penalty_atoms = handshake_atoms[points_in_mesh(problem.V, X[handshake_atoms])]
    model = BlendedModel(
        problem=problem,
        atoms=blended,
        n_free=n_free,
        n_pad=atom_set.n_pad,
        pad_interpolation=p1_interpolation_matrix(problem.V, X[n_free:]),
        penalty_atoms=penalty_atoms,
        penalty_interpolation=p1_interpolation_matrix(problem.V, X[penalty_atoms]),
        kappa=kappa,
        grown=bool(handshake.balls),
    )
    preconditioner = _preconditioner(model, atom_set, blended)
    correction = None
    if ghost_force_correction:
        sites = perfect_atoms if perfect_atoms is not None else atoms
        correction = _correction(model, atom_set, sites, handshake, potential, device, dtype)
    return CoupledSystem(
        model=model,
        problem=problem,
        handshake=handshake,
        atoms=atom_set,
        preconditioner=preconditioner,
        correction=correction,
    )


def outer_boundary_dofs(problem: HyperelasticProblem) -> np.ndarray:
    """Local unrolled FE DOF indices on the outer boundary facets."""
    md = problem.mesh_data
    fdim = md.mesh.topology.dim - 1
    md.mesh.topology.create_connectivity(fdim, fdim + 1)  # a refined mesh may lack it
    facets = md.facet_tags.find(md.outer_tag)
    nodes = dolfinx.fem.locate_dofs_topological(problem.V, fdim, facets)
    return (3 * np.asarray(nodes, dtype=np.int64)[:, None] + np.arange(3)).ravel()


def _nearest_neighbour_distance(
    X: np.ndarray, cell: np.ndarray, pbc: tuple[bool, bool, bool]
) -> float:
    box, pbc3 = vesin_box(X, cell, pbc, 6.0)
    _, _, d = vesin.NeighborList(cutoff=6.0, full_list=False).compute(X, box, pbc3, "ijd")
    return float(d.min())
