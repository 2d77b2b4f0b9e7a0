"""The ghost-force correction: at the homogeneous predictor, then recomputed at solutions.

First pass (:meth:`GhostForceCorrection.reset`): the correction of the defect-free lattice
at the homogeneous predictor ``(F − I) X`` (``∇E`` of the β-weighted perfect lattice and of
the continuum there), with any background field (a dislocation's) left out: a dead load that
passes the patch test exactly and, being the same around the whole handshake, pushes no
defect.

Later passes (:meth:`GhostForceCorrection.update`): the ghost force of a state is the blended
gradient minus each unknown's share of the physical force at that state:

==================  ==========================================================================
unknown             its share
==================  ==========================================================================
free atom ``i``     ``β_i f_i``, ``f_i`` its force in the fully atomistic crystal (every site
                    within ``2 r_cut`` displaced: free atoms as solved, the others by the FE
                    field plus any background)
FE node             the continuum residual tested with ``(1 − β) v``: the blended residual
                    plus ``∫ (P ∇w) · v`` (``w`` the continuum weight), measured from the
                    predictor's exact discrete correction, so that a homogeneous state still
                    passes the patch test to round-off
pad atom            0 (``β = 0``: its forces belong to the continuum)
==================  ==========================================================================

The shares add up to the physical force wherever atoms and continuum overlap, so at the
fixed point the method is a force-based blending. :func:`coupling.passes.solve_with_passes`
repeats solve and update until the correction changes by less than a tolerance.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from petsc4py import PETSc
from scipy.spatial import cKDTree

from atomistic.potentials.protocol import Potential
from atomistic.regions import REGION_FAR
from coupling.blended_atoms import BlendedAtoms
from coupling.interpolation import p1_interpolation_matrix
from coupling.model import Correction

if TYPE_CHECKING:
    from coupling.fields import Displacement
    from coupling.handshake import Handshake
    from coupling.protocol import SystemView

__all__ = ["GhostForceCorrection", "blended_sites"]


def blended_sites(
    sites: Any,
    beta: np.ndarray,
    *,
    potential: Potential,
    device: str | torch.device | None,
    dtype: torch.dtype,
) -> BlendedAtoms:
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


class GhostForceCorrection:
    """The correction of one coupled system (module docstring).

    Args:
        perfect_atoms: the defect-free lattice sites (ASE ``Atoms``) whose ghost forces the
            first pass removes.
        site_atoms: lattice sites of the fully atomistic crystal that :meth:`update` uses;
            they must reach ``2 r_cut`` beyond the free atoms and hold no site in the
            continuum's hole (a dislocation's lattice; not a void).
        positions: ``(n_A + n_P, 3)`` reference sites of the system, free atoms first.
        n_free: number of free atoms.
        handshake: the geometry (β of the perfect lattice).
        fe_mask: ``(n_fe_owned,)`` False on outer-boundary DOFs, whose force is physical.
        potential, device, dtype: those of the system's atoms.
        rank: this MPI rank (the atoms' computations run on rank 0).
    """

    def __init__(
        self,
        *,
        perfect_atoms: Any,
        site_atoms: Any,
        positions: np.ndarray,
        n_free: int,
        handshake: Handshake,
        fe_mask: np.ndarray,
        potential: Potential,
        device: str | torch.device | None,
        dtype: torch.dtype,
        rank: int,
    ) -> None:
        Xp = np.asarray(perfect_atoms.positions, dtype=float)
        keep = handshake.classify(Xp) != REGION_FAR
        Xp = Xp[keep]
        dist, idx = cKDTree(Xp).query(positions, distance_upper_bound=1e-6)
        self.perfect_site = np.where(np.isfinite(dist), idx, -1)
        self.perfect: BlendedAtoms | None = None
        if rank == 0:
            self.perfect = blended_sites(
                perfect_atoms[np.flatnonzero(keep)],
                handshake.beta(Xp),
                potential=potential,
                device=device,
                dtype=dtype,
            )
        self.site_atoms = site_atoms
        self.n_free = int(n_free)
        self.fe_mask = np.asarray(fe_mask, dtype=bool)
        self._potential, self._device, self._dtype = potential, device, dtype
        self._continuum_anchor: np.ndarray | None = None
        self._full_lattice: tuple[BlendedAtoms | None, np.ndarray] | None = None
        self._site_interpolation: tuple[np.ndarray, np.ndarray, Any] | None = None

    # -- first pass --------------------------------------------------------------------------
    def reset(self, system: SystemView, predictor: Displacement, z_predictor: PETSc.Vec) -> None:
        """Set the first pass's correction on the model.

        It is the defect-free lattice's correction at ``z_predictor``, the homogeneous
        predictor ``predictor`` without background.
        """
        model = system.model
        g = model.correction_gradient(
            z_predictor,
            atom_gradient=self._perfect_gradient(system, predictor),
            fe_mask_local=self.fe_mask,
        )
        model.set_correction(Correction(gradient=g, anchor=z_predictor.copy()))
        # the continuum's share of the physical force at the predictor, ∫ P_F : ∇(w v)
        # = residual + ∫ (P_F ∇w) · v: zero but for quadrature; update() measures the shares
        # from it, so a homogeneous state keeps this exact correction
        model.split(z_predictor)  # the FE field at the predictor
        n = model.layout.n_fe_owned
        residual = system.problem.residual().getArray(readonly=True)[:n]
        self._continuum_anchor = residual + system.problem.weight_residual()

    def _perfect_gradient(self, system: SystemView, predictor: Displacement) -> np.ndarray:
        """``∇ Σ β ε`` of the perfect lattice at ``predictor``, on the system's sites."""
        grad = None
        if system.model.comm.rank == 0:
            perfect, site = self.perfect, self.perfect_site
            assert perfect is not None
            _, g = perfect.energy_gradient(predictor(perfect.reference))
            grad = np.zeros_like(system.positions)
            grad[site >= 0] = g[site[site >= 0]]
            perfect.release()
        return system.model.comm.bcast(grad, root=0)

    # -- later passes ------------------------------------------------------------------------
    def update(self, system: SystemView) -> float:
        """Recompute the correction at the system's state ``z`` (one more pass).

        Returns:
            The largest change of the correction on any atom or node (eV/Å).

        Raises:
            RuntimeError: :meth:`reset` was not called (no boundary set).
        """
        model = system.model
        if self._continuum_anchor is None or model.correction is None:
            raise RuntimeError("update_correction needs the correction on and set_boundary")
        lay = model.layout
        z = system.z
        s = model.split(z)
        _, grad = model.atoms_energy_gradient(s.u_atoms)
        sites = self._site_displacements(system, z)
        physical = self._atomistic_gradient(sites) if lay.rank == 0 else None
        physical = model.comm.bcast(physical, root=0)
        beta = system.beta[: self.n_free, None]
        atoms = grad[: self.n_free] - beta * physical
        continuum = self._continuum_anchor - system.problem.weight_residual()
        g = lay.create_vec()
        model.assemble(atoms, continuum, grad[self.n_free :], np.zeros_like(s.gap), g)
        g.getArray()[lay.n_atom_dofs :] *= self.fe_mask.astype(float)
        model.zero_dirichlet(g)
        change = g.copy()
        change.axpy(-1.0, model.correction.gradient)
        model.set_correction(Correction(gradient=g, anchor=z.copy()))
        return max(model.max_forces(change))

    def _site_displacements(self, system: SystemView, z: PETSc.Vec) -> np.ndarray:
        """Displacements of every site of ``site_atoms`` at ``z`` (collective).

        Free atoms their own, the other sites the FE field plus any background; rank 0
        uses them.
        """
        lay = system.model.layout
        _, index = self._full_lattice_sites(system)
        if self._site_interpolation is None:
            X = np.asarray(self.site_atoms.positions, dtype=float) if lay.rank == 0 else None
            X = system.model.comm.bcast(X, root=0)
            others = np.ones(len(X), dtype=bool)
            others[index] = False
            interp = p1_interpolation_matrix(system.problem.V, X[others])
            self._site_interpolation = (X, others, interp)
        X, others, interp = self._site_interpolation
        u = np.zeros_like(X)
        u[others] = lay.allsum(interp @ lay.fe_of(z)).reshape(-1, 3)
        if system.background is not None:
            u[others] += system.background.displacement(X[others])
        u[index] = lay.atoms_of(z)  # collective
        return u

    def _full_lattice_sites(self, system: SystemView) -> tuple[BlendedAtoms | None, np.ndarray]:
        """Every site of ``site_atoms`` at β = 1, and where the free atoms are among them.

        Returns:
            ``(sites, index)``: the sites (rank 0; None elsewhere) and the row of each free
            atom among them (every rank).
        """
        if self._full_lattice is None:
            full = index = None
            if system.model.comm.rank == 0:
                full = blended_sites(
                    self.site_atoms,
                    np.ones(len(self.site_atoms)),
                    potential=self._potential,
                    device=self._device,
                    dtype=self._dtype,
                )
                dist, index = cKDTree(full.reference).query(
                    system.positions[: self.n_free], distance_upper_bound=1e-6
                )
                if not np.all(np.isfinite(dist)):
                    raise ValueError("site_atoms must contain every free atom's site")
            index = system.model.comm.bcast(index, root=0)
            self._full_lattice = (full, index)
        return self._full_lattice

    def _atomistic_gradient(self, sites: np.ndarray) -> np.ndarray:
        """The forces the free atoms would feel in the fully atomistic crystal (rank 0).

        ``(n_A, 3)`` gradient of the plain (β = 1) atomistic energy on the free atoms, with
        the sites of ``site_atoms`` displaced by ``sites``.
        """
        assert self._full_lattice is not None
        full, index = self._full_lattice
        assert full is not None
        _, grad = full.energy_gradient(sites)
        full.release()
        return grad[index]
