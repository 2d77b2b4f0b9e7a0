"""Which torch device a computation runs on: one rule for the whole project."""

from __future__ import annotations

import torch

__all__ = ["DEVICE_NAMES", "DeviceError", "resolve_device"]

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
