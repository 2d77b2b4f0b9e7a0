"""Labelled configurations as batched graphs, data splits and normalisation statistics.

A labelled frame is an ``ase.Atoms`` with ``info["energy"]`` (total, eV),
``arrays["forces"]`` (``(n, 3)`` eV/Å) and optionally ``arrays["force_mask"]`` (per atom;
atoms with a false/0 mask give no force label, e.g. the outer atoms of a carved cluster),
``info["stress"]`` (Voigt ``xx yy zz yz xz xy``, eV/Å³, positive in tension),
``info["energy_weight"]`` (a factor on the frame's energy term of the loss, default 1: a
fine-tuning weighs replayed frames' energies more than new clusters') and
``info["config_type"]`` (str).

A :class:`Batch` is many frames concatenated into one graph (atom indices offset per frame);
per-frame sums use ``index_add`` over the frame id of each atom, so a training step has no
Python loop over frames.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from ase import Atoms

from atomistic.mlip.jacobian import DescriptorJacobian
from atomistic.neighbours import Graph, NeighbourList
from atomistic.potentials.protocol import species_indices

if TYPE_CHECKING:
    from atomistic.mlip.network import NetworkPotential

__all__ = ["Batch", "FrameLabelError", "fit_statistics", "make_batch", "split_indices"]


class FrameLabelError(ValueError):
    """A training frame lacks a label or has one of the wrong shape."""


@dataclass(kw_only=True)
class Batch:
    """Frames concatenated into one graph, with their labels (tensors on one device).

    Attributes:
        graph: the joint graph; ``graph.vectors`` are the fixed pair vectors (Å).
        frame_ids: ``(C,)`` int64 index of each frame in the list it was made from.
        atom_frame: ``(n,)`` int64 frame (0 … C−1) of each atom.
        edge_frame: ``(E,)`` int64 frame of each pair.
        n_atoms: ``(C,)`` atoms per frame.
        energy: ``(C,)`` total energy labels (eV).
        forces: ``(n, 3)`` force labels (eV/Å).
        force_mask: ``(n,)`` 1 where the force label is used, else 0.
        stress: ``(C, 6)`` stress labels (eV/Å³), zero where absent.
        has_stress: ``(C,)`` 1 where the frame has a stress label.
        volume: ``(C,)`` cell volumes (Å³; 1 for frames without a 3D cell).
        energy_weight: ``(C,)`` factor on each frame's energy term (``info["energy_weight"]``,
            default 1).
        cache: descriptors and their Jacobians for these fixed positions
            (:class:`~atomistic.mlip.jacobian.DescriptorJacobian`), or None.
    """

    graph: Graph
    frame_ids: torch.Tensor
    atom_frame: torch.Tensor
    edge_frame: torch.Tensor
    n_atoms: torch.Tensor
    energy: torch.Tensor
    forces: torch.Tensor
    force_mask: torch.Tensor
    stress: torch.Tensor
    has_stress: torch.Tensor
    volume: torch.Tensor
    energy_weight: torch.Tensor | None = None
    cache: DescriptorJacobian | None = None

    @property
    def n_frames(self) -> int:
        """Number of frames ``C``."""
        return int(self.n_atoms.numel())


def _labels(atoms: Atoms, k: int) -> tuple[float, np.ndarray, np.ndarray, np.ndarray | None]:
    if "energy" not in atoms.info:
        raise FrameLabelError(f"frame {k}: no energy label (atoms.info['energy'])")
    forces = atoms.arrays.get("forces")
    if forces is None or np.shape(forces) != (len(atoms), 3):
        raise FrameLabelError(f"frame {k}: no force label (atoms.arrays['forces'], shape (n, 3))")
    mask = atoms.arrays.get("force_mask")
    mask = np.ones(len(atoms)) if mask is None else np.asarray(mask, dtype=float).reshape(-1)
    stress = atoms.info.get("stress")
    if stress is not None:
        stress = np.asarray(stress, dtype=float).reshape(-1)
        if stress.shape != (6,):
            raise FrameLabelError(f"frame {k}: stress label must have 6 Voigt components")
    return float(atoms.info["energy"]), np.asarray(forces, dtype=float), mask, stress


def make_batch(
    frames: Sequence[Atoms],
    frame_ids: Sequence[int],
    *,
    elements: Sequence[str],
    cutoff: float,
    dtype: torch.dtype = torch.float64,
    device: str | torch.device = "cpu",
) -> Batch:
    """Concatenate ``frames[k]`` for ``k`` in ``frame_ids`` into one :class:`Batch`.

    Raises:
        FrameLabelError: a frame lacks its energy or force label.
        UnknownElementError: a frame holds an element not in ``elements``.
    """
    i_all, j_all, vec_all, species, edge_frame = [], [], [], [], []
    energy, forces, mask, stress, has_stress, volume, n_atoms = [], [], [], [], [], [], []
    energy_weight = []
    offset = 0
    for c, k in enumerate(frame_ids):  # once per batch, not per step
        atoms = frames[k]
        e, f, m, s = _labels(atoms, k)
        nl = NeighbourList(cutoff=cutoff)
        nl.update(atoms.positions, atoms.cell.array, atoms.pbc)
        pos = atoms.positions
        vec = pos[nl.j] - pos[nl.i] + nl.shifts @ atoms.cell.array
        i_all.append(nl.i + offset)
        j_all.append(nl.j + offset)
        vec_all.append(vec)
        edge_frame.append(np.full(len(nl.i), c))
        species.append(species_indices(atoms.get_chemical_symbols(), elements, source="potential"))
        energy.append(e)
        forces.append(f)
        mask.append(m)
        stress.append(np.zeros(6) if s is None else s)
        has_stress.append(0.0 if s is None else 1.0)
        volume.append(abs(atoms.cell.volume) if atoms.cell.rank == 3 else 1.0)
        n_atoms.append(len(atoms))
        energy_weight.append(_energy_weight(atoms, k))
        offset += len(atoms)

    def t(x: Any, dt: torch.dtype = dtype) -> torch.Tensor:
        return torch.as_tensor(np.asarray(x), dtype=dt, device=device)

    graph = Graph(
        n_atoms=offset,
        species=torch.cat(species).to(device),
        i=t(np.concatenate(i_all), torch.int64),
        j=t(np.concatenate(j_all), torch.int64),
        vectors=t(np.concatenate(vec_all).reshape(-1, 3)),
    )
    return Batch(
        graph=graph,
        frame_ids=t(list(frame_ids), torch.int64),
        atom_frame=t(np.repeat(np.arange(len(n_atoms)), n_atoms), torch.int64),
        edge_frame=t(np.concatenate(edge_frame), torch.int64),
        n_atoms=t(n_atoms),
        energy=t(energy),
        forces=t(np.concatenate(forces).reshape(-1, 3)),
        force_mask=t(np.concatenate(mask)),
        stress=t(np.stack(stress)),
        has_stress=t(has_stress),
        volume=t(volume),
        energy_weight=t(energy_weight),
    )


def _energy_weight(atoms: Atoms, k: int) -> float:
    w = float(atoms.info.get("energy_weight", 1.0))
    if not (np.isfinite(w) and w >= 0.0):
        raise FrameLabelError(f"frame {k}: energy_weight must be finite and >= 0, got {w}")
    return w


def split_indices(
    n: int, fractions: tuple[float, float, float], *, seed: int
) -> tuple[list[int], list[int], list[int]]:
    """Shuffle ``range(n)`` with ``seed`` and cut it into train/validation/test.

    Validation and test get ``round(fraction · n)`` frames each (at least one when their
    fraction is positive and ``n ≥ 3``); train gets the rest.

    Raises:
        ValueError: fractions negative or not summing to 1, or no frame left to train on.
    """
    if any(f < 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-9:
        raise ValueError(f"split fractions must be >= 0 and sum to 1, got {list(fractions)}")
    order = np.random.default_rng(seed).permutation(n).tolist()
    sizes = [round(f * n) for f in fractions[1:]]
    if n >= 3:
        sizes = [max(s, 1) if f > 0 else 0 for s, f in zip(sizes, fractions[1:], strict=True)]
    n_val, n_test = sizes
    n_train = n - n_val - n_test
    if n_train < 1:
        raise ValueError(f"no frame left to train on: {n} frames, split {list(fractions)}")
    return order[:n_train], order[n_train : n_train + n_val], order[n_train + n_val :]


@torch.no_grad()
def fit_statistics(model: NetworkPotential, batches: Sequence[Batch]) -> None:
    """Fit the normalisation of a network potential to training batches, in place.

    Descriptor mean and standard deviation per element (std floored at 1e-8·max, absent
    element → 0 and 1); per-element reference energies by least squares of the frame
    energies against composition; energy scale = RMS of the used force components (eV/Å,
    1 when there are none).
    """
    n_el = len(model.elements)
    n_feat = model.descriptor.n_features
    ref = model.descriptor_mean
    total = torch.zeros((n_el, n_feat), dtype=torch.float64)
    total2 = torch.zeros((n_el, n_feat), dtype=torch.float64)
    count = torch.zeros(n_el, dtype=torch.float64)
    comps, energies, f2, nf = [], [], 0.0, 0.0
    for b in batches:
        g = model.descriptor(b.graph.with_vectors(b.graph.vectors.to(ref.dtype))).double().cpu()
        s = b.graph.species.cpu()
        total.index_add_(0, s, g)
        total2.index_add_(0, s, g * g)
        count += torch.bincount(s, minlength=n_el).double()
        comp = torch.zeros((b.n_frames, n_el), dtype=torch.float64)
        comp.index_put_(
            (b.atom_frame.cpu(), s), torch.ones(len(s), dtype=torch.float64), accumulate=True
        )
        comps.append(comp)
        energies.append(b.energy.double().cpu())
        m = b.force_mask.double().cpu()
        f2 += float((b.forces.double().cpu() ** 2 * m[:, None]).sum())
        nf += 3.0 * float(m.sum())
    safe = count.clamp(min=1.0)[:, None]
    mean = total / safe
    std = torch.sqrt((total2 / safe - mean**2).clamp(min=0.0))
    std = torch.where(std > 1e-8 * std.max().clamp(min=1e-300), std, torch.ones_like(std))
    present = count > 0
    mean[~present], std[~present] = 0.0, 1.0
    comp, e = torch.cat(comps), torch.cat(energies)
    shift = torch.zeros(n_el, dtype=torch.float64)
    shift[present] = torch.linalg.lstsq(comp[:, present], e[:, None]).solution[:, 0]
    scale = (f2 / nf) ** 0.5 if nf > 0 and f2 > 0 else 1.0
    model.set_statistics(
        descriptor_mean=mean, descriptor_std=std, energy_shift=shift, energy_scale=scale
    )
