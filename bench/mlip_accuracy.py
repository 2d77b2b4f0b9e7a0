"""Accuracy of a potential against an oracle: dataset errors, a_0, C_ij, vacancy E_f, and the
(100)/(110)/(111) surface energies and stresses (JSON).

    python bench/mlip_accuracy.py POTENTIAL --oracle lammps:Cu_mishin1.eam.alloy \\
        --dataset cases/potentials/output/cu-dataset.extxyz [--out report.json]
    python bench/mlip_accuracy.py Cu_mishin1.eam.alloy --oracle emt --dataset FILE

POTENTIAL is a potential file that ``atomistic.load_potential`` reads (a saved MLIP or
committee ``.pt``, ``.eam.alloy``, ``.eam.fs``, ``.sw``, a MACE ``.model``); a bare name is
looked up in the potentials shipped with ``lammps``. The oracle is ``emt`` (ASE's EMT) or
``lammps:FILE`` (``--pair-style``, default ``eam/alloy``). Every figure is measured for the
potential and the oracle in the same run; the JSON holds both, their difference, the
acceptance ``targets`` and the wall times (see ``atomistic/mlip/validation.py``).
"""

import argparse

import dolfinx_solver  # noqa: F401  (orders MPI before lammps)

import atomistic
from atomistic import make_oracle
from atomistic.mlip.validation import validate
from multiscale.outputs import print_json


def load(path: str):
    """The potential in ``path`` (a bare name: also in the lammps potentials)."""
    return atomistic.load_potential(atomistic.find_potential_file(path))


def oracle(spec: str, pair_style: str):
    """``emt`` or ``lammps:FILE`` as an ASE calculator."""
    if spec == "emt":
        return make_oracle({"kind": "emt"})
    kind, _, file = spec.partition(":")
    if kind != "lammps" or not file:
        raise SystemExit(f"--oracle {spec!r}: expected 'emt' or 'lammps:FILE'")
    return make_oracle({"kind": "lammps", "pair_style": pair_style, "file": file})


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("potential", help="potential file (.pt, .eam.alloy, .eam.fs, .sw)")
    p.add_argument("--oracle", required=True, help="'emt' or 'lammps:FILE'")
    p.add_argument("--pair-style", default="eam/alloy", help="LAMMPS pair_style (lammps only)")
    p.add_argument("--dataset", help="labelled extended XYZ (atomistic.read_dataset)")
    p.add_argument("--element", help="element of the crystal figures (default: the first)")
    p.add_argument("--structure", default="fcc", choices=("fcc", "bcc", "diamond"))
    p.add_argument("--a-guess", type=float, help="centre of the a_0 scan, Å")
    p.add_argument("--vacancy-size", type=int, default=4, help="cubic cells per edge (4)")
    p.add_argument("--fmax", type=float, default=1e-4, help="vacancy relaxation, eV/Å")
    p.add_argument("--no-oracle-on-dataset", action="store_true", help="skip the oracle's RMSE")
    p.add_argument("--no-surfaces", action="store_true", help="skip the surface figures")
    p.add_argument("--out", help="also write the JSON here")
    args = p.parse_args(argv)
    report = validate(
        load(args.potential),
        oracle(args.oracle, args.pair_style),
        dataset=args.dataset,
        structure=args.structure,
        element=args.element,
        a_guess=args.a_guess,
        vacancy_size=args.vacancy_size,
        fmax=args.fmax,
        oracle_on_dataset=not args.no_oracle_on_dataset,
        surfaces=not args.no_surfaces,
    )
    print_json(report, args.out)


if __name__ == "__main__":
    main()
