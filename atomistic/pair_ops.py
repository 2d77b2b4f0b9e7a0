"""Pair vectors from positions and their adjoint, compiled for CPU ``float64``.

==============================  =====================================================
operation                       meaning
==============================  =====================================================
:func:`pair_vectors`            ``r_e = x_{j_e} − x_{i_e} + s_e``   ``(E, 3)``
:func:`pair_scatter`            ``f_a = Σ_{e: j_e = a} g_e − Σ_{e: i_e = a} g_e``  ``(n, 3)``
==============================  =====================================================

Each is the other's adjoint, so both are differentiable to any order through autograd. On
CPU ``float64`` 2-D tensors they run as numba loops (several times faster than torch's
``index_select``/``index_add_``); elsewhere, or with ``MULTISCALE_TORCH_ONLY=1``, as torch ops.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["pair_forces", "pair_scatter", "pair_vectors"]


def _kernels() -> Any:
    try:
        from atomistic.potentials import eam_kernels
    except ImportError:  # numba missing
        return None
    return eam_kernels if eam_kernels.compiled_wanted() else None


def _compiled(*tensors: torch.Tensor) -> Any:
    ok = all(t.device.type == "cpu" and t.dtype == torch.float64 and t.ndim == 2 for t in tensors)
    return _kernels() if ok else None


class _Gather(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, s: torch.Tensor, i: torch.Tensor, j: torch.Tensor
    ) -> torch.Tensor:
        k = _kernels()
        ctx.save_for_backward(i, j)
        ctx.n, ctx.s_rows = x.shape[0], s.shape[0]
        return torch.from_numpy(
            k.gather(x.detach().numpy(), s.detach().numpy(), i.numpy(), j.numpy())
        )

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[Any, Any, None, None]:
        i, j = ctx.saved_tensors
        gx = _Scatter.apply(g, i, j, ctx.n) if ctx.needs_input_grad[0] else None
        gs = None
        if ctx.needs_input_grad[1]:
            gs = g if ctx.s_rows == g.shape[0] else g.sum(dim=0, keepdim=True)
        return gx, gs, None, None


class _Scatter(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any, g: torch.Tensor, i: torch.Tensor, j: torch.Tensor, n: int
    ) -> torch.Tensor:
        k = _kernels()
        ctx.save_for_backward(i, j)
        return torch.from_numpy(k.scatter(g.detach().contiguous().numpy(), i.numpy(), j.numpy(), n))

    @staticmethod
    def backward(ctx: Any, f: torch.Tensor) -> tuple[Any, None, None, None]:
        i, j = ctx.saved_tensors
        zero = torch.zeros((1, 3), dtype=f.dtype)
        return _Gather.apply(f.contiguous(), zero, i, j), None, None, None


def pair_vectors(
    x: torch.Tensor, shifts: torch.Tensor, i: torch.Tensor, j: torch.Tensor
) -> torch.Tensor:
    """``x[j] − x[i] + shifts`` ``(E, 3)``; ``shifts`` is ``(E, 3)`` or ``(1, 3)``."""
    if _compiled(x, shifts) is not None and x.is_contiguous() and shifts.is_contiguous():
        out: torch.Tensor = _Gather.apply(x, shifts, i, j)
        return out
    # index_select and in-place updates: half the time of ``x[j] - x[i] + s``
    return x.index_select(0, j).sub_(x.index_select(0, i)).add_(shifts)


def pair_scatter(g: torch.Tensor, i: torch.Tensor, j: torch.Tensor, n: int) -> torch.Tensor:
    """``f (n, 3)``: ``+g_e`` onto atom ``j_e``, ``−g_e`` onto ``i_e`` (−forces from ``∂E/∂r``)."""
    if _compiled(g) is not None:
        out: torch.Tensor = _Scatter.apply(g, i, j, n)
        return out
    # −(Σ_i g) + Σ_j g: index_add_ with alpha=-1 is several times slower on the CPU
    f = torch.zeros((n, 3), dtype=g.dtype, device=g.device)
    return f.index_add_(0, i, g).neg_().index_add_(0, j, g)


def pair_forces(g: torch.Tensor, i: torch.Tensor, j: torch.Tensor, n: int) -> torch.Tensor | None:
    """Forces ``(B, n, 3)`` of ``B`` sets of pair gradients ``g = ∂E_b/∂r_e`` ``(B, E, 3)``.

    ``+g_e`` onto ``i_e``, ``−g_e`` onto ``j_e``, every set in one compiled pass over the
    pairs. Not differentiable: None where it does not apply (``g`` keeps a gradient, is not
    CPU ``float64``, or the kernels are off); then scatter each set with :func:`pair_scatter`.
    """
    ok = g.ndim == 3 and g.device.type == "cpu" and g.dtype == torch.float64
    kernels = _kernels() if ok and not g.requires_grad else None
    if kernels is None:
        return None
    a = np.ascontiguousarray(g.numpy())
    return torch.from_numpy(kernels.forces_batched(a, i.numpy(), j.numpy(), n))
