"""The blended energy ``E(u, U)``, its exact gradient and Hessian-vector products.

    E(u, U) = Σ_{i∈A∪P} β_i ε_i(u_A, u_P = I_P U)  +  ∫ (1 − β) W(∇U) dx  − (external work)
              + (κ/2) Σ_{i∈H} |u_i − (I_H U)_i|²  −  ⟨g_F, z − z_F⟩

=========================  ====================================================
term                       where it is computed
=========================  ====================================================
atoms (``Σ β ε``)          :class:`~coupling.blended_atoms.BlendedAtoms`, rank 0, torch
continuum                  the DOLFINx problem (weight ``1 − β``), distributed
pad slaving ``u_P = I_P U + b_P``  sparse ``I_P`` per rank; ``I_Pᵀ`` by reverse scatter
penalty                    sparse ``I_H``; handshake atoms ``H`` (``0 < β < 1``)
ghost-force correction     ``g_F = ∇E(z_F)`` at the homogeneous predictor ``z_F``
=========================  ====================================================

``b_P`` and ``b_H`` are background displacements at the pad and handshake sites (zero
unless a background field, e.g. a Volterra dislocation, is set; the continuum then uses
``F = I + ∇U + ∇u_bg``, so ``U`` is the continuous correction to the background).

``z = (u_A, U)`` is laid out by :class:`~coupling.layout.MonolithicLayout`. Dirichlet FE
DOFs are held fixed: their gradient entries are zero and the Hessian acts as the identity
on them.

Ghost-force correction (DESIGN.md §2): ``E_gfc = E − ⟨g_F, z − z_F⟩`` with ``g_F`` the
gradient of the blended energy of the *defect-free* lattice at the homogeneous predictor
``z_F``, so the defect's own forces are never corrected away. Outer-boundary FE DOFs are
excluded (their force there is the physical traction). A uniform deformation of the perfect
lattice is then an exact equilibrium (the patch test).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
from mpi4py import MPI
from petsc4py import PETSc

from continuum.problem import HyperelasticProblem
from coupling.blended_atoms import BlendedAtoms
from coupling.layout import MonolithicLayout

__all__ = ["BlendedModel", "Correction", "EnergyParts", "SplitState"]


@dataclass(kw_only=True)
class EnergyParts:
    """The terms of the blended energy in eV at one state."""

    atoms: float = 0.0
    continuum: float = 0.0
    penalty: float = 0.0
    correction: float = 0.0

    @property
    def total(self) -> float:
        """The whole blended energy, eV."""
        return self.atoms + self.continuum + self.penalty + self.correction


@dataclass(kw_only=True)
class SplitState:
    """A monolithic state split into what each term of the energy needs.

    Attributes:
        u_atoms: ``(n_A + n_P, 3)`` displacements of free then pad atoms, on every rank.
        U_local: ``(n_fe_local,)`` FE displacements with ghosts.
        gap: ``(n_H, 3)`` ``u_H − I_H U`` of the handshake atoms.
    """

    u_atoms: np.ndarray
    U_local: np.ndarray
    gap: np.ndarray
    parts: EnergyParts = field(default_factory=EnergyParts)


@dataclass(frozen=True, kw_only=True)
class Correction:
    """The ghost-force correction term ``−⟨g, z − z_g⟩`` of the energy.

    Attributes:
        gradient: ``g``, the ghost forces removed (a monolithic vector).
        anchor: ``z_g``, the state the term is measured from (it shifts the energy by a
            constant, never the forces).
    """

    gradient: PETSc.Vec
    anchor: PETSc.Vec

    def copy(self) -> Correction:
        """A deep copy (the vectors are copied)."""
        return Correction(gradient=self.gradient.copy(), anchor=self.anchor.copy())

    def energy(self, z: PETSc.Vec) -> float:
        """``−⟨g, z − z_g⟩`` in eV."""
        d = z.copy()
        d.axpy(-1.0, self.anchor)
        value = -self.gradient.dot(d).real
        d.destroy()
        return float(value)


#: Which FE nodes the solver holds: ``(weight, weight when coupled, coupling)``. A node from
#: which no pad or handshake atom is interpolated is held when the continuum weight on its
#: support is below the first fraction of the support's area or volume; a node that such
#: atoms reach, when the weight is below the second and the atoms carry less than the third
#: of it (``Σ_a N_i(X_a)²``, in atoms sitting on the node).
#:
#: A grown region (a union of balls) sits on a mesh graded for the region before it, and
#: leaves nodes with a weight of 1e-3 next to its core that Newton cannot place (directions
#: of hundreds of Å, a solve stuck at max|f| 2e-2 eV/Å on ``cases/adaptive-expand``). A
#: one-ball region sits on a mesh graded for it, where holding such nodes costs accuracy
#: instead (the void of ``cases/void-cu-3d`` at R = 21.5 Å: strain error 0.94 % → 1.00 %
#: with the grown thresholds, which held 55 of its 21 783 nodes; the strict ones hold none).
IDLE_GROWN = (1e-2, 1e-2, 1e-3)
IDLE_STRICT = (1e-3, 1e-4, 1e-3)


def _idle_dofs(
    problem: HyperelasticProblem,
    layout: MonolithicLayout,
    pad_interpolation: sp.csr_matrix,
    penalty_interpolation: sp.csr_matrix,
    *,
    grown: bool = False,
) -> np.ndarray:
    """Owned FE DOFs the energy (almost) does not depend on (local indices, collective).

    A node whose support has a small continuum weight ``1 − β`` (``∫ (1 − β) φ_i / ∫ φ_i``)
    and from which no pad or handshake atom is interpolated, or hardly any (``Σ_a
    N_i(X_a)²``), has a Hessian row that is zero or nearly so (thresholds:
    :data:`IDLE_GROWN` for a grown region, else :data:`IDLE_STRICT`).
    This happens where a grown core covers cells that the mesh keeps because a corner of
    them still reaches into the handshake: the Newton direction along such a node
    is a ratio of two tiny numbers (hundreds of Å were seen), and every trial step of the
    line search then folds a cell. The solver holds these DOFs fixed like Dirichlet DOFs at
    the value they were given (the carried field, which is exact on a patch test). The
    energy they leave out is bounded by the two fractions above.
    """
    import ufl
    from dolfinx import fem, la

    V = problem.V
    scalar = fem.functionspace(V.mesh, ("Lagrange", 1))
    test = ufl.TestFunction(scalar)
    n_owned_nodes = layout.n_fe_owned // 3
    sums = []
    for integrand in (problem._weight * test, test):
        vec = fem.assemble_vector(fem.form(integrand * problem._dx))
        vec.scatter_reverse(la.InsertMode.add)
        sums.append(vec.array[:n_owned_nodes].copy())
    weight, measure = sums
    relative = weight / np.maximum(measure, 1e-300)
    coupled = np.zeros(layout.n_fe_local)
    for matrix in (pad_interpolation, penalty_interpolation):
        m = matrix.tocsr()
        coupled += np.asarray(m.multiply(m).sum(axis=0)).ravel()[: layout.n_fe_local]
    # each component's column holds the same Σ N_i(X_a)²; the mean over the three keeps that
    coupled = layout.accumulate_fe(coupled).reshape(-1, 3).mean(axis=1)
    alone, weak, coupling = IDLE_GROWN if grown else IDLE_STRICT
    idle = (relative < alone) & (coupled == 0.0)
    idle |= (relative < weak) & (coupled < coupling)
    return (3 * np.flatnonzero(idle)[:, None] + np.arange(3)).ravel().astype(np.int64)


class BlendedModel:
    """The coupled energy over ``z = (u_A, U)``.

    Args:
        problem: the continuum problem (``V``, ``u``, ``energy``, ``residual``, ``tangent``,
            ``dirichlet_dofs``), built with weight ``1 − β``.
        atoms: :class:`~coupling.blended_atoms.BlendedAtoms` over free then pad atoms (rank 0;
            ``None`` on other ranks).
        n_free: number of free atoms ``n_A`` (core and handshake).
        n_pad: number of pad atoms ``n_P``.
        pad_interpolation: ``I_P``, ``(3 n_P, n_fe_local)`` on this rank.
        penalty_atoms: ``(n_H,)`` indices of handshake atoms among the free atoms.
        penalty_interpolation: ``I_H``, ``(3 n_H, n_fe_local)`` on this rank.
        kappa: penalty stiffness ``κ`` in eV/Å².
        grown: the atomistic region has grown beyond its first ball (which FE nodes are
            held: :data:`IDLE_GROWN` or :data:`IDLE_STRICT`).

    Attributes:
        tangent_tolerance: passed to the continuum material by :meth:`tangent`: a cell keeps
            its Cauchy–Born tangent until its ``F`` moves by more than this (0: exact; the
            solver sets it for the duration of a solve).
    """

    def __init__(
        self,
        *,
        problem: HyperelasticProblem,
        atoms: BlendedAtoms | None,
        n_free: int,
        n_pad: int,
        pad_interpolation: sp.csr_matrix,
        penalty_atoms: np.ndarray,
        penalty_interpolation: sp.csr_matrix,
        kappa: float,
        grown: bool = False,
    ) -> None:
        self.problem = problem
        self.atoms = atoms
        self.layout = MonolithicLayout(problem.V, n_atoms=n_free)
        self.comm = self.layout.comm
        self.n_free, self.n_pad = int(n_free), int(n_pad)
        self.I_P = pad_interpolation.tocsr()
        self.I_H = penalty_interpolation.tocsr()
        self.penalty_atoms = np.asarray(penalty_atoms, dtype=np.int64)
        self.kappa = float(kappa)
        self.idle_owned = _idle_dofs(problem, self.layout, self.I_P, self.I_H, grown=grown)
        self.refresh_dirichlet()
        self.pad_offset = np.zeros((self.n_pad, 3))
        self.penalty_offset = np.zeros((len(self.penalty_atoms), 3))
        self._correction: Correction | None = None
        self._state: SplitState | None = None
        self._state_key: np.ndarray | None = None
        self._tangent: PETSc.Mat | None = None
        self._tangent_matrix: PETSc.Mat | None = None  # reused storage (same sparsity)
        self.tangent_tolerance = 0.0

    def refresh_dirichlet(self) -> None:
        """Re-read the constrained FE DOFs from the problem (after ``set_dirichlet``).

        ``dirichlet_owned`` holds the outer boundary's DOFs; ``bc_owned``, the DOFs the
        solver holds fixed, adds :attr:`idle_owned` to them.
        """
        dofs = np.asarray(self.problem.dirichlet_dofs(), dtype=np.int64)
        self.dirichlet_owned = np.unique(dofs[dofs < self.layout.n_fe_owned])
        self.bc_owned = np.union1d(self.dirichlet_owned, self.idle_owned)

    def set_offsets(self, *, pad: np.ndarray, penalty: np.ndarray) -> None:
        """Background displacements added to ``I_P U`` ``(n_P, 3)`` and ``I_H U`` ``(n_H, 3)``."""
        self.pad_offset = np.asarray(pad, dtype=np.float64).reshape(self.n_pad, 3)
        self.penalty_offset = np.asarray(penalty, dtype=np.float64).reshape(-1, 3)
        self._state = None
        self._state_key = None

    # -- state -----------------------------------------------------------------------------
    def split(self, z: PETSc.Vec) -> SplitState:
        """``z`` split into atoms, FE field and handshake gaps (cached per state; collective).

        Also leaves the problem's FE function at ``z``'s FE block.
        """
        key = z.getArray(readonly=True)
        hit = (
            self._state is not None
            and self._state_key is not None
            and np.array_equal(self._state_key, key)
        )
        # every rank must take the same branch: the miss path is collective
        if self.comm.size > 1:
            hit = bool(self.comm.allreduce(hit, op=MPI.LAND))
        if hit:
            assert self._state is not None
            return self._state
        lay = self.layout
        u_free = lay.atoms_of(z)
        U_local = lay.fe_of(z, out=self.problem.u)
        u_pad = lay.allsum(self.I_P @ U_local).reshape(-1, 3) + self.pad_offset
        u_H_fe = lay.allsum(self.I_H @ U_local).reshape(-1, 3) + self.penalty_offset
        gap = u_free[self.penalty_atoms] - u_H_fe
        self._state = SplitState(u_atoms=np.vstack([u_free, u_pad]), U_local=U_local, gap=gap)
        self._state_key = key.copy()
        self._tangent = None
        return self._state

    def _atoms_call(self, method: str, *args: Any) -> Any:
        result = getattr(self.atoms, method)(*args) if self.comm.rank == 0 else None
        return self.comm.bcast(result, root=0)

    def atoms_energy_gradient(self, u_atoms: np.ndarray) -> tuple[float, np.ndarray]:
        """``Σ β ε`` (eV) and its gradient ``(n_A + n_P, 3)`` (eV/Å), on every rank."""
        return self._atoms_call("energy_gradient", u_atoms)

    def assemble(
        self,
        atom_part: np.ndarray,
        fe_owned: np.ndarray,
        pad_part: np.ndarray,
        penalty_part: np.ndarray,
        out: PETSc.Vec,
    ) -> None:
        """Combine per-term contributions into the monolithic vector ``out``."""
        lay = self.layout
        a = atom_part.copy()
        a[self.penalty_atoms] += self.kappa * penalty_part
        fe_local = self.I_P.T @ pad_part.ravel() - self.kappa * (self.I_H.T @ penalty_part.ravel())
        fe = fe_owned + lay.accumulate_fe(fe_local)
        lay.set_atoms(out, a)
        lay.set_fe(out, fe)

    # -- energy and gradient --------------------------------------------------------------
    def energy_parts(self, z: PETSc.Vec) -> EnergyParts:
        """Each term of ``E`` at ``z`` (eV); the correction term is 0 until it is set."""
        s = self.split(z)
        e_atoms, _ = self.atoms_energy_gradient(s.u_atoms)
        parts = EnergyParts(
            atoms=e_atoms,
            continuum=self.problem.energy(),
            penalty=0.5 * self.kappa * float(np.sum(s.gap**2)),
        )
        if self._correction is not None:
            parts.correction = self._correction.energy(z)
        return parts

    def energy_gradient(self, z: PETSc.Vec, g: PETSc.Vec) -> float:
        """Write ``∇E(z)`` into ``g`` and return ``E(z)`` in eV."""
        s = self.split(z)
        e_atoms, grad = self.atoms_energy_gradient(s.u_atoms)
        residual = self.problem.residual()
        fe_owned = residual.getArray(readonly=True)[: self.layout.n_fe_owned].copy()
        self.assemble(grad[: self.n_free], fe_owned, grad[self.n_free :], s.gap, g)
        energy = e_atoms + self.problem.energy() + 0.5 * self.kappa * float(np.sum(s.gap**2))
        if self._correction is not None:
            energy += self._correction.energy(z)
            g.axpy(-1.0, self._correction.gradient)
        self.zero_dirichlet(g)
        return energy

    def zero_dirichlet(self, g: PETSc.Vec) -> None:
        """Zero the entries of the Dirichlet FE DOFs of ``g``."""
        g.getArray()[self.layout.n_atom_dofs + self.bc_owned] = 0.0

    # -- Hessian ---------------------------------------------------------------------------
    def tangent(self, z: PETSc.Vec) -> PETSc.Mat:
        """The assembled FE tangent at ``z`` (cached per state).

        With :attr:`tangent_tolerance` ``> 0`` the material law's tangent is recomputed only
        in cells whose deformation gradient moved by more than that since it was last
        computed (see :class:`~continuum.material.QuadratureMaterial`); 0 (default): exact.
        Each state's matrix is assembled into the same storage: a matrix returned earlier is
        overwritten.
        """
        self.split(z)
        if self._tangent is None:
            material = getattr(self.problem, "material", None)
            if material is not None:
                material.tangent_tolerance = self.tangent_tolerance
            self._tangent = self.problem.tangent(out=self._tangent_matrix)
            self._tangent_matrix = self._tangent
        return self._tangent

    def freeze_linearisation(self) -> bool:
        """Fix the continuum cells that take the linearised law.

        See :meth:`continuum.material.QuadratureMaterial.freeze_linearisation`. Returns
        whether a linearisation is in force.
        """
        material = getattr(self.problem, "material", None)
        if material is None or not material.freeze_linearisation():
            return False
        self._tangent = None
        return True

    def hessian_vector(self, z: PETSc.Vec, v: PETSc.Vec, out: PETSc.Vec) -> None:
        """``out = H(z) v``; the identity on Dirichlet DOFs."""
        s = self.split(z)
        lay = self.layout
        vz = v.copy()
        self.zero_dirichlet(vz)
        v_free = lay.atoms_of(vz)
        v_local = lay.fe_of(vz)
        v_pad = lay.allsum(self.I_P @ v_local).reshape(-1, 3)
        v_gap = v_free[self.penalty_atoms] - lay.allsum(self.I_H @ v_local).reshape(-1, 3)
        hv = self._atoms_call("hessian_vector", s.u_atoms, np.vstack([v_free, v_pad]))
        K = self.tangent(z)
        x_fe, y_fe = K.createVecRight(), K.createVecLeft()
        x_fe.getArray()[:] = v_local[: lay.n_fe_owned]
        K.mult(x_fe, y_fe)
        fe_owned = y_fe.getArray(readonly=True).copy()
        self.assemble(hv[: self.n_free], fe_owned, hv[self.n_free :], v_gap, out)
        self.zero_dirichlet(out)
        rows = lay.n_atom_dofs + self.bc_owned
        out.getArray()[rows] = v.getArray(readonly=True)[rows]

    # -- ghost-force correction ------------------------------------------------------------
    @property
    def correction(self) -> Correction | None:
        """The correction term in force (None: off)."""
        return self._correction

    def set_correction(self, correction: Correction | None) -> None:
        """Use ``correction`` (None: none) from now on."""
        self._correction = correction

    @contextmanager
    def without_correction(self) -> Iterator[None]:
        """The plain blended energy inside the block (the ghost forces show)."""
        saved = self._correction
        self._correction = None
        try:
            yield
        finally:
            self._correction = saved

    def correction_gradient(
        self,
        predictor: PETSc.Vec,
        *,
        atom_gradient: np.ndarray,
        fe_mask_local: np.ndarray,
    ) -> PETSc.Vec:
        """``g_F = ∇E(z_F)`` with the atoms' part ``atom_gradient`` (collective).

        Args:
            predictor: ``z_F``, the homogeneous far-field state.
            atom_gradient: ``(n_A + n_P, 3)`` gradient of ``Σ β ε`` of the *perfect* lattice at
                the predictor, on the free and pad sites of this system (zero on sites the
                perfect lattice lacks), on every rank. Using the perfect lattice keeps the
                defect's own forces out of the correction.
            fe_mask_local: ``(n_fe_owned,)`` bool, False on DOFs whose force at the predictor
                is physical (the outer boundary).
        """
        s = self.split(predictor)
        residual = self.problem.residual()
        fe_owned = residual.getArray(readonly=True)[: self.layout.n_fe_owned].copy()
        g = self.layout.create_vec()
        grad = np.asarray(atom_gradient, dtype=np.float64).reshape(-1, 3)
        self.assemble(grad[: self.n_free], fe_owned, grad[self.n_free :], s.gap, g)
        self.zero_dirichlet(g)
        g.getArray()[self.layout.n_atom_dofs :] *= np.asarray(fe_mask_local, dtype=float)
        return g

    def dof_coordinates(self) -> np.ndarray:
        """``(size_local / 3, 3)`` reference positions (Å) of the owned DOF triples of ``z``.

        The free atoms (on rank 0) come first, then the owned FE nodes.
        """
        nodes = self.problem.dof_coordinates()[: self.layout.n_fe_owned // 3]
        atoms = np.zeros((0, 3))
        if self.atoms is not None:  # rank 0
            atoms = self.atoms.reference[: self.n_free]
        return np.ascontiguousarray(np.vstack([atoms, nodes]), dtype=np.float64)

    def max_forces(self, g: PETSc.Vec) -> tuple[float, float]:
        """``(max |g_i|`` over atoms, ``max`` nodal ``|g|`` over free FE nodes``)`` in eV/Å."""
        lay = self.layout
        arr = g.getArray(readonly=True)
        atom = np.linalg.norm(arr[: lay.n_atom_dofs].reshape(-1, 3), axis=1).max(initial=0.0)
        fe = np.linalg.norm(arr[lay.n_atom_dofs :].reshape(-1, 3), axis=1).max(initial=0.0)
        return (
            self.comm.allreduce(float(atom), op=MPI.MAX),
            self.comm.allreduce(float(fe), op=MPI.MAX),
        )
