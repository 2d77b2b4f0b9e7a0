"""Neighbour lists with some axes periodic and others open (slabs, 2.5d), against brute force.

vesin is handed a big periodic box along the open axes (fast); the pairs and shifts must be
exactly those of the open geometry.
"""

import itertools

import numpy as np
import pytest

from atomistic.neighbours import NeighbourList


def brute_pairs(X, cell, pbc, cutoff):
    ranges = [range(-8, 9) if p else range(1) for p in pbc]  # X spans 18 Å
    pairs = set()
    for S in itertools.product(*ranges):
        d = X[None, :, :] + np.asarray(S, dtype=float) @ cell - X[:, None, :]
        r = np.linalg.norm(d, axis=2)
        for i, j in zip(*np.nonzero((r < cutoff) & (r > 1e-9)), strict=True):
            pairs.add((int(i), int(j), S))
    return pairs


def half_to_full(i, j, S):
    out = set()
    for a, b, s in zip(i, j, S, strict=True):
        out.add((int(a), int(b), tuple(int(v) for v in s)))
        out.add((int(b), int(a), tuple(-int(v) for v in s)))
    return out


@pytest.mark.parametrize("pbc", [(False, False, True), (True, False, True), (True, True, False)])
def test_mixed_pbc_pairs_equal_brute_force(pbc):
    rng = np.random.default_rng(3)
    cell = np.array([[7.0, 0.4, 0.0], [0.3, 6.5, 0.2], [0.1, -0.2, 4.4]])
    X = rng.uniform(-9.0, 9.0, size=(60, 3))
    # positions span several periods along periodic axes: vesin must cope with that too
    cutoff = 5.0
    nl = NeighbourList(cutoff=cutoff, skin=0.0)
    nl.update(X, cell, pbc)
    got = half_to_full(nl.i, nl.j, nl.shifts)
    want = brute_pairs(X, cell, pbc, cutoff)

    # vesin's shifts along periodic axes may differ by the wrapping of X; compare vectors
    def vectors(pairs):
        return sorted(
            (i, j, *np.round(X[j] - X[i] + np.asarray(s, dtype=float) @ cell, 9))
            for i, j, s in pairs
        )

    assert vectors(got) == vectors(want)
    assert np.all(nl.shifts[:, [not p for p in pbc]] == 0)
