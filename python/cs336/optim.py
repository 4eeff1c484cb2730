"""Optimizers, gradient clipping and the learning-rate schedule, on top of
``torch.optim.Optimizer`` only.

>>> model = torch.nn.Linear(4, 2)
>>> opt = AdamW(model.parameters(), lr=1e-3)
>>> model(torch.ones(4)).sum().backward()
>>> clip_grad_norm(model.parameters(), max_norm=1.0) > 0
tensor(True)
>>> opt.step()
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple, cast

import torch
from torch import Tensor, nn

from cs336.nn.layers import Embedding, RMSNorm

__all__ = ["SGD", "AdamW", "clip_grad_norm", "lr_cosine_schedule", "param_groups"]

Params = Iterable[Tensor] | Iterable[dict[str, Any]]


def _check_nonnegative(**values: float) -> None:
    for name, value in values.items():
        if not value >= 0.0:  # also rejects NaN
            raise ValueError(f"{name} must be >= 0, got {value}")


class SGD(torch.optim.Optimizer):
    """SGD with the handout's decaying step: ``p -= lr / sqrt(t + 1) * grad``, t = 0, 1, ...

    The step count ``t`` is kept per parameter in ``state["t"]``. ``step(skip=flag)``
    works as in :class:`AdamW`.
    """

    def __init__(self, params: Params, lr: float = 1e-3) -> None:
        _check_nonnegative(lr=lr)
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(  # type: ignore[override]
        self, closure: Callable[[], float] | None = None, *, skip: Tensor | None = None
    ) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad if skip is None else p.grad.masked_fill_(skip, 0.0)
                state = self.state[p]
                t = state.get("t", 0)
                p.add_(grad, alpha=-group["lr"] / math.sqrt(t + 1))
                state["t"] = t + 1
        return loss


class AdamW(torch.optim.Optimizer):
    """AdamW (Loshchilov & Hutter 2019, Algorithm 2), as written in the CS336 handout.

    For each parameter, with gradient ``g`` and step ``t = 1, 2, ...``::

        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g^2
        alpha_t = lr * sqrt(1 - beta2^t) / (1 - beta1^t)   # bias correction in the step
        p -= alpha_t * m / (sqrt(v) + eps)
        p -= lr * weight_decay * p                          # decoupled weight decay

    Both lines are applied in one update, ``p -= u + lr * weight_decay * (p - u)`` with
    ``u = alpha_t * m / (sqrt(v) + eps)``: the same number, with ``p`` rounded once per
    step. Rounding after each line instead (or decaying by the factor
    ``1 - lr * weight_decay``, which rounds to float32) turns a decay smaller than
    ``p``'s float32 spacing into a whole spacing: at ``lr * weight_decay = 1e-7`` that
    decays about 19% too much, and 1,000 steps of the handout's toy problem end 1e-5 away
    from the formula computed exactly (the one rounding: 5e-7). This differs
    from ``torch.optim.AdamW`` only in where ``eps`` sits (ours is not bias-corrected) and
    in applying the decay after the Adam step; both change the update by far less than
    the tests' tolerance.

    Args:
        params: parameters or param groups (each group may override any default).
        lr, betas, eps, weight_decay: as above.
        foreach: update all tensors of a group with multi-tensor ``torch._foreach_*``
            kernels (fewer launches on a GPU; on a CPU the loop is faster); the same
            operations in the same order as the per-parameter loop, so the results are
            identical.
        compile: run the multi-tensor update through ``torch.compile`` (implies
            ``foreach``): on a GPU the whole update of a group becomes a few fused
            kernels. The same formula; the compiler may fuse multiply-adds, so results
            agree with the loop to float32 rounding, not bit for bit. Use it with
            ``step(skip=...)`` (the training step always passes one): the per-step numbers
            then travel as tensors and the update compiles once.

    ``step(skip=flag)`` takes a 0-dim bool tensor on the parameters' device: where it is
    True the step changes no parameter and no moment, e.g. for a non-finite loss. On an
    accelerator (and in the compiled update) this is decided on the device, with no host
    sync: the numbers of the update become device tensors (1, 1, 0, 0 for a skipped
    step). The step counter advances either way.

    The state (``step``, ``exp_avg``, ``exp_avg_sq`` per parameter) round-trips through
    ``state_dict()`` / ``load_state_dict()``.
    """

    def __init__(
        self,
        params: Params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.01,
        *,
        foreach: bool = False,
        compile: bool = False,
    ) -> None:
        _check_nonnegative(lr=lr, eps=eps, weight_decay=weight_decay)
        for i, beta in enumerate(betas):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"betas[{i}] must be in [0, 1), got {beta}")
        defaults = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay}
        super().__init__(params, defaults)
        self.foreach = foreach or compile
        self._compiled = compile
        self._gated_ran = False
        self._gated = (
            torch.compile(_gated_foreach_update, fullgraph=True)
            if compile
            else _gated_foreach_update
        )

    @torch.no_grad()
    def step(  # type: ignore[override]
        self, closure: Callable[[], float] | None = None, *, skip: Tensor | None = None
    ) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        # On the CPU the flag costs nothing to read; elsewhere (and in the compiled
        # update, which wants the same graph every step) it gates the update on the device.
        gated = skip is not None and (self._compiled or skip.device.type != "cpu")
        skipped = skip is not None and not gated and bool(skip)
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            steps = set()
            for p in params:
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                steps.add(state["step"])
            if skipped:
                continue
            # Parameters of one group can be at different steps (e.g. after adding some):
            # the multi-tensor paths need one step count per call.
            for t in sorted(steps):
                at_t = [p for p in params if self.state[p]["step"] == t]
                scalars = _adamw_scalars(group, t, skip if gated else None)
                if gated or self.foreach:
                    grads = [p.grad for p in at_t]
                    ms = [self.state[p]["exp_avg"] for p in at_t]
                    vs = [self.state[p]["exp_avg_sq"] for p in at_t]
                    update = self._gated_update if gated else _foreach_update
                    update(at_t, grads, ms, vs, scalars)
                else:
                    for p in at_t:
                        state = self.state[p]
                        _update(p, p.grad, state["exp_avg"], state["exp_avg_sq"], scalars)
        return loss

    def use_eager_update(self) -> None:
        """Stop compiling the update (the training loop calls it when compiling its step
        failed); the numbers stay device tensors, so nothing else changes."""
        self._gated = _gated_foreach_update

    def _gated_update(self, *args: Any) -> None:
        if self._gated is _gated_foreach_update or self._gated_ran:
            self._gated(*args)
            return
        try:  # the first call compiles: before it runs anything, it may fail
            self._gated(*args)
            self._gated_ran = True
        except Exception as e:
            warnings.warn(
                f"torch.compile of the AdamW update failed ({type(e).__name__}: "
                f"{str(e).splitlines()[0][:200]}); using the eager multi-tensor update",
                RuntimeWarning,
                stacklevel=3,
            )
            self._gated = _gated_foreach_update
            _gated_foreach_update(*args)


class _AdamWScalars(NamedTuple):
    """The numbers of one AdamW update. ``beta1``, ``beta2``, ``alpha`` and ``lr_wd`` are
    0-dim tensors when the step is gated on the device (1, 1, 0, 0 where ``skip`` is
    True, and the gradients read as 0 there)."""

    beta1: float | Tensor
    beta2: float | Tensor
    one_minus_beta1: float
    one_minus_beta2: float
    eps: float
    alpha: float | Tensor
    lr_wd: float | Tensor
    skip: Tensor | None


# The update, three ways: per tensor and multi-tensor with numbers (the fewest passes:
# lerp for m, and the Adam step with the decay of the updated p, u + lr wd (p - u) =
# lr wd p + (1 - lr wd) u, fused into one addcdiv before p is rounded once), and
# multi-tensor gated by device tensors. The same formula; the three agree to rounding.


def _update(p: Tensor, g: Tensor, m: Tensor, v: Tensor, s: _AdamWScalars) -> None:
    m.lerp_(g, s.one_minus_beta1)  # m = beta1 m + (1 - beta1) g
    v.mul_(s.beta2).addcmul_(g, g, value=s.one_minus_beta2)  # v = beta2 v + (1 - beta2) g^2
    delta = p.mul(s.lr_wd)  # lr wd p ...
    # ... + (1 - lr wd) alpha_t m / (sqrt v + eps)
    delta.addcdiv_(m, v.sqrt().add_(s.eps), value=_step_size(s, p.dtype))
    p.sub_(delta)


def _step_size(s: _AdamWScalars, dtype: torch.dtype) -> float:
    """``(1 - lr wd) alpha_t``, as +-inf where it overflows ``dtype`` (a diverging learning
    rate must give inf weights, which the non-finite guard catches, not a RuntimeError)."""
    size = cast(float, s.alpha) * (1.0 - cast(float, s.lr_wd))  # numbers on this path
    return size if abs(size) <= torch.finfo(dtype).max else math.copysign(math.inf, size)


def _foreach_update(
    params: list[Tensor], grads: list[Tensor], ms: list[Tensor], vs: list[Tensor], s: _AdamWScalars
) -> None:
    """:func:`_update` for a list of tensors, in multi-tensor kernels (the same operations
    in the same order, so the same numbers)."""
    torch._foreach_lerp_(ms, grads, s.one_minus_beta1)
    torch._foreach_mul_(vs, s.beta2)
    torch._foreach_addcmul_(vs, grads, grads, value=s.one_minus_beta2)
    denom = torch._foreach_sqrt(vs)
    torch._foreach_add_(denom, s.eps)
    deltas = torch._foreach_mul(params, s.lr_wd)
    torch._foreach_addcdiv_(deltas, ms, denom, value=_step_size(s, params[0].dtype))
    torch._foreach_sub_(params, deltas)


def _gated_foreach_update(
    params: list[Tensor], grads: list[Tensor], ms: list[Tensor], vs: list[Tensor], s: _AdamWScalars
) -> None:
    """The update with the numbers as device tensors, so that a skipped step (``s.skip``)
    is decided on the device and the compiled update is one graph for every step."""
    if s.skip is not None:  # a skipped step must not read NaN/inf
        grads = [torch.where(s.skip, 0.0, g) for g in grads]
    torch._foreach_mul_(ms, s.beta1)
    torch._foreach_add_(ms, grads, alpha=s.one_minus_beta1)
    torch._foreach_mul_(vs, s.beta2)
    torch._foreach_addcmul_(vs, grads, grads, value=s.one_minus_beta2)
    denom = torch._foreach_sqrt(vs)
    torch._foreach_add_(denom, s.eps)
    updates = torch._foreach_div(ms, denom)
    torch._foreach_mul_(updates, s.alpha)
    decay = torch._foreach_sub(params, updates)
    torch._foreach_mul_(decay, s.lr_wd)
    torch._foreach_add_(updates, decay)
    torch._foreach_sub_(params, updates)


def _adamw_scalars(group: dict[str, Any], t: int, skip: Tensor | None) -> _AdamWScalars:
    beta1, beta2 = group["betas"]
    lr, wd = group["lr"], group["weight_decay"]
    alpha = lr * math.sqrt(1.0 - beta2**t) / (1.0 - beta1**t)
    gated: list[float | Tensor] = [beta1, beta2, alpha, lr * wd]
    if skip is not None:  # skipped: m and v keep their value (factor 1), p moves by 0
        one = skip.new_ones((), dtype=torch.float64)  # made on the device: no host copy
        idle = (1.0, 1.0, 0.0, 0.0)
        gated = [torch.where(skip, one * i, one * x) for x, i in zip(gated, idle, strict=True)]
    b1, b2, alpha_t, lr_wd = gated
    return _AdamWScalars(b1, b2, 1.0 - beta1, 1.0 - beta2, group["eps"], alpha_t, lr_wd, skip)


@torch.no_grad()
def clip_grad_norm(params: Iterable[Tensor], max_norm: float, eps: float = 1e-6) -> Tensor:
    """Scale gradients in place so that their global L2 norm is at most ``max_norm``.

    The norm is taken over all parameters that have a gradient, as if concatenated;
    when it exceeds ``max_norm`` every gradient is multiplied by
    ``max_norm / (norm + eps)`` (the handout's rule). Returns the norm before clipping
    (a scalar tensor, float32 or float64 for float64 gradients; 0 when no parameter has
    a gradient).

    Raises:
        ValueError: if ``max_norm`` is negative or NaN.
    """
    _check_nonnegative(max_norm=max_norm)
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.tensor(0.0)
    # Accumulate in float32 at least (bf16 gradients) and float64 for float64 ones.
    by_dtype: dict[torch.dtype, list[Tensor]] = {}
    for g in grads:
        by_dtype.setdefault(torch.promote_types(g.dtype, torch.float32), []).append(g)
    acc = max(by_dtype, key=lambda d: torch.finfo(d).bits)
    norms = [
        n.to(acc)
        for dtype, group in by_dtype.items()
        for n in torch._foreach_norm(group, 2, dtype=dtype)  # one norm per tensor
    ]
    total = torch.linalg.vector_norm(torch.stack(norms))
    # Multiply by a tensor factor (no .item(), so no GPU sync): 1 when under max_norm.
    scale = torch.clamp(max_norm / (total + eps), max=1.0)
    torch._foreach_mul_(grads, scale)
    return total


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two AdamW param groups: ``weight_decay`` on matrices, none on the rest.

    No decay on RMSNorm gains, biases and embedding tables (:class:`cs336.nn.Embedding`
    or ``nn.Embedding``; a head tied to the token embeddings is therefore not decayed
    either). Each parameter appears once.

    >>> groups = param_groups(torch.nn.Linear(3, 2), weight_decay=0.1)
    >>> [(g["weight_decay"], len(g["params"])) for g in groups]
    [(0.1, 1), (0.0, 1)]
    """
    no_decay: dict[int, Tensor] = {}
    for module in model.modules():
        if isinstance(module, (Embedding, nn.Embedding, RMSNorm)):
            for p in module.parameters(recurse=False):
                no_decay[id(p)] = p
    for name, p in model.named_parameters():
        if name.endswith("bias") or p.ndim < 2:
            no_decay[id(p)] = p
    decay = [p for p in model.parameters() if id(p) not in no_decay]
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": list(no_decay.values()), "weight_decay": 0.0},
    ]


