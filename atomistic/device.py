"""Which torch device a computation runs on: one rule for the whole project."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["DEVICE_NAMES", "DeviceError", "one_thread", "resolve_device"]

#: The names a user may give (``run.device``, ``training.device``, ``--device``).
DEVICE_NAMES = ("auto", "cpu", "cuda")


class DeviceError(ValueError):
    """A device was asked for that this machine does not have."""


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """The torch device for ``device``.

    Args:
        device: None or ``"auto"`` (CUDA when present, else the CPU), ``"cpu"``, ``"cuda"``,
            ``"cuda:N"`` or a :class:`torch.device`.

    Raises:
        DeviceError: CUDA is asked for but torch sees no CUDA device.
    """
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"device {str(device)!r}: torch sees no CUDA device here")
    return resolved


@contextmanager
def one_thread() -> Iterator[None]:
    """Run the block with one torch (and so one compiled-kernel) thread, then restore.

    For the few results that decide something discontinuous, such as the relaxed lattice
    constant that every mesh vertex and lattice site is scaled by: a sum's order depends on
    the thread count, and a last-bit difference there can move a mesh vertex.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
