"""The monolithic vector ``z = (u_A, U)`` across MPI ranks.

Global PETSc numbering: the ``3 n_A`` atom DOFs come first and are owned by rank 0; then
the FE DOFs in DOLFINx's global order, shifted by ``3 n_A``. Each rank therefore owns a
contiguous range: rank 0 ``[0, 3n_A + 3n_0)``, rank r ``[3n_A + 3g_r, 3n_A + 3g_r + 3n_r)``,
where ``g_r`` is the first global node of rank r and ``n_r`` its owned nodes.

Atom quantities are computed on rank 0 and broadcast; FE quantities stay distributed.
"""

from __future__ import annotations

import dolfinx
import numpy as np
from mpi4py import MPI
from petsc4py import PETSc

__all__ = ["MonolithicLayout"]


class MonolithicLayout:
    """Index bookkeeping and scatters for ``z = (u_A, U)``.

    Args:
        V: the FE displacement space (P1, 3 components).
        n_atoms: number of free atoms ``n_A``.
    """

    def __init__(self, V: dolfinx.fem.FunctionSpace, *, n_atoms: int) -> None:
        self.V = V
        self.comm = V.mesh.comm
        self.rank = self.comm.rank
        imap = V.dofmap.index_map
        self.n_atoms = int(n_atoms)
        self.n_atom_dofs = 3 * self.n_atoms if self.rank == 0 else 0
        self.n_fe_owned = 3 * imap.size_local
        self.n_fe_local = 3 * (imap.size_local + imap.num_ghosts)
        self.n_fe_global = 3 * imap.size_global
        self.size_local = self.n_atom_dofs + self.n_fe_owned
        self.size_global = 3 * self.n_atoms + self.n_fe_global
        self.fe_offset = 3 * self.n_atoms  # global index shift of FE dofs
        nodes = np.arange(imap.size_local + imap.num_ghosts, dtype=np.int32)
        glob = imap.local_to_global(nodes).astype(np.int64)
        # monolithic global index of each local (owned + ghost) unrolled FE dof
        self.fe_global = (self.fe_offset + 3 * glob[:, None] + np.arange(3)).ravel()
        self._work = dolfinx.la.vector(imap, bs=3)

    # -- vectors ---------------------------------------------------------------------------
    def create_vec(self) -> PETSc.Vec:
        """A zero monolithic vector."""
        v = PETSc.Vec().createMPI((self.size_local, self.size_global), comm=self.comm)
        v.set(0.0)
        return v

    def atoms_of(self, z: PETSc.Vec) -> np.ndarray:
        """The atom block ``(n_A, 3)``, on every rank."""
        part = z.getArray(readonly=True)[: self.n_atom_dofs].copy() if self.rank == 0 else None
        return self.comm.bcast(part, root=0).reshape(-1, 3)

    def fe_of(self, z: PETSc.Vec, out: dolfinx.fem.Function | None = None) -> np.ndarray:
        """The FE block as a local array with ghosts ``(n_fe_local,)`` (also into ``out``)."""
        arr = z.getArray(readonly=True)
        target = out.x if out is not None else self._work
        target.array[: self.n_fe_owned] = arr[self.n_atom_dofs :]
        target.scatter_forward()
        return target.array.copy()

    def set_atoms(self, z: PETSc.Vec, values: np.ndarray) -> None:
        """Write the atom block (rank 0's copy is used)."""
        if self.rank == 0:
            z.getArray()[: self.n_atom_dofs] = np.asarray(values).ravel()

    def set_fe(self, z: PETSc.Vec, owned_values: np.ndarray) -> None:
        """Write the owned FE block ``(n_fe_owned,)``."""
        z.getArray()[self.n_atom_dofs :] = owned_values[: self.n_fe_owned]

    def accumulate_fe(self, local_values: np.ndarray) -> np.ndarray:
        """Sum local contributions with ghosts ``(n_fe_local,)`` onto owners → owned values."""
        self._work.array[:] = local_values
        self._work.scatter_reverse(dolfinx.la.InsertMode.add)
        return self._work.array[: self.n_fe_owned].copy()

    def allsum(self, local: np.ndarray) -> np.ndarray:
        """Element-wise sum of an array over ranks."""
        out = np.ascontiguousarray(local, dtype=np.float64).copy()
        self.comm.Allreduce(MPI.IN_PLACE, out, op=MPI.SUM)
        return out