def lr_cosine_schedule(
    it: int, max_lr: float, min_lr: float, warmup_iters: int, cosine_cycle_iters: int
) -> float:
    """Linear warmup then cosine annealing, as in the CS336 handout (LLaMA-style).

    - ``it < warmup_iters``: ``it / warmup_iters * max_lr``;
    - ``warmup_iters <= it <= cosine_cycle_iters``: ``min_lr + (1 + cos(pi * (it -
      warmup_iters) / (cosine_cycle_iters - warmup_iters))) / 2 * (max_lr - min_lr)``;
    - ``it > cosine_cycle_iters``: ``min_lr``.

    >>> lr_cosine_schedule(14, max_lr=1.0, min_lr=0.1, warmup_iters=7, cosine_cycle_iters=21)
    0.55

    Raises:
        ValueError: if ``it`` or ``warmup_iters`` is negative, or
            ``cosine_cycle_iters < warmup_iters``.
    """
    if it < 0:
        raise ValueError(f"iteration ({it}) must be >= 0")
    if warmup_iters < 0:
        raise ValueError(f"warmup_iters ({warmup_iters}) must be >= 0")
    if cosine_cycle_iters < warmup_iters:
        raise ValueError(
            f"cosine_cycle_iters ({cosine_cycle_iters}) must be >= warmup_iters ({warmup_iters})"
        )
    if it < warmup_iters:
        return it / warmup_iters * max_lr
    if it > cosine_cycle_iters:
        return min_lr
    if cosine_cycle_iters == warmup_iters:  # no cosine phase: it == warmup_iters here
        return max_lr
    progress = (it - warmup_iters) / (cosine_cycle_iters - warmup_iters)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (max_lr - min_lr)
