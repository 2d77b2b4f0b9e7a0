"""Unlabelled training configurations: strained bulk, point defects, surfaces, shear, clusters.

Every generator returns new :class:`ase.Atoms` with ``info['config_type']`` set and draws
its randomness from the ``numpy.random.Generator`` it is given, so a seed reproduces a set.
Deformations act on cell and positions together, ``cell' = cell Fᵀ`` and ``x' = F x``;
rattling adds independent Gaussian displacements of standard deviation ``rattle`` (Å) to
every Cartesian component.

==================  ==========================================================  ==========
generator           what                                                        mask
==================  ==========================================================  ==========
strained_bulk       ``F = I + ε``, ε symmetric, ``‖ε‖₂ ≤ max_strain``            all True
vacancy_cell        ``vacancies`` random sites removed                          all True
interstitial_cell   atoms added at octahedral/tetrahedral sites                 all True
surface_slab        ``(hkl)`` slab, periodic in-plane, vacuum along ``z ∥ n``,   all True
                    optionally strained in plane
sheared_cell        ``F = I + γ d ⊗ n`` on a plane ``n`` along ``d ⊥ n``        all True
void_cell           atoms within ``radius`` of a random point removed, strained  all True
defect_cluster      sphere ``r_core + r_buffer`` cut from a periodic parent     ``r ≤ r_core``
cluster_around      defect_cluster around a vacancy/interstitial/surface atom  ``r ≤ r_core``
==================  ==========================================================  ==========

``strained_bulk`` splits the strain into a volumetric part ``v I`` with ``v`` uniform in
``[-max_strain, max_strain]`` (strong compression and expansion are as likely as small
strains) and a traceless part of spectral norm ``d`` uniform in ``[0, max_strain − |v|]``,
so ``‖ε‖₂ ≤ |v| + d ≤ max_strain``.

Clusters: for a potential whose site energy depends on neighbours within ``r_cut`` and on
their own densities (EAM, EMT), the force on atom ``i`` depends on atoms up to ``2 r_cut``
away. ``r_buffer = 2 r_cut`` therefore gives the ``force_mask`` atoms the forces they have in
the periodic parent, to round-off (about 1e-13 eV/Å for Cu_mishin1 through LAMMPS; with
``r_buffer = r_cut`` they are off by about 1e-2 eV/Å).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator
from ase.geometry import get_distances

from atomistic.defects import interstitial
from atomistic.lattice import LatticeError, crystal

__all__ = [
    "CLUSTER_SITES",
    "SHEAR_SYSTEMS",
    "LatticeSpec",
    "cluster_around",
    "defect_cluster",
    "interstitial_cell",
    "random_strain",
    "relaxer",
    "sheared_cell",
    "strained_bulk",
    "surface_orientation",
    "surface_slab",
    "vacancy_cell",
    "void_cell",
]

#: Default shear systems ``(plane normal, direction)``, cubic Miller indices: fcc slip
#: {111}<110>, cube {100}<010> and {110}<001>.
SHEAR_SYSTEMS = (((1, 1, 1), (1, -1, 0)), ((1, 0, 0), (0, 1, 0)), ((1, 1, 0), (0, 0, 1)))

#: What :func:`cluster_around` centres a cluster on.
CLUSTER_SITES = ("vacancy", "interstitial", "surface")

Relax = Callable[[Atoms], Atoms]


@dataclass(frozen=True, kw_only=True)
class LatticeSpec:
    """The host crystal: :func:`atomistic.lattice.crystal` arguments without the size."""

    structure: str
    element: str
    a: float

    def build(
        self,
        size: int | Sequence[int],
        orientation: Sequence[Sequence[int]] | np.ndarray | None = None,
    ) -> Atoms:
        """A periodic crystal of ``size`` oriented cells (:func:`~atomistic.lattice.crystal`).

        ``orientation``: Miller axes of ``x``, ``y``, ``z`` as rows (default: the cube axes).
        """
        rows = None if orientation is None else np.asarray(orientation).tolist()
        return crystal(self.structure, element=self.element, a=self.a, size=size, orientation=rows)


def _clean(atoms: Atoms, config_type: str) -> Atoms:
    """Positions, species, cell and pbc only, plus ``config_type`` and an all-True mask."""
    out = Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
    out.info["config_type"] = config_type
    out.arrays["force_mask"] = np.ones(len(out), dtype=bool)
    return out


def _rattle(atoms: Atoms, sigma: float, rng: np.random.Generator) -> None:
    if sigma > 0:
        atoms.positions = atoms.positions + rng.normal(0.0, sigma, size=atoms.positions.shape)


def _deform(atoms: Atoms, f: np.ndarray) -> None:
    atoms.set_cell(atoms.cell.array @ f.T, scale_atoms=False)
    atoms.positions = atoms.positions @ f.T


def random_strain(max_strain: float, rng: np.random.Generator) -> np.ndarray:
    """A symmetric ``(3, 3)`` strain with spectral norm ``≤ max_strain`` (see module doc)."""
    v = rng.uniform(-max_strain, max_strain)
    m = rng.normal(size=(3, 3))
    m = 0.5 * (m + m.T)
    m -= np.trace(m) / 3.0 * np.eye(3)
    m /= np.abs(np.linalg.eigvalsh(m)).max()
    d = rng.uniform(0.0, max_strain - abs(v))
    return v * np.eye(3) + d * m


def strained_bulk(
    lattice: LatticeSpec,
    *,
    size: int | Sequence[int],
    max_strain: float,
    rattle: float,
    rng: np.random.Generator,
) -> Atoms:
    """Perfect crystal under a random homogeneous strain, then rattled.

    ``info['strain']`` holds the ``(3, 3)`` strain ε (``F = I + ε``).
    """
    atoms = lattice.build(size)
    eps = random_strain(max_strain, rng)
    _deform(atoms, np.eye(3) + eps)
    _rattle(atoms, rattle, rng)
    out = _clean(atoms, "bulk")
    out.info["strain"] = eps
    return out


def vacancy_cell(
    lattice: LatticeSpec,
    *,
    size: int | Sequence[int],
    vacancies: int = 1,
    rattle: float,
    rng: np.random.Generator,
    relax: Relax | None = None,
) -> Atoms:
    """A crystal with ``vacancies`` distinct random sites removed, relaxed if asked, rattled."""
    host = lattice.build(size)
    if not 1 <= vacancies < len(host):
        raise ValueError(f"vacancies must be in [1, {len(host) - 1}], got {vacancies}")
    keep = np.ones(len(host), dtype=bool)
    keep[rng.choice(len(host), size=vacancies, replace=False)] = False
    atoms = host[keep]
    if relax is not None:
        atoms = relax(atoms)
    _rattle(atoms, rattle, rng)
    return _clean(atoms, "vacancy")


def interstitial_cell(
    lattice: LatticeSpec,
    *,
    size: int | Sequence[int],
    site: str = "octahedral",
    interstitials: int = 1,
    rattle: float,
    rng: np.random.Generator,
    relax: Relax | None = None,
) -> Atoms:
    """A crystal with ``interstitials`` extra atoms at ``site`` sites near random points.

    A site already taken (an added atom sits on it) is redrawn, at most 20 times per atom.
    """
    atoms = lattice.build(size)
    for _ in range(interstitials):
        for _attempt in range(20):
            near = rng.uniform(size=3) @ atoms.cell.array
            try:
                atoms = interstitial(atoms, site=site, near=near)
                break
            except LatticeError:
                continue
        else:
            raise ValueError(f"no free {site} site found for interstitial in {len(atoms)} atoms")
    if relax is not None:
        atoms = relax(atoms)
    _rattle(atoms, rattle, rng)
    return _clean(atoms, "interstitial")


def surface_orientation(miller: Sequence[int]) -> np.ndarray:
    """Right-handed orthogonal Miller axes ``(3, 3)`` with ``z`` along the plane normal.

    ``x`` is the shortest of ``n × e_k`` (reduced), ``y = n × x`` (reduced). For cubic
    lattices the normal of plane ``(hkl)`` is the direction ``[hkl]``.
    """
    n = np.asarray(miller, dtype=int)
    if n.shape != (3,) or not n.any():
        raise ValueError(f"miller must be three integers, not all zero, got {miller!r}")
    n = n // np.gcd.reduce(n)
    candidates = [np.cross(n, e) for e in np.eye(3, dtype=int)]
    candidates = [c // np.gcd.reduce(c) for c in candidates if c.any()]
    x = min(candidates, key=lambda c: (c @ c, tuple(-c)))
    y = np.cross(n, x)
    y = y // np.gcd.reduce(y)
    return np.array([x, y, n])


def surface_slab(
    lattice: LatticeSpec,
    *,
    miller: Sequence[int],
    thickness: float,
    width: float,
    vacuum: float,
    rattle: float,
    rng: np.random.Generator,
    max_strain: float = 0.0,
    periodic: bool = False,
) -> Atoms:
    """A ``(hkl)`` slab: periodic along ``x`` and ``y``, open along ``z`` (the normal).

    Args:
        lattice: the host crystal (cubic).
        miller: plane indices ``(h, k, l)``.
        thickness: least slab thickness, Å (whole oriented cells along the normal).
        width: least in-plane period along ``x`` and ``y``, Å.
        vacuum: empty space added to the cell along ``z``, Å (for ``pbc = (T, T, F)`` it
            only matters to viewers and to the stress volume).
        rattle: Gaussian displacement σ, Å.
        rng: random generator.
        max_strain: with ``> 0``, a random in-plane strain first: the ``xx``, ``yy``, ``xy``
            block of :func:`random_strain` (spectral norm ``≤ max_strain``), recorded in
            ``info['strain']``; 0 leaves the strain out and draws nothing for it from ``rng``.
        periodic: ``pbc`` all True (the vacuum must then exceed the potential's cutoff): the
            slab is the same, and a labeller gives it a stress, whose in-plane part is the
            surface stress (``V σ_αα / 2A``) that training can then fit.
    """
    rows = surface_orientation(miller)
    period = lattice.build(1, orientation=rows).cell.lengths()
    reps = np.maximum(1, np.ceil(np.array([width, width, thickness]) / period)).astype(int)
    atoms = lattice.build(tuple(int(r) for r in reps), orientation=rows)
    eps = None
    if max_strain > 0:
        eps = random_strain(max_strain, rng)
        eps[2, :] = 0.0
        eps[:, 2] = 0.0
        _deform(atoms, np.eye(3) + eps)
    cell = atoms.cell.array.copy()
    cell[2, 2] += vacuum
    atoms.set_cell(cell, scale_atoms=False)
    atoms.positions = atoms.positions + np.array([0.0, 0.0, 0.5 * vacuum])
    atoms.pbc = True if periodic else (True, True, False)
    _rattle(atoms, rattle, rng)
    out = _clean(atoms, "surface")
    out.info["miller"] = np.asarray(miller, dtype=int)
    if eps is not None:
        out.info["strain"] = eps
    return out


def sheared_cell(
    lattice: LatticeSpec,
    *,
    size: int | Sequence[int],
    max_shear: float,
    rattle: float,
    rng: np.random.Generator,
    systems: Sequence[tuple[Sequence[int], Sequence[int]]] = SHEAR_SYSTEMS,
) -> Atoms:
    """Simple shear ``F = I + γ d ⊗ n`` on a random system, ``γ`` uniform in ``±max_shear``.

    ``n`` and ``d`` are the unit plane normal and shear direction (cubic frame, must be
    orthogonal). ``info`` records ``shear`` (γ), ``shear_plane`` and ``shear_direction``.
    """
    plane, direction = systems[int(rng.integers(len(systems)))]
    n = np.asarray(plane, dtype=float)
    d = np.asarray(direction, dtype=float)
    if abs(n @ d) > 1e-12:
        raise ValueError(f"shear direction {direction} is not in the plane {plane}")
    n /= np.linalg.norm(n)
    d /= np.linalg.norm(d)
    gamma = rng.uniform(-max_shear, max_shear)
    atoms = lattice.build(size)
    _deform(atoms, np.eye(3) + gamma * np.outer(d, n))
    _rattle(atoms, rattle, rng)
    out = _clean(atoms, "shear")
    out.info["shear"] = float(gamma)
    out.info["shear_plane"] = np.asarray(plane, dtype=int)
    out.info["shear_direction"] = np.asarray(direction, dtype=int)
    return out


def void_cell(
    lattice: LatticeSpec,
    *,
    size: int | Sequence[int],
    radius: tuple[float, float],
    max_strain: float,
    rattle: float,
    rng: np.random.Generator,
    relax: Relax | None = None,
) -> Atoms:
    """A periodic crystal with a spherical void, under a random strain, relaxed, rattled.

    The void's radius is uniform in ``radius = (r_min, r_max)`` and its centre uniform in the
    central conventional cell, so the cut meets the lattice at every offset: the surface holds
    the terraces, steps and kinks of a curved free surface. The strain (:func:`random_strain`,
    ``‖ε‖₂ ≤ max_strain``) is applied before ``relax``, which keeps the strained cell: the
    surface relaxes in the stress field it would meet under load.
    ``info`` records ``strain`` and ``void_radius``.
    """
    r_min, r_max = (float(r) for r in radius)
    if not 0.0 < r_min <= r_max:
        raise ValueError(f"void radius must satisfy 0 < r_min <= r_max, got {radius}")
    atoms = lattice.build(size)
    cell = atoms.cell.array
    unit = cell / np.asarray(size if not isinstance(size, int) else (size,) * 3)[:, None]
    centre = 0.5 * cell.sum(axis=0) + rng.uniform(-0.5, 0.5, size=3) @ unit
    r = rng.uniform(r_min, r_max)
    _, lengths = get_distances(centre[None], atoms.positions, atoms.cell, atoms.pbc)
    keep = lengths[0] > r
    if keep.sum() < 2 or keep.all():
        raise ValueError(f"a void of radius {r:.2f} Å leaves {keep.sum()} of {len(atoms)} atoms")
    atoms = atoms[keep]
    eps = random_strain(max_strain, rng)
    _deform(atoms, np.eye(3) + eps)
    if relax is not None:
        atoms = relax(atoms)
    _rattle(atoms, rattle, rng)
    out = _clean(atoms, "void")
    out.info["strain"] = eps
    out.info["void_radius"] = float(r)
    return out


def defect_cluster(
    parent: Atoms,
    centre: Sequence[float] | np.ndarray,
    *,
    r_core: float,
    r_buffer: float,
    config_type: str = "cluster",
) -> Atoms:
    """Cut a sphere of radius ``r_core + r_buffer`` around ``centre`` from ``parent``.

    Distances are minimum-image along the parent's periodic axes; the parent is repeated
    first where it is narrower than the sphere, so no atom appears twice. The cluster is
    open (``pbc`` all False, zero cell) with positions ``centre + (x_j − centre)_mic``.

    Returns:
        Atoms with ``arrays['force_mask']`` True within ``r_core`` of ``centre`` and
        ``arrays['parent_index']`` (index of each atom in ``parent``), ``info['centre']``.
    """
    radius = r_core + r_buffer
    origin = np.asarray(centre, dtype=float)
    pbc = np.asarray(parent.pbc, dtype=bool)
    n_parent = len(parent)
    if pbc.any():
        # Plane spacing along each periodic axis: 1 / |row of the inverse cell transpose|.
        heights = 1.0 / np.linalg.norm(np.linalg.inv(parent.cell.array).T, axis=1)
        reps = np.where(pbc, np.floor(2.0 * radius / heights).astype(int) + 1, 1)
        parent = parent.repeat(tuple(int(r) for r in reps))
    vectors, lengths = get_distances(origin[None], parent.positions, parent.cell, parent.pbc)
    vectors, lengths = vectors[0], lengths[0]
    inside = lengths <= radius
    cluster = Atoms(numbers=parent.numbers[inside], positions=origin + vectors[inside], pbc=False)
    cluster.info["config_type"] = config_type
    cluster.info["centre"] = origin
    cluster.arrays["force_mask"] = lengths[inside] <= r_core
    cluster.arrays["parent_index"] = np.flatnonzero(inside) % n_parent
    return cluster


def cluster_around(
    lattice: LatticeSpec,
    around: str,
    *,
    r_core: float,
    r_buffer: float,
    rattle: float,
    rng: np.random.Generator,
    relax: Relax | None = None,
    miller: Sequence[int] = (1, 1, 1),
    site: str = "octahedral",
) -> Atoms:
    """A :func:`defect_cluster` around a vacancy, an interstitial or a surface atom.

    The periodic parent is at least ``2 (r_core + r_buffer)`` wide along its periodic axes,
    so the cluster holds one defect. The vacancy (or interstitial, at a ``site`` site) is
    made near the cell centre; the surface parent is a ``miller`` :func:`surface_slab` of
    that thickness and the centre a random atom of its top layer. The parent is relaxed with
    ``relax`` if given, then rattled, then cut, so the masked forces are the parent's.
    ``config_type`` is ``"cluster-<around>"``.
    """
    width = 2.0 * (r_core + r_buffer)
    if around == "surface":
        parent = surface_slab(
            lattice, miller=miller, thickness=width, width=width, vacuum=0.0, rattle=0.0, rng=rng
        )
    else:
        cube = lattice.build(1)
        parent = lattice.build(tuple(np.ceil(width / cube.cell.lengths()).astype(int) + 1))
        centre = 0.5 * parent.cell.array.sum(axis=0)
        if around == "vacancy":
            index = int(np.argmin(np.linalg.norm(parent.positions - centre, axis=1)))
            centre = parent.positions[index].copy()
            parent = parent[np.arange(len(parent)) != index]
        elif around == "interstitial":
            parent = interstitial(parent, site=site, near=centre)
        else:
            raise ValueError(
                f"unknown cluster site {around!r}; allowed: {', '.join(CLUSTER_SITES)}"
            )
    if relax is not None:
        parent = relax(parent)
    if around == "surface":
        z = parent.positions[:, 2]
        pick = int(rng.choice(np.flatnonzero(z > z.max() - 0.1)))  # the top layer
    _rattle(parent, rattle, rng)
    if around == "interstitial":
        centre = parent.positions[-1]
    elif around == "surface":
        centre = parent.positions[pick]
    return defect_cluster(
        parent, centre, r_core=r_core, r_buffer=r_buffer, config_type=f"cluster-{around}"
    )


def relaxer(calculator: Calculator, *, fmax: float = 0.01, steps: int = 500) -> Relax:
    """A positions-only relaxation with ``calculator``, as a function ``Atoms → Atoms``.

    Uses the calculator's own ``minimize`` (e.g. :class:`~atomistic.mlip.oracles.LammpsCalculator`;
    force tolerance ``fmax`` on the global 2-norm), else ASE's FIRE to ``max |F_i| < fmax``.
    """

    def relax(atoms: Atoms) -> Atoms:
        if hasattr(calculator, "minimize"):
            out = calculator.minimize(atoms, ftol=fmax, maxiter=steps)
            out.calc = None
            return out
        from ase.optimize import FIRE

        out = atoms.copy()
        out.calc = calculator
        FIRE(out, logfile=None).run(fmax=fmax, steps=steps)
        out.calc = None
        return out

    return relax
