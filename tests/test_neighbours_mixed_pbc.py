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


# A thin periodic axis and a wide open extent: vesin's cell list would need more than 1e5
# cells with a single one across the slab, which killed the process with SIGFPE (a Newton
# trial that threw one atom 1e4 Å away from a 300 Å slab; a 3 000 Å slab). Run in a child
# process, so that a regression fails this test instead of killing the suite.
_WIDE_SLAB = """
import sys
import numpy as np
from atomistic.neighbours import NeighbourList, SpreadError
rng = np.random.default_rng(5)
X = rng.uniform(0.0, 300.0, size=(800, 3))
X[:, 2] = rng.uniform(0.0, 3.6, size=800)
cell = np.diag([1.0, 1.0, 3.615])
pbc = [False, False, True]
def full(nl, X):
    out = set()
    for a, b, s in zip(nl.i, nl.j, nl.shifts):
        v = X[b] - X[a] + s @ cell
        out.add((int(a), int(b), *np.round(v, 9)))
        out.add((int(b), int(a), *np.round(-v, 9)))
    return out
body = NeighbourList(cutoff=5.5)
body.update(X, cell, pbc)                      # 300 Å: the cells fit, vesin as it is
want = full(body, X)
for far in (1.0e4, 1.0e5):
    Y = X.copy()
    Y[0, 0] = far                              # one atom thrown far out
    nl = NeighbourList(cutoff=5.5)
    nl.update(Y, cell, pbc)
    got = full(nl, Y)
    rest = {p for p in got if p[0] != 0 and p[1] != 0}
    assert rest == {p for p in want if p[0] != 0 and p[1] != 0}, far
    assert {p[:2] for p in got - rest} == {(0, 0)}, far   # its own images along z only
for bad in (1.0e12, float("nan")):
    Y = X.copy()
    Y[0, 0] = bad
    try:
        NeighbourList(cutoff=5.5).update(Y, cell, pbc)
    except SpreadError:
        continue
    sys.exit(f"no SpreadError at {bad}")
print("ok")
"""


def test_a_thin_slab_with_an_atom_thrown_far_gives_the_pairs_or_a_spread_error():
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _WIDE_SLAB], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", (done.returncode, done.stderr)
