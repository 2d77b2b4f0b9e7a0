"""An ASE calculator around any project potential."""

from __future__ import annotations

import numpy as np
import torch
from ase.calculators.calculator import Calculator as _AseCalculator
from ase.calculators.calculator import all_changes
from ase.data import chemical_symbols

from atomistic.memory import retain_freed_memory
from atomistic.neighbours import NeighbourList, build_graph
from atomistic.potential import evaluate, species_indices

__all__ = ["Calculator", "default_device"]

# Voigt order xx, yy, zz, yz, xz, xy (ASE)
_VOIGT_A = [0, 1, 2, 1, 0, 0]
_VOIGT_B = [0, 1, 2, 2, 2, 1]


def default_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` if given, else CUDA when present, else the CPU."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class Calculator(_AseCalculator):
    """ASE calculator for a project potential.

    Results follow ASE's conventions: ``energy`` (eV), ``energies`` (eV per atom),
    ``forces`` (eV/Å), ``stress`` (Voigt, eV/Å³, positive in tension) and ``stresses``
    (per-atom Voigt virials divided by the cell volume, so that they sum to ``stress``).
    Stresses need a cell of nonzero volume.

    Args:
        potential: a module that returns site energies from a graph.
        device: ``"cpu"``, ``"cuda"`` or None (CUDA when present).
        dtype: ``torch.float64`` (default) or ``torch.float32``.
        skin: neighbour-list skin in Å; the list is reused while atoms move less than skin/2.

    On Linux the first calculator switches glibc to keeping freed memory
    (:func:`atomistic.memory.retain_freed_memory`): several times faster on big systems, at
    the price of the process holding on to its peak memory.
    """

    implemented_properties = ["energy", "energies", "free_energy", "forces", "stress", "stresses"]

    def __init__(
        self,
        potential,
        device: str | torch.device | None = None,
        *,
        dtype: torch.dtype = torch.float64,
        skin: float = 0.5,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        retain_freed_memory()
        self.device = default_device(device)
        self.dtype = dtype
        self.potential = potential.to(device=self.device, dtype=dtype)
        self.neighbours = NeighbourList(cutoff=potential.cutoff, skin=skin)
        self._species_key: np.ndarray | None = None
        self._species: torch.Tensor | None = None

    def _species_for(self, atoms) -> torch.Tensor:
        # Compare atomic numbers as an array: no per-atom Python work on every step.
        numbers = atoms.numbers
        if self._species_key is None or not np.array_equal(numbers, self._species_key):
            symbols = np.array(chemical_symbols)[numbers]
            self._species = species_indices(
                symbols.tolist(),
                self.potential.elements,
                source=getattr(self.potential, "source", "potential"),
            ).to(self.device)
            self._species_key = numbers.copy()
        return self._species

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes) -> None:
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        want_stress = "stress" in properties or "stresses" in properties
        pos = torch.as_tensor(atoms.positions, dtype=self.dtype, device=self.device)
        cell = torch.as_tensor(atoms.cell.array, dtype=self.dtype, device=self.device)
        graph = build_graph(
            positions=pos,
            cell=cell,
            species=self._species_for(atoms),
            neighbours=self.neighbours,
            pbc=atoms.pbc,
        )
        res = evaluate(self.potential, graph, forces=True, per_atom_virial=want_stress)
        self.results["energy"] = float(res["energy"])
        self.results["free_energy"] = self.results["energy"]
        self.results["energies"] = res["energies"].cpu().numpy().astype(np.float64)
        self.results["forces"] = res["forces"].cpu().numpy().astype(np.float64)
        if want_stress:
            if atoms.cell.rank != 3:
                raise ValueError("stress needs a cell with three lattice vectors (nonzero volume)")
            vol = atoms.get_volume()
            w = res["virials"].cpu().numpy().astype(np.float64)
            self.results["stresses"] = w[:, _VOIGT_A, _VOIGT_B] / vol
            self.results["stress"] = w.sum(axis=0)[_VOIGT_A, _VOIGT_B] / vol
