"""An ASE calculator around any project potential."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator as _AseCalculator
from ase.calculators.calculator import all_changes
from ase.data import chemical_symbols

from atomistic.device import resolve_device
from atomistic.memory import retain_freed_memory
from atomistic.mlip.committee import Committee, force_spread, member_forces
from atomistic.neighbours import Graph, NeighbourList, build_graph
from atomistic.potentials.protocol import Potential, evaluate, species_indices

__all__ = ["Calculator"]

# Voigt order xx, yy, zz, yz, xz, xy (ASE)
_VOIGT_A = [0, 1, 2, 1, 0, 0]
_VOIGT_B = [0, 1, 2, 2, 2, 1]


class Calculator(_AseCalculator):
    """ASE calculator for a project potential.

    Results follow ASE's conventions: ``energy`` (eV), ``energies`` (eV per atom),
    ``forces`` (eV/Å), ``stress`` (Voigt, eV/Å³, positive in tension) and ``stresses``
    (per-atom Voigt virials divided by the cell volume, so that they sum to ``stress``).
    Stresses need a cell of nonzero volume. For a :class:`~atomistic.mlip.committee.Committee`
    the energy, forces and stresses are those of the member mean, and ``forces_uncertainty``
    (eV/Å, shape ``(n,)``) is the calibrated per-atom force spread
    ``c · sqrt(mean_m |F_m − F̄|²)``; other potentials do not give it.

    Args:
        potential: a project potential (site energies from a graph).
        device: ``"cpu"``, ``"cuda"`` or None (CUDA when present).
        dtype: ``torch.float64`` (default) or ``torch.float32``.
        skin: neighbour-list skin in Å; the list is reused while atoms move less than skin/2.
        **kwargs: passed on to ASE's ``Calculator``.

    On Linux the first calculator switches glibc to keeping freed memory
    (:func:`atomistic.memory.retain_freed_memory`): several times faster on big systems, at
    the price of the process holding on to its peak memory.
    """

    implemented_properties = [
        "energy",
        "energies",
        "free_energy",
        "forces",
        "stress",
        "stresses",
        "forces_uncertainty",
    ]

    def __init__(
        self,
        potential: Potential,
        device: str | torch.device | None = None,
        *,
        dtype: torch.dtype = torch.float64,
        skin: float = 0.5,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        retain_freed_memory()
        self.device = resolve_device(device)
        self.dtype = dtype
        self.potential = potential.to(device=self.device, dtype=dtype)
        self.neighbours = NeighbourList(cutoff=potential.cutoff, skin=skin)
        self._species_key: np.ndarray | None = None
        self._species: torch.Tensor | None = None

    def _species_for(self, atoms: Atoms) -> torch.Tensor:
        # Compare atomic numbers as an array: no per-atom Python work on every step.
        numbers = atoms.numbers
        species = self._species
        if (
            species is None
            or self._species_key is None
            or not np.array_equal(numbers, self._species_key)
        ):
            symbols = np.array(chemical_symbols)[numbers]
            species = species_indices(
                symbols.tolist(),
                self.potential.elements,
                source=getattr(self.potential, "source", "potential"),
            ).to(self.device)
            self._species = species
            self._species_key = numbers.copy()
        return species

    def calculate(
        self,
        atoms: Atoms | None = None,
        properties: Sequence[str] = ("energy",),
        system_changes: Sequence[str] = all_changes,
    ) -> None:
        """Compute ``properties`` for ``atoms`` into ``self.results`` (ASE's interface).

        Args:
            atoms: the atoms; None: the ones of the last calculation.
            properties: the properties asked for; energies and forces are always computed,
                stresses when ``stress`` or ``stresses`` is asked for.
            system_changes: what changed since the last calculation (ASE's list).
        """
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms  # ASE's copy of the atoms given, or those of the last calculation
        if atoms is None:
            raise ValueError("Calculator.calculate: no atoms given and none calculated before")
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
        if isinstance(self.potential, Committee):
            res = _committee_results(self.potential, graph, per_atom_virial=want_stress)
            self.results["forces_uncertainty"] = (
                res["forces_uncertainty"].cpu().numpy().astype(np.float64)
            )
        else:
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


def _committee_results(
    committee: Committee, graph: Graph, *, per_atom_virial: bool
) -> dict[str, torch.Tensor]:
    """Mean energy, forces and virials, and the calibrated spread, from one member pass.

    The mean's forces and virials are linear in the edge gradients, so they follow from the
    mean of the member edge gradients without a second backward pass.
    """
    energies, forces, g = member_forces(committee, graph)
    energies, forces, g = energies.detach(), forces.detach(), g.detach()
    site = energies.mean(0)
    out = {
        "energy": site.sum(),
        "energies": site,
        "forces": forces.mean(0),
        "forces_uncertainty": committee.calibration * force_spread(forces),
    }
    if per_atom_virial:
        g_mean = g.mean(0)
        r = graph.vectors.detach()
        w = r[:, :, None] * g_mean[:, None, :]
        w = 0.25 * (w + w.transpose(1, 2))
        wa = torch.zeros((graph.n_atoms, 3, 3), dtype=w.dtype, device=w.device)
        wa.index_add_(0, graph.i, w)
        wa.index_add_(0, graph.j, w)
        out["virials"] = wa
    return out
