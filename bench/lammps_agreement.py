"""Print the largest differences between the torch engine and LAMMPS (same potential files).

    python bench/lammps_agreement.py

Perturbed, strained (triclinic) cells with vacancies for Cu_mishin1, AlCu (eam/alloy),
CuZr_mm (eam/fs) and Si (sw); then the relaxed Cu vacancy formation energy on 4×4×4.
"""

import dolfinx_solver  # noqa: F401  (orders MPI before lammps)
import numpy as np
from ase.build import bulk

from atomistic import (
    EAM,
    EV_PER_A3_TO_GPA,
    Calculator,
    LammpsCalculator,
    StillingerWeber,
    relax,
)
from atomistic.potentials import lammps_potentials_dir

POT = lammps_potentials_dir()
RNG = np.random.default_rng(3)


def strained(atoms, rattle=0.08):
    atoms.set_cell(
        atoms.cell.array @ (np.eye(3) + 0.03 * RNG.standard_normal((3, 3))), scale_atoms=True
    )
    atoms.positions += RNG.normal(scale=rattle, size=atoms.positions.shape)
    return atoms


def alloyed(atoms, other, count):
    symbols = np.array(atoms.get_chemical_symbols())
    symbols[RNG.choice(len(atoms), count, replace=False)] = other
    atoms.set_chemical_symbols(symbols.tolist())
    return atoms


def cases():
    cu = bulk("Cu", "fcc", a=3.615).repeat((4, 4, 4))
    del cu[[5, 40]]
    yield "Cu_mishin1", strained(cu), EAM, "eam/alloy", "Cu_mishin1.eam.alloy", ["Cu"]
    alcu = alloyed(bulk("Al", "fcc", a=4.05, cubic=True).repeat((3, 3, 3)), "Cu", 30)
    del alcu[7]
    yield "AlCu", strained(alcu), EAM, "eam/alloy", "AlCu.eam.alloy", ["Al", "Cu"]
    cuzr = alloyed(bulk("Cu", "fcc", a=3.7, cubic=True).repeat((3, 3, 3)), "Zr", 40)
    del cuzr[3]
    yield "CuZr_mm", strained(cuzr), EAM, "eam/fs", "CuZr_mm.eam.fs", ["Cu", "Zr"]
    si = bulk("Si", "diamond", a=5.431).repeat((3, 3, 3))
    del si[17]
    yield "Si", strained(si, 0.1), StillingerWeber, "sw", "Si.sw", ["Si"]


def main() -> None:
    for name, atoms, kind, style, file, elements in cases():
        ref, ours = atoms.copy(), atoms.copy()
        ref.calc = LammpsCalculator(style, POT / file, elements)
        ours.calc = Calculator(kind.from_file(POT / file), device="cpu")
        de = abs(ours.get_potential_energy() - ref.get_potential_energy()) / len(atoms)
        df = np.abs(ours.get_forces() - ref.get_forces()).max()
        ds = np.abs(ours.get_stress() - ref.get_stress()).max() * EV_PER_A3_TO_GPA
        print(
            f"{name:11s} {style:9s} n={len(atoms):4d}  dE/atom={de:.1e} eV  "
            f"dF={df:.1e} eV/A  dS={ds:.1e} GPa"
        )

    f = POT / "Cu_mishin1.eam.alloy"
    perfect = bulk("Cu", "fcc", a=3.615, cubic=True).repeat((4, 4, 4))
    n = len(perfect)
    defect = perfect.copy()
    del defect[0]
    lmp = LammpsCalculator("eam/alloy", f, ["Cu"])
    perfect.calc = lmp
    e_bulk_ref = perfect.get_potential_energy()
    ef_ref = lmp.minimize(defect, ftol=1e-12).get_potential_energy() - (n - 1) / n * e_bulk_ref
    calc = Calculator(EAM.from_file(f), device="cpu")
    perfect.calc = defect.calc = calc
    ef = relax(defect, fmax=1e-5).energy - (n - 1) / n * perfect.get_potential_energy()
    print(f"Cu vacancy 4x4x4: ours {ef:.7f} eV, LAMMPS {ef_ref:.7f} eV, diff {ef - ef_ref:.1e}")


if __name__ == "__main__":
    main()
