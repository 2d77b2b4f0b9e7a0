"""Build a coupled problem from atoms, a handshake and a mesh, and solve it in load steps.

The atoms passed in are the lattice sites (defect already applied) of at least the core,
the handshake and the pad; sites farther out are dropped. Free atoms (core and handshake)
are unknowns; pad atoms follow the FE field. Boundary conditions act on the FE outer
boundary: a homogeneous far-field ``F`` (``u = (F − I) X``) or a displacement function.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import dolfinx
import numpy as np
import torch
import vesin
from petsc4py import PETSc
from scipy.spatial import cKDTree

from atomistic.regions import REGION_CORE, REGION_FAR, REGION_HANDSHAKE, REGION_PAD
from coupling.blended_atoms import BlendedAtoms
from coupling.handshake import Handshake
from coupling.interpolation import p1_interpolation_matrix
from coupling.model import BlendedModel
from coupling.preconditioner import atom_laplacian, fit_laplacian_scale, vesin_box
from coupling.solver import SolveResult, solve

__all__ = ["CoupledSystem", "build_coupled_system"]

Displacement = Callable[[np.ndarray], np.ndarray]  # X (n, 3) -> u (n, 3)


@dataclass(kw_only=True)
class CoupledSystem:
    """Everything needed to minimise, inspect and write one coupled problem.

    Attributes:
        model: the blended energy.
        z: current state ``(u_A, U)``.
        problem: the continuum problem.
        handshake: the geometry.
        positions: ``(n_A + n_P, 3)`` reference sites, free atoms first.
        symbols: their chemical symbols.
        beta: ``(n_A + n_P,)`` blending weights.
        region: ``(n_A + n_P,)`` region codes (core, handshake, pad).
        n_free: number of free atoms.
        preconditioner: arguments of the monolithic preconditioner.
        ghost_force_correction: whether the correction is applied.
        fe_correction_mask: ``(n_fe_owned,)`` False on outer-boundary DOFs.
        perfect_atoms: β-weighted defect-free lattice (rank 0) for the ghost-force correction.
        perfect_site: ``(n_A + n_P,)`` index of each site in ``perfect_atoms`` (−1: none).
        background: ``(displacement, gradient)`` of the background field, if any.
        site_atoms: lattice sites (ASE ``Atoms``) of the fully atomistic crystal used by
            :meth:`update_correction`.
    """

    model: BlendedModel
    z: PETSc.Vec
    problem: object
    handshake: Handshake
    positions: np.ndarray
    symbols: list[str]
    beta: np.ndarray
    region: np.ndarray
    n_free: int
    preconditioner: dict
    ghost_force_correction: bool
    fe_correction_mask: np.ndarray
    perfect_atoms: BlendedAtoms | None
    perfect_site: np.ndarray
    background: tuple | None = None
    site_atoms: object = None
    _full_lattice: tuple | None = None
    _site_interpolation: object = None
    _continuum_anchor: np.ndarray | None = None

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

    def set_boundary(self, displacement: Displacement, *, predictor: Displacement) -> None:
        """Impose Dirichlet values on the outer boundary and reset the ghost-force correction.

        The correction is that of the defect-free lattice at the homogeneous predictor
        (``∇E`` of the β-weighted perfect lattice and of the continuum at ``(F − I) X``), with
        any background field (a dislocation's) left out: a dead load that passes the patch
        test exactly and, being the same around the whole handshake, pushes no defect.
        :meth:`update_correction` then recomputes it at a solution.

        Args:
            displacement: ``X (n, 3) -> u (n, 3)`` on the outer boundary.
            predictor: the homogeneous far-field state used by the correction.
        """
        tag = self.problem.mesh_data.outer_tag
        self.problem.set_dirichlet(tag=tag, displacement=lambda X: displacement(X.T).T)
        self.model.refresh_dirichlet()
        z_bc = self.state_from(displacement)
        arr = self.z.getArray()
        model = self.model
        lay = model.layout
        rows = lay.n_atom_dofs + model.bc_owned
        arr[rows] = z_bc.getArray(readonly=True)[rows]
        model.correction = None
        self._continuum_anchor = None
        background = self.background
        if background is not None:
            self.set_background(None)
        model.predictor = self.state_from(predictor)
        if self.ghost_force_correction:
            model.set_ghost_force_correction(
                model.predictor,
                atom_gradient=self._perfect_gradient(predictor),
                fe_mask_local=self.fe_correction_mask,
            )
            # the continuum's share of the physical force at the predictor, ∫ P_F : ∇(w v)
            # = residual + ∫ (P_F ∇w) · v: zero but for quadrature; update_correction
            # measures the shares from it, so a homogeneous state keeps this exact correction
            model._split(model.predictor)  # the FE field at the predictor
            residual = self.problem.residual().getArray(readonly=True)[: lay.n_fe_owned]
            self._continuum_anchor = residual + self.problem.weight_residual()
        if background is not None:
            self.set_background(*background)
            # the predictor of a dislocation: atoms on its field, FE (the correction to it) at 0
            z = self.state_from(predictor)
            free = self.positions[: self.n_free]
            lay.set_atoms(z, predictor(free) + background[0](free))
            model.predictor = z

    def update_correction(self) -> float:
        """Recompute the ghost-force correction at the current state ``z`` (one more pass).

        The ghost force of a state is the blended gradient minus each unknown's share of the
        physical forces at that state: an atom's share is ``β_i`` times its force in the fully
        atomistic crystal (every site within ``2 r_cut`` displaced: free atoms as in ``z``,
        the others by the FE field plus any background); an FE node's share is the
        continuum residual tested with ``(1 − β) v``, i.e. the blended residual plus
        ``∫ (P ∇w) · v`` (``w`` the continuum weight). The shares add up to the physical
        force wherever atoms and continuum overlap, so subtracting the ghost force leaves a
        consistent force balance. The continuum part is measured from the predictor's
        exact discrete correction, so a homogeneous state still passes the patch test to
        round-off. Repeated to a fixed point this is a force-based blending: the ghost
        forces of the solution itself, not of a predictor whose core differs from it, are
        removed. Needs ``site_atoms`` that reach ``2 r_cut`` beyond the free atoms and hold
        no site in the continuum's hole (a dislocation's lattice; not a void).

        Returns:
            The largest change of the correction on any atom or node (eV/Å).

        Raises:
            RuntimeError: the correction is off or :meth:`set_boundary` was not called.
        """
        if not self.ghost_force_correction or self._continuum_anchor is None:
            raise RuntimeError("update_correction needs the correction on and set_boundary")
        model = self.model
        lay = model.layout
        z = self.z
        s = model._split(z)
        _, grad = model._atoms_call("energy_gradient", s.u_atoms)
        sites = self._site_displacements(z)
        physical = self._atomistic_gradient(sites) if lay.rank == 0 else None
        physical = model.comm.bcast(physical, root=0)
        atoms = grad[: self.n_free] - self.beta[: self.n_free, None] * physical
        continuum = self._continuum_anchor - self.problem.weight_residual()
        g = lay.create_vec()
        model._assemble(atoms, continuum, grad[self.n_free :], np.zeros_like(s.gap), g)
        g.getArray()[lay.n_atom_dofs :] *= self.fe_correction_mask.astype(float)
        model._zero_dirichlet(g)
        change = g.copy()
        change.axpy(-1.0, model.correction)
        model.correction = g
        model.predictor = z.copy()
        return max(model.max_forces(change))

    def _site_displacements(self, z: PETSc.Vec) -> np.ndarray:
        """Displacements of every site of ``site_atoms`` at ``z`` (collective; rank 0 uses
        them): free atoms their own, the other sites the FE field plus any background."""
        lay = self.model.layout
        full, index = self._full_lattice_sites()
        if self._site_interpolation is None:
            X = np.asarray(full.reference) if lay.rank == 0 else None
            X = self.model.comm.bcast(X, root=0)
            others = np.ones(len(X), dtype=bool)
            others[index] = False
            interp = p1_interpolation_matrix(self.problem.V, X[others])
            self._site_interpolation = (X, others, interp)
        X, others, interp = self._site_interpolation
        u = np.zeros_like(X)
        u[others] = lay.allsum(interp @ lay.fe_of(z)).reshape(-1, 3)
        if self.background is not None:
            u[others] += self.background[0](X[others])
        u[index] = lay.atoms_of(z)  # collective
        return u

    def _full_lattice_sites(self):
        """``(sites, index)``: every site of ``site_atoms`` at β = 1 (rank 0; None elsewhere)
        and the row of each free atom among them (every rank)."""
        if self._full_lattice is None:
            full = index = None
            if self.model.comm.rank == 0:
                blended = self.model.atoms
                full = _blended_sites(
                    self.site_atoms,
                    np.ones(len(self.site_atoms)),
                    potential=blended.potential,
                    device=blended.device,
                    dtype=blended.dtype,
                )
                dist, index = cKDTree(full.reference).query(
                    self.positions[: self.n_free], distance_upper_bound=1e-6
                )
                if not np.all(np.isfinite(dist)):
                    raise ValueError("site_atoms must contain every free atom's site")
            index = self.model.comm.bcast(index, root=0)
            self._full_lattice = (full, index)
        return self._full_lattice

    def _atomistic_gradient(self, sites: np.ndarray) -> np.ndarray:
        """``(n_A, 3)`` gradient of the plain (β = 1) atomistic energy on the free atoms, with
        the sites of ``site_atoms`` displaced by ``sites`` (rank 0): the forces the atoms
        would feel in the fully atomistic crystal."""
        full, index = self._full_lattice_sites()
        _, grad = full.energy_gradient(sites)
        full.release()
        return grad[index]

    def set_background(
        self, displacement: Displacement | None, gradient: Callable | None = None
    ) -> None:
        """Carry a prescribed displacement field ``u_bg`` (e.g. a Volterra dislocation).

        The FE unknown becomes the continuous correction ``U`` to ``u_bg``: the continuum
        sees ``F = I + ∇U + ∇u_bg`` and pad/handshake atoms are tied to ``U(X) + u_bg(X)``.
        ``u_bg`` may jump across a branch cut by a lattice vector. Atoms keep absolute
        displacements. The problem must be built with ``with_background=True``.

        Args:
            displacement: ``X (n, 3) -> u_bg (n, 3)`` in Å, or None to remove it.
            gradient: ``X (n, 3) -> ∇u_bg (n, 3, 3)``.
        """
        model = self.model
        if displacement is None:
            self.problem.set_background(gradient=None)
            model.set_offsets(
                pad=np.zeros((model.n_pad, 3)), penalty=np.zeros((len(model.penalty_atoms), 3))
            )
            self.background = None
            return
        self.problem.set_background(gradient=gradient)
        X = self.positions
        model.set_offsets(
            pad=displacement(X[self.n_free :]), penalty=displacement(X[model.penalty_atoms])
        )
        self.background = (displacement, gradient)

    def _perfect_gradient(self, predictor: Displacement) -> np.ndarray:
        """``∇ Σ β ε`` of the perfect lattice at ``predictor``, on this system's sites."""
        grad = None
        if self.model.comm.rank == 0:
            perfect, site = self.perfect_atoms, self.perfect_site
            _, g = perfect.energy_gradient(predictor(perfect.reference))
            grad = np.zeros_like(self.positions)
            grad[site >= 0] = g[site[site >= 0]]
            perfect.release()
        return self.model.comm.bcast(grad, root=0)

    def solve(
        self,
        *,
        fmax: float = 1e-6,
        max_iterations: int = 100,
        linear_solver: str = "auto",
        tangent_tolerance: float = 1e-2,
        progress=None,
    ) -> SolveResult:
        """Minimise from the current state (updated in place); the keywords are those of
        :func:`coupling.solver.solve`."""
        return solve(
            self.model,
            self.z,
            fmax=fmax,
            max_iterations=max_iterations,
            preconditioner=self.preconditioner,
            linear_solver=linear_solver,
            tangent_tolerance=tangent_tolerance,
            progress=progress,
        )

    def ghost_forces(self) -> tuple[float, float]:
        """Max ``|∇E|`` on atoms and FE nodes at the predictor, without correction (eV/Å)."""
        if self.model.predictor is None:
            raise RuntimeError("set_boundary must be called first")
        saved = self.model.correction
        self.model.correction = None
        g = self.model.layout.create_vec()
        self.model.energy_gradient(self.model.predictor, g)
        self.model.correction = saved
        return self.model.max_forces(g)


