"""Lattice sites of a coupled case: for the coupled atoms and for the fully atomistic reference.

Both come from the same infinite lattice registered at the origin (a site sits there), with
the same orientation, so a site has the same reference position ``X`` in both and the
reference can be compared site by site. In 2.5d the sites form a slab periodic along ``z``
with the lattice period; in 3d they are a finite cluster.

The void removes the sites within ``defect.radius`` of the origin (of the ``z`` axis in
2.5d, where the void is a cylindrical hole through the slab). A dislocation or a crack removes
no site: it is in the displacement (a Volterra or K field the atoms start on).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from multiscale.kinds.coupled.setup import CoupledSetup

__all__ = ["coupled_sites", "reference_sites", "remove_defect"]


def _cluster(setup: CoupledSetup, region: Any) -> Any:
    from atomistic.lattice import finite_cluster

    return finite_cluster(
        setup.lattice.structure,
        element=setup.lattice.element,
        a=setup.lattice.a,
        region=region,
        orientation=setup.lattice.orientation,
        periodic_axes=(2,) if setup.dimension == "2.5d" else (),
    )


def _round(setup: CoupledSetup, radius: float, center: Any = (0.0, 0.0, 0.0)) -> Any:
    from atomistic.regions import Cylinder, Sphere

    if setup.dimension == "2.5d":
        return Cylinder(center=center, radius=radius, axis=2)
    return Sphere(center=center, radius=radius)


def remove_defect(setup: CoupledSetup, atoms: Any) -> Any:
    """The sites of ``atoms`` that the defect leaves (a copy)."""
    if setup.void_radius is None:
        return atoms.copy()
    k = 2 if setup.dimension == "2.5d" else 3
    return atoms[np.linalg.norm(atoms.positions[:, :k], axis=1) > setup.void_radius]


def coupled_sites(setup: CoupledSetup) -> tuple[Any, Any]:
    """Sites of the coupled atoms, with the defect and without (for the ghost-force correction).

    Returns:
        ``(atoms, perfect)``: ASE ``Atoms`` of every site within the handshake's ``reach``
        of its centre (plus one Å: every site of the core, handshake and pad, however the
        region grew), the defect applied, and the same sites of the perfect lattice (for a
        dislocation or a crack, whose sites are the perfect lattice's, ``r_cut`` further out).
    """
    reach, c = setup.handshake.reach, setup.handshake.center
    perfect = _cluster(setup, _round(setup, reach + 1.0, c))
    if setup.dislocation is not None or setup.crack is not None:
        # the ghost-force correction at the Volterra predictor subtracts the fully atomistic
        # forces of these sites: they must reach 2 r_cut beyond the free atoms
        return perfect, _cluster(setup, _round(setup, reach + setup.potential.range + 1.0, c))
    return remove_defect(setup, perfect), perfect


def reference_sites(setup: CoupledSetup, *, shell: float) -> tuple[Any, np.ndarray]:
    """Sites of the fully atomistic reference: the outer domain and a held shell around it.

    Args:
        setup: the resolved case.
        shell: thickness in Å of the shell of held sites outside the domain (``>= r_cut``,
            so that every free atom has a full neighbourhood).

    Returns:
        ``(atoms, free)``: the sites with the defect applied, and ``(n,)`` True for the
        sites strictly inside the outer domain (the free atoms).
    """
    from atomistic.regions import Box

    dom = setup.domain
    if dom.half_size is not None:
        half = dom.half_size + shell  # inf along z in 2.5d stays inf
        region = Box(lo=-half, hi=half)
    else:
        assert dom.radius is not None
        region = _round(setup, dom.radius + shell)
    atoms = remove_defect(setup, _cluster(setup, region))
    return atoms, dom.inside(atoms.positions)
