"""A committee trained on bulk only is more uncertain on surfaces and on compressed cells."""

import numpy as np
import pytest
import torch
from ase.build import fcc111
from ase.calculators.emt import EMT

from atomistic import (
    Committee,
    MomentSpec,
    NeighbourList,
    TrainingConfig,
    build_graph,
    crystal,
    train,
)

A_EMT = 3.59  # Å, near EMT's Cu lattice constant


def labelled(atoms):
    atoms.calc = EMT()
    atoms.info["energy"] = atoms.get_potential_energy()
    atoms.arrays["forces"] = atoms.get_forces()
    atoms.calc = None
    return atoms


def bulk(rng, *, scale=1.0, rattle=0.05):
    a = A_EMT * scale * (1 + rng.uniform(-0.01, 0.01))
    atoms = crystal("fcc", element="Cu", a=a, size=(2, 2, 2))
    atoms.positions += rng.normal(scale=rattle, size=atoms.positions.shape)
    return atoms


def mean_spread(committee, atoms, which=None):
    graph = build_graph(
        positions=torch.tensor(atoms.positions),
        cell=torch.tensor(atoms.cell.array),
        species=torch.zeros(len(atoms), dtype=torch.int64),
        neighbours=NeighbourList(cutoff=committee.cutoff),
        pbc=atoms.pbc,
    )
    u = committee.forces_uncertainty(graph).numpy()
    return float(u.mean() if which is None else u[which].mean())


@pytest.fixture(scope="module")
def bulk_committee():
    rng = np.random.default_rng(0)
    frames = [labelled(bulk(rng)) for _ in range(40)]
    model = Committee(
        elements=("Cu",),
        descriptor=MomentSpec(cutoff=4.5, angular_cutoff=4.0),
        hidden=(16, 16),
        n_members=4,
    )
    config = TrainingConfig(
        epochs=60, batch_size=4, learning_rate=5e-3, split=(0.8, 0.2, 0.0), seed=0
    )
    return train(model, frames, config=config).potential


def test_spread_is_higher_on_surfaces_and_compressed_cells(bulk_committee):
    rng = np.random.default_rng(1)
    on_bulk = np.mean([mean_spread(bulk_committee, bulk(rng)) for _ in range(3)])
    slab = fcc111("Cu", size=(3, 3, 5), a=A_EMT, vacuum=8.0, periodic=False)
    slab.pbc = (True, True, False)
    slab.positions += rng.normal(scale=0.05, size=slab.positions.shape)
    tags = slab.get_tags()  # 1: top layer … 5: bottom layer
    on_surface = mean_spread(bulk_committee, slab, (tags == 1) | (tags == tags.max()))
    # 9 % smaller volume: lengths × 0.91^(1/3)
    compressed = np.mean(
        [mean_spread(bulk_committee, bulk(rng, scale=0.91 ** (1 / 3))) for _ in range(3)]
    )
    assert on_surface >= 3.0 * on_bulk, (on_surface, on_bulk)
    assert compressed >= 3.0 * on_bulk, (compressed, on_bulk)