def homogeneous(F: np.ndarray) -> Displacement:
    """``X ↦ (F − I) X`` for a 3×3 ``F``."""
    D = np.asarray(F, dtype=float) - np.eye(3)
    return lambda X: np.asarray(X, dtype=float).reshape(-1, 3) @ D.T


def _perfect_lattice(perfect_atoms, X, handshake, *, potential, device, dtype, rank):
    """β-weighted perfect lattice (rank 0) and the index of each of ``X`` in it (−1: none)."""
    Xp = np.asarray(perfect_atoms.positions, dtype=float)
    keep = handshake.classify(Xp) != REGION_FAR
    Xp = Xp[keep]
    dist, idx = cKDTree(Xp).query(X, distance_upper_bound=1e-6)
    site = np.where(np.isfinite(dist), idx, -1)
    atoms = None
    if rank == 0:
        atoms = _blended_sites(
            perfect_atoms[np.flatnonzero(keep)],
            handshake.beta(Xp),
            potential=potential,
            device=device,
            dtype=dtype,
        )
    return atoms, site


def _blended_sites(sites, beta, *, potential, device, dtype) -> BlendedAtoms:
    """A :class:`BlendedAtoms` on the sites of an ASE ``Atoms`` (their cell and pbc)."""
    return BlendedAtoms(
        potential=potential,
        reference_positions=np.asarray(sites.positions, dtype=float),
        symbols=list(sites.get_chemical_symbols()),
        beta=beta,
        cell=np.asarray(sites.cell.array, dtype=float),
        pbc=tuple(bool(p) for p in sites.pbc),
        device=device,
        dtype=dtype,
    )


