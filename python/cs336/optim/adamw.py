"""AdamW as the handouts write it (:class:`AdamW`): per tensor, multi-tensor, compiled, or
over flat buffers (one pass over all parameters).

The three ways of running the update compute the same formula (the tests hold each to the
others and to a float64 rendering of the handout); they differ in how many passes over
memory and kernel launches a step costs.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable
from typing import Any, Literal, NamedTuple

import torch
from torch import Tensor

from cs336._checks import nonnegative
from cs336.optim.flat import FlatBuffer

__all__ = ["AdamW", "Params"]

Params = Iterable[Tensor] | Iterable[dict[str, Any]]

#: Where the decoupled weight decay ``p -= lr * weight_decay * p`` sits: after the Adam
#: step (the 2024 and 2025 handouts) or before the moment updates (the 2026 handout and
#: the paper's Algorithm 2).
DECAY_ORDERS = ("after", "before")


class AdamW(torch.optim.Optimizer):
    """AdamW (Loshchilov & Hutter 2019, Algorithm 2), as written in the CS336 handouts.

    For each parameter, with gradient ``g`` and step ``t = 1, 2, ...``::

        p -= lr * weight_decay * p                          # decay="before" (2026)
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g^2
        alpha_t = lr * sqrt(1 - beta2^t) / (1 - beta1^t)   # bias correction in the step
        p -= alpha_t * m / (sqrt(v) + eps)
        p -= lr * weight_decay * p                          # decay="after" (2024, 2025)

    With ``u = alpha_t * m / (sqrt(v) + eps)`` and ``d = lr * weight_decay``, the two
    lines that move ``p`` are applied as one update, ``p -= d * p + c * u`` with
    ``c = 1 - d`` (after) or ``c = 1`` (before): the same number, with ``p`` rounded once
    per step. Rounding after each line instead (or decaying by the factor ``1 - d``,
    which rounds to float32) turns a decay smaller than ``p``'s float32 spacing into a
    whole spacing: at ``d = 1e-7`` that decays about 19% too much, and 1,000 steps of the
    handout's toy problem end 1e-5 away from the formula computed exactly (the one
    rounding: 5e-7). ``torch.optim.AdamW`` decays before, and adds ``eps`` to the
    bias-corrected ``sqrt(v)``; both change the update by far less than the tests'
    tolerance.

    Args:
        params: parameters or param groups (each group may override any default).
        lr, betas, eps, weight_decay: as above.
        decay: ``"after"`` (2024, 2025) or ``"before"`` (2026).
        foreach: update all tensors of a group with multi-tensor ``torch._foreach_*``
            kernels (fewer launches on a GPU; on a CPU the loop is faster); the same
            operations in the same order as the per-parameter loop, so the same numbers.
        compile: run the update through ``torch.compile`` (implies ``foreach``): on a GPU
            it becomes a few fused kernels. The compiler may fuse multiply-adds, so results
            agree with the loop to float32 rounding, not bit for bit. Use it with
            ``step(skip=...)`` (the training step always passes one): the per-step numbers
            then travel as tensors and the update compiles once (per group).
        flat: keep each group's parameters, gradients and moments in one buffer each
            (:class:`~cs336.optim.flat.FlatBuffer`), so a step is one elementwise update of
            four flat tensors: one fused kernel when compiled. The parameters' storage is
            moved into the buffer *here* (each stays the same ``nn.Parameter``, now a view),
            so build the optimizer before compiling or wrapping the model. Gradients are
            copied into the buffer (one multi-tensor copy) at each step. A group whose
            parameters do not all have gradients, or are at different steps, is updated
            tensor by tensor that step. Exactly the loop's numbers when not compiled.

    ``step(skip=flag)`` takes a 0-dim bool tensor on the parameters' device: where it is
    True the step changes no parameter and no moment, e.g. for a non-finite loss. On an
    accelerator (and in the compiled update) this is decided on the device, with no host
    sync. The step counter advances either way.

    The state (``step``, ``exp_avg``, ``exp_avg_sq`` per parameter) round-trips through
    ``state_dict()`` / ``load_state_dict()``, whatever the options of the two optimizers.

    Raises:
        ValueError: for a negative ``lr``, ``eps`` or ``weight_decay``, betas outside
            [0, 1), an unknown ``decay``, or (with ``flat``) a group mixing dtypes or devices.
    """

    def __init__(
        self,
        params: Params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.01,
        *,
        decay: Literal["after", "before"] = "after",
        foreach: bool = False,
        compile: bool = False,
        flat: bool = False,
    ) -> None:
        nonnegative(lr=lr, eps=eps, weight_decay=weight_decay)
        for i, beta in enumerate(betas):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"betas[{i}] must be in [0, 1), got {beta}")
        if decay not in DECAY_ORDERS:
            raise ValueError(f"decay must be 'after' or 'before', got {decay!r}")
        defaults = {
            "lr": lr,
            "betas": tuple(betas),
            "eps": eps,
            "weight_decay": weight_decay,
            "decay": decay,
        }
        super().__init__(params, defaults)
        self.foreach = foreach or compile or flat
        self._compiled = compile
        self._gated_ran = False
        self._gated: Callable[..., None] = (
            torch.compile(_gated_foreach_update, fullgraph=True, dynamic=False)
            if compile
            else _gated_foreach_update
        )
        self._flat = [_FlatGroup(g["params"]) if flat else None for g in self.param_groups]

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:  # a state_dict of cs336 before decay= existed
            group.setdefault("decay", "after")

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
        for i, group in enumerate(self.param_groups):
            params = [p for p in group["params"] if p.grad is not None]
            steps = self._advance(params)
            if skipped or not params:
                continue
            flat = self._flat[i] if i < len(self._flat) else None
            if flat is not None and len(steps) == 1 and len(params) == len(group["params"]):
                numbers = _adamw_numbers(group, steps.pop(), skip if gated else None)
                flat.update(params, self.state, numbers, self._update_fn(gated))
                continue
            # Parameters of one group can be at different steps (e.g. after adding some):
            # the multi-tensor paths need one step count per call.
            for t in sorted(steps):
                at_t = [p for p in params if self.state[p]["step"] == t]
                numbers = _adamw_numbers(group, t, skip if gated else None)
                if gated or self.foreach:
                    ms = [self.state[p]["exp_avg"] for p in at_t]
                    vs = [self.state[p]["exp_avg_sq"] for p in at_t]
                    self._update_fn(gated)(at_t, [p.grad for p in at_t], ms, vs, numbers)
                else:
                    for p in at_t:
                        state = self.state[p]
                        _update(p, p.grad, state["exp_avg"], state["exp_avg_sq"], numbers)
        return loss

    def _advance(self, params: list[Tensor]) -> set[int]:
        """Create missing state and count one more step for each parameter; the step
        counts now present."""
        steps = set()
        for p in params:
            state = self.state[p]
            if not state:
                state["step"] = 0
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["step"] += 1
            steps.add(state["step"])
        return steps

    def _update_fn(self, gated: bool) -> Callable[..., None]:
        return self._gated_update if gated else _foreach_update

    def use_eager_update(self) -> None:
        """Stop compiling the update (the training loop calls it when compiling its step
        failed); the numbers stay device tensors, so nothing else changes."""
        self._gated = _gated_foreach_update

    def _gated_update(
        self,
        params: list[Tensor],
        grads: list[Tensor],
        ms: list[Tensor],
        vs: list[Tensor],
        s: _AdamWNumbers,
    ) -> None:
        # Only constants and tensors go in: the compiled update guards on every Python
        # number it is given, and the step size changes at every step.
        args = (params, grads, ms, vs, s.one_minus_beta1, s.one_minus_beta2, s.eps, s.skip, s.gated)
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


class _FlatGroup:
    """The flat buffers of one param group: parameters (adopted at construction),
    gradients (copied in at each step) and the two moments (adopted from the state)."""

    def __init__(self, params: list[Tensor]) -> None:
        self.params = FlatBuffer.like(params)
        self.params.adopt(params)
        self.grads = FlatBuffer.like(params)
        self.exp_avg = FlatBuffer.like(params)
        self.exp_avg_sq = FlatBuffer.like(params)

    def update(
        self,
        params: list[Tensor],
        state: dict[Tensor, dict[str, Any]],
        numbers: _AdamWNumbers,
        update: Callable[..., None],
    ) -> None:
        if not self.params.holds(params):
            raise RuntimeError(
                "AdamW(flat=True): the parameters no longer live in the optimizer's buffer "
                "(were they moved or replaced after the optimizer was built?); build the "
                "optimizer after moving the model"
            )
        # The moments are new tensors after load_state_dict: move them in (once).
        self.exp_avg.adopt([state[p]["exp_avg"] for p in params])
        self.exp_avg_sq.adopt([state[p]["exp_avg_sq"] for p in params])
        torch._foreach_copy_(self.grads.views, [p.grad for p in params])  # type: ignore[misc]
        flats = (self.params, self.grads, self.exp_avg, self.exp_avg_sq)
        update(*([f.data] for f in flats), numbers)


class _AdamWNumbers(NamedTuple):
    """The numbers of one AdamW update, ``p -= lr_wd * p + step * m / (sqrt(v) + eps)``
    after the moments' updates. With ``skip`` (a device flag), ``beta1``, ``beta2``,
    ``step`` and ``lr_wd`` are the four entries of ``gated``, a float64 tensor on the
    device, replaced by 1, 1, 0, 0 where ``skip`` is True (and the gradients read as 0)."""

    beta1: float
    beta2: float
    one_minus_beta1: float
    one_minus_beta2: float
    eps: float
    step: float  # alpha_t * (1 - lr wd) (decay after) or alpha_t (decay before)
    lr_wd: float
    skip: Tensor | None
    gated: Tensor | None


# The update, three ways: per tensor and multi-tensor with numbers (the fewest passes:
# lerp for m, the decay and the Adam step fused into one addcdiv before p is rounded
# once), and multi-tensor gated by device tensors. The same formula; they agree to rounding.


def _update(p: Tensor, g: Tensor, m: Tensor, v: Tensor, s: _AdamWNumbers) -> None:
    m.lerp_(g, s.one_minus_beta1)  # m = beta1 m + (1 - beta1) g
    v.mul_(s.beta2).addcmul_(g, g, value=s.one_minus_beta2)  # v = beta2 v + (1 - beta2) g^2
    delta = p.mul(s.lr_wd)  # lr wd p + step m / (sqrt v + eps)
    delta.addcdiv_(m, v.sqrt().add_(s.eps), value=_finite_step(s.step, p.dtype))
    p.sub_(delta)


def _finite_step(step: float, dtype: torch.dtype) -> float:
    """``step``, as +-inf where it overflows ``dtype`` (a diverging learning rate must give
    inf weights, which the non-finite guard catches, not a RuntimeError)."""
    return step if abs(step) <= torch.finfo(dtype).max else math.copysign(math.inf, step)


def _foreach_update(
    params: list[Tensor], grads: list[Tensor], ms: list[Tensor], vs: list[Tensor], s: _AdamWNumbers
) -> None:
    """:func:`_update` for a list of tensors, in multi-tensor kernels (the same operations
    in the same order, so the same numbers)."""
    torch._foreach_lerp_(ms, grads, s.one_minus_beta1)
    torch._foreach_mul_(vs, s.beta2)
    torch._foreach_addcmul_(vs, grads, grads, value=s.one_minus_beta2)
    denom = torch._foreach_sqrt(vs)
    torch._foreach_add_(denom, s.eps)
    deltas = torch._foreach_mul(params, s.lr_wd)
    torch._foreach_addcdiv_(deltas, ms, denom, value=_finite_step(s.step, params[0].dtype))
    torch._foreach_sub_(params, deltas)


def _gated_foreach_update(
    params: list[Tensor],
    grads: list[Tensor],
    ms: list[Tensor],
    vs: list[Tensor],
    one_minus_beta1: float,
    one_minus_beta2: float,
    eps: float,
    skip: Tensor,
    gated: Tensor,
) -> None:
    """The update with the changing numbers in a device tensor (``gated``: beta1, beta2,
    step, lr wd), so that a skipped step (``skip``) is decided on the device and the
    compiled update is one graph for every step."""
    beta1 = torch.where(skip, 1.0, gated[0])
    beta2 = torch.where(skip, 1.0, gated[1])
    step = torch.where(skip, 0.0, gated[2])
    lr_wd = torch.where(skip, 0.0, gated[3])
    grads = [torch.where(skip, 0.0, g) for g in grads]  # a skipped step must not read NaN
    torch._foreach_mul_(ms, beta1)
    torch._foreach_add_(ms, grads, alpha=one_minus_beta1)
    torch._foreach_mul_(vs, beta2)
    torch._foreach_addcmul_(vs, grads, grads, value=one_minus_beta2)
    denom = torch._foreach_sqrt(vs)
    torch._foreach_add_(denom, eps)
    updates = torch._foreach_div(ms, denom)
    torch._foreach_mul_(updates, step)
    deltas = torch._foreach_mul(params, lr_wd)
    torch._foreach_add_(deltas, updates)
    torch._foreach_sub_(params, deltas)


def _adamw_numbers(group: dict[str, Any], t: int, skip: Tensor | None) -> _AdamWNumbers:
    beta1, beta2 = group["betas"]
    lr, wd = group["lr"], group["weight_decay"]
    alpha = lr * math.sqrt(1.0 - beta2**t) / (1.0 - beta1**t)
    step = alpha * (1.0 - lr * wd) if group.get("decay", "after") == "after" else alpha
    gated = None
    if skip is not None:  # one small copy to the device, with no host sync
        dtype = torch.float32 if skip.device.type == "mps" else torch.float64  # mps: no float64
        values = torch.tensor([beta1, beta2, step, lr * wd], dtype=dtype)
        if skip.device.type == "cuda":
            gated = values.pin_memory().to(skip.device, non_blocking=True)
        else:
            gated = values.to(skip.device)
    return _AdamWNumbers(beta1, beta2, 1.0 - beta1, 1.0 - beta2, group["eps"], step, lr * wd,
                         skip, gated)  # fmt: skip
