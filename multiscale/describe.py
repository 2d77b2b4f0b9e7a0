"""A short, human-readable account of a case (``multiscale check`` and the run log)."""

from __future__ import annotations

from pathlib import Path

from multiscale.config import Case
from multiscale.schema import ORIGIN_DEFAULT, ORIGIN_SET

__all__ = ["describe_case"]


def _count_atoms(structure: str, element: str, size: tuple[int, int, int]) -> int:
    from atomistic.lattice import crystal

    per_cell = len(crystal(structure, element=element, a=1.0))
    return per_cell * size[0] * size[1] * size[2]


def describe_case(case: Case, *, load: bool, output: str | Path | None = None) -> list[str]:
    """Lines describing a case.

    Args:
        case: the loaded case.
        load: also load the potential (checks the file and the element; imports torch).
        output: the ``--output`` folder, if given.

    Raises:
        CaseError: with ``load``, a missing or unreadable potential file or a missing element.
    """
    cfg = case.config
    lattice, pot, relax = cfg.lattice, cfg.potential, cfg.relax
    assert lattice is not None and pot is not None and relax is not None
    assert cfg.run is not None
    a = "relaxed under the potential" if lattice.a == "relax" else f"{lattice.a:g} Å"
    nx, ny, nz = lattice.size
    n = _count_atoms(lattice.structure, lattice.element, lattice.size)
    if load:
        from multiscale.potentials import load_potential

        potential, path = load_potential(case)
        elements = ", ".join(potential.elements)
        pot_line = f"{pot.kind} {path} (elements {elements}; cutoff {potential.cutoff:.4g} Å)"
    else:
        pot_line = f"{pot.kind} {pot.file}"
    overridden = [k for k, origin in case.origins.items() if origin == ORIGIN_SET]
    defaults = [k for k, origin in case.origins.items() if origin == ORIGIN_DEFAULT]
    return [
        f"case       {case.file} ({cfg.case.kind})",
        f"lattice    {lattice.structure} {lattice.element}, a {a}, "
        f"{nx} x {ny} x {nz} cells = {n} sites (vacancy: centre site removed)",
        f"potential  {pot_line}",
        f"relax      {relax.method} to max|F| <= {relax.fmax:g} eV/Å, "
        f"at most {relax.max_steps} steps",
        f"device     {cfg.run.device}",
        f"output     {case.output_dir(output)}",
        f"--set      {', '.join(overridden) or '-'}",
        f"defaults   {', '.join(defaults) or '-'}",
    ]