def build_coupled_system(
    *,
    potential,
    atoms,
    handshake: Handshake,
    problem,
    kappa: float,
    ghost_force_correction: bool = True,
    perfect_atoms=None,
    device=None,
    dtype: torch.dtype = torch.float64,
    hessian_dtype: torch.dtype | None = None,
) -> CoupledSystem:
    """Assemble a :class:`CoupledSystem`.

    Args:
        potential: project potential for the atoms (the continuum law is in ``problem``).
        atoms: ASE ``Atoms`` of the lattice sites with the defect applied; ``cell``/``pbc``
            give the slab periodicity (2.5D: periodic along ``z`` only).
        handshake: core, handshake and pad geometry.
        problem: continuum problem built with weight ``handshake.continuum_weight``.
        kappa: penalty stiffness in eV/Å².
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
    X_all = np.asarray(atoms.positions, dtype=float)
    codes_all = handshake.classify(X_all)
    free = np.flatnonzero((codes_all == REGION_CORE) | (codes_all == REGION_HANDSHAKE))
    pad = np.flatnonzero(codes_all == REGION_PAD)
    order = np.concatenate([free, pad])
    X = X_all[order]
    codes = codes_all[order]
    beta = handshake.beta(X)
    all_symbols = atoms.get_chemical_symbols()
    symbols = [all_symbols[k] for k in order]
    cell = np.asarray(atoms.cell.array, dtype=float)
    pbc = tuple(bool(p) for p in atoms.pbc)
    n_free = len(free)
    comm = problem.V.mesh.comm
    blended = None
    if comm.rank == 0:
        blended = BlendedAtoms(
            potential=potential,
            reference_positions=X,
            symbols=symbols,
            beta=beta,
            cell=cell,
            pbc=pbc,
            device=device,
            dtype=dtype,
            hessian_dtype=hessian_dtype,
        )
    penalty_atoms = np.flatnonzero(codes[:n_free] == REGION_HANDSHAKE)
    model = BlendedModel(
        problem=problem,
        atoms=blended,
        n_free=n_free,
        n_pad=len(pad),
        pad_interpolation=p1_interpolation_matrix(problem.V, X[n_free:]),
        penalty_atoms=penalty_atoms,
        penalty_interpolation=p1_interpolation_matrix(problem.V, X[penalty_atoms]),
        kappa=kappa,
    )
    # preconditioner: Exp Laplacian scaled to the atomistic Hessian at the reference state
    r_nn = _nearest_neighbour_distance(X, cell, pbc)
    L = mu = None
    if comm.rank == 0:
        L = atom_laplacian(positions=X, beta=beta, cell=cell, pbc=pbc, r_nn=r_nn)
        zero = np.zeros_like(X)
        mu = fit_laplacian_scale(
            lambda v: blended.hessian_vector(zero, v),
            X,
            atom_laplacian(positions=X, beta=beta, cell=cell, pbc=pbc, r_nn=r_nn, shift=0.0),
        )
        blended.release()
    mu = comm.bcast(mu, root=0)
    perfect = perfect_site = None
    if ghost_force_correction:
        perfect, perfect_site = _perfect_lattice(
            perfect_atoms if perfect_atoms is not None else atoms,
            X,
            handshake,
            potential=potential,
            device=device,
            dtype=dtype,
            rank=comm.rank,
        )
    fe_mask = np.ones(model.layout.n_fe_owned, dtype=bool)
    outer = outer_boundary_dofs(problem)
    fe_mask[outer[outer < len(fe_mask)]] = False
    system = CoupledSystem(
        model=model,
        z=model.layout.create_vec(),
        problem=problem,
        handshake=handshake,
        positions=X,
        symbols=symbols,
        beta=beta,
        region=codes,
        n_free=n_free,
        preconditioner=dict(
            L=L,
            mu=mu,
            n_free=n_free,
            penalty_atoms=penalty_atoms,
            kappa=kappa,
            pad_interpolation=model.I_P,
            penalty_interpolation=model.I_H,
        ),
        ghost_force_correction=ghost_force_correction,
        fe_correction_mask=fe_mask,
        perfect_atoms=perfect,
        perfect_site=perfect_site,
        site_atoms=perfect_atoms if perfect_atoms is not None else atoms,
    )
    return system


def outer_boundary_dofs(problem) -> np.ndarray:
    """Local unrolled FE DOF indices on the outer boundary facets."""
    md = problem.mesh_data
    mesh = md.mesh
    fdim = mesh.topology.dim - 1
    facets = md.facet_tags.find(md.outer_tag)
    nodes = dolfinx.fem.locate_dofs_topological(problem.V, fdim, facets)
    return (3 * np.asarray(nodes, dtype=np.int64)[:, None] + np.arange(3)).ravel()


def _nearest_neighbour_distance(X, cell, pbc) -> float:
    box, pbc3 = vesin_box(X, cell, pbc, 6.0)
    _, _, d = vesin.NeighborList(cutoff=6.0, full_list=False).compute(X, box, pbc3, "ijd")
    return float(d.min())
