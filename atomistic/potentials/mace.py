"""MACE models (the optional ``mace-torch`` package) as project potentials.

:class:`MACEPotential` wraps a MACE module (``mace.modules.MACE``, ``ScaleShiftMACE``, or a
``.model`` file written by ``torch.save`` of one, as ``mace_run_train`` does) so that it
returns site energies from a :class:`~atomistic.neighbours.Graph`; forces, stresses and
virials then come from :func:`atomistic.potentials.protocol.evaluate` like for every other
potential.

==============================================  ==============================================
MACE                                            code
==============================================  ==============================================
edge ``s → r``, vector ``x_r − x_s + shift``    half pair ``i → j`` is sender ``i``, receiver
                                                ``j``, ``shift = r_ij``; its mirror is
                                                ``j → i`` with ``−r_ij`` (MACE wants both)
positions                                       zeros, so MACE's vectors are the graph's
``ε_i`` (``node_energy``, E0 included)          the site energies
node attributes                                 one-hot of ``Graph.species``; ``elements`` is
                                                MACE's ``atomic_numbers`` in its own order
==============================================  ==============================================

Pairs at or beyond ``r_max`` are dropped before the call: MACE's own lists stop there, the
project's carry a skin, and some MACE interaction blocks give such pairs a nonzero weight.

MACE passes messages: ``ε_i`` depends on every atom within ``num_interactions · r_max``
(attribute ``receptive_field``), not only within ``cutoff = r_max``; ``site_local`` is False.

mace-torch is an optional dependency (``pip install multiscale[mace]``); this module imports
it only when a MACE potential is built or loaded. Importing mace sets the environment
variable ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` for the process (mace-torch does it so that
e3nn 0.4 can read its constants under torch >= 2.6); the project's own ``torch.load`` calls
pass ``weights_only`` explicitly and are not affected. A ``.model`` file is a pickle:
loading one runs code from it, so load only files you trust.
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import torch
from ase.data import chemical_symbols

from atomistic.neighbours import Graph

__all__ = ["INSTALL_HINT", "MACE_SUFFIX", "MACEPotential", "require_mace"]

#: How to install the optional dependency.
INSTALL_HINT = "pip install multiscale[mace]"
#: Suffix of MACE model files (``torch.save`` of the module).
MACE_SUFFIX = ".model"


def require_mace() -> None:
    """Import ``mace.modules``.

    Raises:
        ModuleNotFoundError: mace-torch (or one of its dependencies) is missing; the
            one-line message says how to install it.
    """
    try:
        # mace-torch prints a notice about optional CUDA kernels at import; library code here
        # does not print
        with contextlib.redirect_stdout(io.StringIO()):
            import mace.modules  # noqa: F401
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError(
            f"MACE potentials need mace-torch ({err}); install it with: {INSTALL_HINT}"
        ) from err


class MACEPotential(torch.nn.Module):
    """A MACE model as a potential: site energies from a graph.

    Args:
        model: a MACE module with ``atomic_numbers``, ``r_max`` and ``num_interactions``
            (``mace.modules.MACE``, ``ScaleShiftMACE``).
        head: which readout head of a multi-head model to use; default its only head, or the
            one named ``default`` (any case).
        source: a name for error messages (the file a model was loaded from).

    Attributes:
        elements: chemical symbols of MACE's ``atomic_numbers``, in its order.
        cutoff: ``r_max`` in Å, the pair cutoff (neighbour lists).
        receptive_field: ``num_interactions · r_max`` in Å, how far ``ε_i`` reaches.
        head: the head used.

    The dtype and device are those of the module (``.to(...)`` moves both).

    Raises:
        ModuleNotFoundError: mace-torch is not installed.
        TypeError: ``model`` is not a MACE energy model.
        ValueError: ``head`` is not one of the model's heads.
    """

    #: message passing: ``ε_i`` sees the pairs of its neighbours
    site_local = False

    # buffer (registered in ``__init__``)
    head_index: torch.Tensor

    def __init__(
        self, model: torch.nn.Module, *, head: str | None = None, source: str = "MACE"
    ) -> None:
        super().__init__()
        require_mace()
        missing = [
            a for a in ("atomic_numbers", "r_max", "num_interactions") if not hasattr(model, a)
        ]
        if not isinstance(model, torch.nn.Module) or missing:
            raise TypeError(
                f"{source}: not a MACE energy model ({type(model).__name__}; missing "
                f"{', '.join(missing) or 'torch.nn.Module'})"
            )
        self.model = model
        numbers = [int(z) for z in _tensor_attribute(model, "atomic_numbers")]
        self.elements = tuple(chemical_symbols[z] for z in numbers)
        self.cutoff = float(_tensor_attribute(model, "r_max"))
        self.receptive_field = int(_tensor_attribute(model, "num_interactions")) * self.cutoff
        self.source = source
        heads = [str(h) for h in getattr(model, "heads", None) or ["Default"]]
        self.head = _pick_head(heads, head, source)
        self.register_buffer(
            "head_index",
            torch.tensor([heads.index(self.head)], dtype=torch.int64),
            persistent=False,
        )

    @classmethod
    def from_file(cls, path: str | Path, *, head: str | None = None) -> MACEPotential:
        """Load a MACE model file (``torch.save`` of the module), on the CPU, dtype as saved.

        Raises:
            ModuleNotFoundError: mace-torch is not installed.
            FileNotFoundError: no such file.
            PotentialFileError: the file is not a MACE model.
        """
        from atomistic.potentials.protocol import PotentialFileError

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"potential file not found: {path}")
        require_mace()
        try:  # a MACE model file is a pickled module: weights_only cannot read it
            model = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as err:  # torch and pickle raise many types for a foreign file
            raise PotentialFileError(f"{path}: cannot be read as a MACE model ({err})") from err
        try:
            return cls(model, head=head, source=str(path))
        except TypeError as err:
            raise PotentialFileError(str(err)) from err

    def save(self, path: str | Path) -> Path:
        """Write the MACE module with ``torch.save`` (a file mace-torch reads too), atomically.

        Returns:
            The path written; name it ``*.model`` for :func:`atomistic.load_potential`.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        torch.save(self.model, tmp)
        os.replace(tmp, path)
        return path

    def forward(self, graph: Graph) -> torch.Tensor:
        """Site energies ``(n,)`` in eV (MACE's ``node_energy``) in the graph's dtype."""
        v = graph.vectors
        n = graph.n_atoms
        keep = torch.nonzero((v * v).sum(1) < self.cutoff**2)[:, 0]
        i, j, v = graph.i[keep], graph.j[keep], v.index_select(0, keep)
        n_el = len(self.elements)
        data = {
            "positions": v.new_zeros((n, 3)),
            "edge_index": torch.stack([torch.cat([i, j]), torch.cat([j, i])]),
            "shifts": torch.cat([v, -v]),
            "node_attrs": torch.nn.functional.one_hot(graph.species, n_el).to(v.dtype),
            "batch": graph.species.new_zeros(n),
            "ptr": torch.tensor([0, n], dtype=torch.int64, device=v.device),
            "cell": v.new_zeros((1, 3, 3)),
            "head": self.head_index,
        }
        out = self.model(data, training=False, compute_force=False)
        return out["node_energy"].to(v.dtype)


def _tensor_attribute(model: torch.nn.Module, name: str) -> torch.Tensor:
    """A MACE attribute held as a buffer (``atomic_numbers``, ``r_max``, ``num_interactions``)."""
    value = getattr(model, name)
    return value if isinstance(value, torch.Tensor) else torch.as_tensor(value)


def _pick_head(heads: list[str], head: str | None, source: str) -> str:
    if head is None:
        if len(heads) == 1:
            return heads[0]
        default = [h for h in heads if h.lower() == "default"]
        if default:
            return default[0]
        raise ValueError(f"{source}: the model has heads {', '.join(heads)}; choose one")
    if head not in heads:
        raise ValueError(f"{source}: head {head!r} unknown; allowed: {', '.join(heads)}")
    return head
