"""autograd for the compiled moment-tensor descriptor (:mod:`atomistic.mlip.moment_kernels`).

===========================  ===========================================================
autograd node                computes (``Λ`` the cotangent of the features)
===========================  ===========================================================
:class:`_Features`           ``G (n, D)`` from the pair vectors ``r (E, 3)``
its backward                 ``g = ∂(Λ·G)/∂r (E, 3)``, itself the differentiable
                             :class:`_PairGradient` of ``(r, Λ)``
:class:`_PairGradient`       backward for a pair-space ``V``: ``(∂²(Λ·G)/∂r²) V`` (to
                             ``r``) and ``(∂G/∂r) V`` (to ``Λ``)
===========================  ===========================================================

``Λ`` may carry a leading batch axis ``(B, n, D)``: :func:`pair_gradients` maps the
cotangents of all members of a committee in one pass over the pairs
(:func:`atomistic.mlip.committee.member_forces`). A vmapped backward through the features
(``is_grads_batched``) is not supported: vmap the networks only, as ``member_forces`` does.
Differentiating the Hessian-vector product raises (``RuntimeError``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from atomistic.mlip import moment_kernels as mk
from atomistic.neighbours import Graph

__all__ = ["MomentState", "moment_features", "moment_plan", "moment_state", "pair_gradients"]


def moment_plan(descriptor: Any) -> mk.MomentPlan:
    """The constants of a :class:`~atomistic.mlip.moments.MomentDescriptor` as NumPy arrays."""
    spec = descriptor.spec
    exps = np.ascontiguousarray(descriptor.exponents.cpu().numpy().astype(np.int64))
    rank = exps.sum(axis=1).astype(np.int64)
    n_l = spec.max_l + 1
    l_start = np.array([int((rank < l).sum()) for l in range(n_l + 1)], dtype=np.int64)
    f64 = np.float64

    def arr(t: torch.Tensor) -> np.ndarray:
        return np.ascontiguousarray(t.detach().cpu().numpy().astype(f64))

    radial_eta, radial_shift = arr(descriptor.radial_eta), arr(descriptor.radial_shift)
    return mk.MomentPlan(
        n_el=descriptor.n_elements,
        radial_eta=radial_eta,
        radial_shift=radial_shift,
        radial_ratio=mk.uniform_ratio(radial_eta, radial_shift, float(spec.cutoff)),
        cutoff=float(spec.cutoff),
        angular_eta=arr(descriptor.angular_eta),
        angular_shift=arr(descriptor.angular_shift),
        r_angular=float(spec.r_angular),
        kind=1 if spec.cutoff_function == "cosine" else 0,
        exponents=exps,
        rank=rank,
        weight=arr(descriptor.weight),
        l_start=l_start,
        pair_rows=np.ascontiguousarray(descriptor.pair_rows.cpu().numpy().astype(np.int64)),
        pair_cols=np.ascontiguousarray(descriptor.pair_cols.cpu().numpy().astype(np.int64)),
    )


@dataclass
class MomentState:
    """One evaluation: the pairs, their vectors, the per-atom list within ``r_a``, ``M``.

    Attributes:
        plan: the descriptor's constants.
        i, j: ``(E,)`` pair atoms; ``species`` ``(n,)``.
        vectors: ``(E, 3)`` pair vectors (NumPy, float64).
        moments: ``(n, K, A)`` weighted moments ``M``.
        features: ``(n, D)`` descriptors ``G``.
    """

    plan: mk.MomentPlan
    i: np.ndarray
    j: np.ndarray
    species: np.ndarray
    vectors: np.ndarray
    moments: np.ndarray
    features: np.ndarray
    _kept: np.ndarray = field(default_factory=lambda: np.empty((0, 0, 0, 0)), repr=False)
    _angular_list: tuple[np.ndarray, ...] | None = field(default=None, repr=False)

    @property
    def angular(self) -> tuple[np.ndarray, ...]:
        """``(ptr, pair, sign, element)`` of :func:`~moment_kernels.angular_list`.

        Built on first use: the JVP and the Hessian need it, the features and the VJP do not.
        """
        if self._angular_list is None:
            n = self.features.shape[0]
            r_a = self.plan.r_angular
            self._angular_list = mk.angular_list(self.i, self.j, self.vectors, self.species, r_a, n)
        return self._angular_list

    def _radial(self) -> tuple[Any, ...]:
        return (self.i, self.j, self.vectors, self.species, *self.plan.radial_args())

    def _angular(self) -> tuple[Any, ...]:
        return ((*self.angular, self.vectors), self.plan.angular_args())

    def vjp(self, lam: np.ndarray) -> np.ndarray:
        """``∂(Λ_b·G)/∂r`` ``(B, E, 3)`` for cotangents ``lam`` ``(B, n, D)``."""
        out = np.empty((lam.shape[0], self.i.shape[0], 3))  # every row written by the radial pass
        mk._radial_vjp(*self._radial(), lam, out)
        pairs = (self.i, self.j, self.vectors, self.species)
        mk._angular_vjp(*pairs, self.plan.angular_args(), self.moments, lam, out)
        return out

    def jvp(self, w: np.ndarray, *, keep: bool = False) -> np.ndarray:
        """``(∂G/∂r) w_b`` ``(B, n, D)`` for pair-space tangents ``w`` ``(B, E, 3)``.

        ``keep``: also keep the moments' tangent ``δM`` for the next :meth:`hvp` with the same
        ``w`` (``kept=True`` there), which then skips recomputing it.
        """
        out = np.zeros((w.shape[0], *self.features.shape))
        shape = (self.features.shape[0] if keep else 0, w.shape[0], *self.moments.shape[1:])
        self._kept = np.empty(shape)
        mk._radial_jvp(*self._radial(), w, out)
        mk._angular_jvp(*self._angular(), self.moments, w, out, self._kept)
        return out

    def hvp(
        self, lam: np.ndarray, w: np.ndarray, dlam: np.ndarray | None = None, *, kept: bool = False
    ) -> np.ndarray:
        """``Σ_b (∂²(Λ_b·G)/∂r²) w_b`` ``(E, 3)``, plus ``∂(δΛ_b·G)/∂r`` for ``dlam`` given.

        (The same as adding ``vjp(dlam)``, in the same pass over the pairs). ``kept``: the
        last :meth:`jvp` ran with ``keep=True`` on this ``w``.
        """
        out = np.zeros((self.i.shape[0], 3))
        if dlam is None:
            dlam = np.empty((0, *self.features.shape))
        mk._radial_hvp(*self._radial(), lam, dlam, w, out)
        if kept and self._kept.shape[0] == 0:
            raise ValueError("hvp(kept=True) needs a jvp(keep=True) with the same tangent first")
        dm = self._kept if kept else np.empty((0, *self._kept.shape[1:]))
        mk._angular_hvp(*self._angular(), self.moments, lam, dlam, w, dm, out)
        return out


def _np(x: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(x.detach().numpy())


def moment_state(plan: mk.MomentPlan, graph: Graph) -> MomentState:
    """Evaluate the descriptors of ``graph`` (CPU float64) and keep what the derivatives need."""
    i, j, species = _np(graph.i), _np(graph.j), _np(graph.species)
    vec = _np(graph.vectors)
    n = graph.n_atoms
    k = plan.n_el * plan.angular_eta.shape[0]
    moments = np.zeros((n, k, plan.exponents.shape[0]))
    features = np.zeros((n, plan.n_features))
    mk._radial_forward(i, j, vec, species, *plan.radial_args(), features)
    mk._angular_forward(i, j, vec, species, plan.angular_args(), moments, features)
    return MomentState(
        plan=plan,
        i=i,
        j=j,
        species=species,
        vectors=vec,
        moments=moments,
        features=features,
    )


def _batched(x: torch.Tensor, dims: int) -> tuple[np.ndarray, bool]:
    """``x`` as a NumPy array with a leading batch axis (added when ``x.ndim == dims``)."""
    a = _np(x)
    return (a[None], False) if a.ndim == dims else (a, True)


class _Features(torch.autograd.Function):
    """``G (n, D)`` from the pair vectors; backward is the differentiable :class:`_PairGradient`."""

    @staticmethod
    def forward(vectors: torch.Tensor, state: MomentState) -> torch.Tensor:
        return torch.from_numpy(state.features)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        vectors, state = inputs
        ctx.state = state
        ctx.save_for_backward(vectors)

    @staticmethod
    def backward(ctx: Any, lam: torch.Tensor) -> tuple[torch.Tensor, None]:
        (vectors,) = ctx.saved_tensors
        return _PairGradient.apply(vectors, lam, ctx.state), None


class _PairGradient(torch.autograd.Function):
    """``g = ∂(Λ·G)/∂r`` ``(E, 3)`` (``(B, E, 3)`` for ``Λ (B, n, D)``)."""

    @staticmethod
    def forward(vectors: torch.Tensor, lam: torch.Tensor, state: MomentState) -> torch.Tensor:
        a, batched = _batched(lam, 2)
        g = state.vjp(a)
        return torch.from_numpy(g if batched else g[0])

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        vectors, lam, state = inputs
        ctx.state = state
        ctx.save_for_backward(lam)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, w: torch.Tensor) -> tuple[Any, Any, None]:
        (lam,) = ctx.saved_tensors
        a, batched = _batched(lam, 2)
        v = _np(w)
        if not batched:
            v = v[None]
        grad_vec = grad_lam = None
        if ctx.needs_input_grad[0]:
            grad_vec = torch.from_numpy(ctx.state.hvp(a, v))
        if ctx.needs_input_grad[1]:
            d = ctx.state.jvp(v)
            grad_lam = torch.from_numpy(d if batched else d[0])
        return grad_vec, grad_lam, None


def moment_features(plan: mk.MomentPlan, graph: Graph) -> tuple[torch.Tensor, MomentState]:
    """Descriptors ``(n, D)`` of ``graph`` and the evaluation state.

    The descriptors are differentiable in ``graph.vectors`` to second order; the state
    serves :meth:`MomentState.vjp` with many cotangents.
    """
    state = moment_state(plan, graph)
    out: torch.Tensor = _Features.apply(graph.vectors, state)
    return out, state


def pair_gradients(vectors: torch.Tensor, lam: torch.Tensor, state: MomentState) -> torch.Tensor:
    """``∂(Λ_b·G)/∂r`` ``(B, E, 3)`` for cotangents ``lam`` ``(B, n, D)`` in one pass.

    Differentiable in ``lam`` and ``vectors`` (to first order), as the backward of the
    features is; ``state`` comes from :func:`moment_features` at ``vectors``.
    """
    out: torch.Tensor = _PairGradient.apply(vectors, lam, state)
    return out
