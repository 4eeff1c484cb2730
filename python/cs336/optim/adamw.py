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

__all__ = ["AdamW", "Params", "run_closure"]

Params = Iterable[Tensor] | Iterable[dict[str, Any]]

#: Where the decoupled weight decay ``p -= lr * weight_decay * p`` sits: after the Adam
#: step (the 2024 and 2025 handouts) or before the moment updates (the 2026 handout and
#: the paper's Algorithm 2).
DECAY_ORDERS = ("after", "before")


def run_closure(closure: Callable[[], float] | None) -> float | None:
    """The loss of an optimizer's ``closure`` (recomputed with gradients on), or None."""
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()


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
        # the gated updates, compiled on first use when compile=True (see _compiled_call)
        self._gated: Callable[..., None] = _gated_foreach_update
        self._gated_flat: Callable[..., None] = _gated_flat_update
        if compile:
            self._gated = torch.compile(_gated_foreach_update, fullgraph=True, dynamic=False)
            self._gated_flat = torch.compile(_gated_flat_update, fullgraph=True, dynamic=False)
        self._gated_ran = False
        self._flat = [_FlatGroup(g["params"]) if flat else None for g in self.param_groups]

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)  # also how load_state_dict installs new state
        for group in self.param_groups:  # a state_dict of cs336 before decay= existed
            group.setdefault("decay", "after")
        for flat in getattr(self, "_flat", []):
            if flat is not None:
                flat.moments_moved = True  # new moment tensors: move them into the buffers

    @torch.no_grad()
    def step(  # type: ignore[override]
        self, closure: Callable[[], float] | None = None, *, skip: Tensor | None = None
    ) -> float | None:
        loss = run_closure(closure)
        # On the CPU the flag costs nothing to read; elsewhere (and in the compiled
        # update, which wants the same graph every step) it gates the update on the device.
        gated = skip is not None and (self._compiled or skip.device.type != "cpu")
        skipped = skip is not None and not gated and bool(skip)
        flat_work: list[tuple[_FlatGroup, list[Tensor], _AdamWNumbers]] = []
        for i, group in enumerate(self.param_groups):
            params = [p for p in group["params"] if p.grad is not None]
            steps = self._advance(params)
            if skipped or not params:
                continue
            flat = self._flat[i] if i < len(self._flat) else None
            if flat is not None and len(steps) == 1 and len(params) == len(group["params"]):
                flat_work.append((flat, params, _adamw_numbers(group, steps.pop())))
                continue
            # Parameters of one group can be at different steps (e.g. after adding some):
            # the multi-tensor paths need one step count per call.
            for t in sorted(steps):
                at_t = [p for p in params if self.state[p]["step"] == t]
                numbers = _adamw_numbers(group, t)
                ms = [self.state[p]["exp_avg"] for p in at_t]
                vs = [self.state[p]["exp_avg_sq"] for p in at_t]
                if gated:
                    assert skip is not None
                    args = (at_t, [p.grad for p in at_t], ms, vs, *_constants([numbers]))
                    self._compiled_call("_gated", (*args, skip, _device_numbers([numbers], skip)))
                elif self.foreach:
                    _foreach_update(at_t, [p.grad for p in at_t], ms, vs, numbers)
                else:
                    for p, m, v in zip(at_t, ms, vs, strict=True):
                        _update(p, p.grad, m, v, numbers)
        if flat_work:
            self._flat_step(flat_work, skip if gated else None)
        return loss

    def _flat_step(
        self, work: list[tuple[_FlatGroup, list[Tensor], _AdamWNumbers]], skip: Tensor | None
    ) -> None:
        """Every flat group's update: gated, all groups in one (compiled) call."""
        buffers = [flat.prepare(params, self.state) for flat, params, _ in work]
        numbers = [n for _, _, n in work]
        if skip is None:
            for (p, g, m, v), n in zip(buffers, numbers, strict=True):
                _foreach_update([p], [g], [m], [v], n)
            return
        ps, gs, ms, vs = (list(x) for x in zip(*buffers, strict=True))
        args = (ps, gs, ms, vs, *_constants(numbers), skip, _device_numbers(numbers, skip))
        self._compiled_call("_gated_flat", args)

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

    def use_eager_update(self) -> None:
        """Stop compiling the update (the training loop calls it when compiling its step
        failed); the numbers stay device tensors, so nothing else changes."""
        self._gated, self._gated_flat = _gated_foreach_update, _gated_flat_update

    def _compiled_call(self, name: str, args: tuple[Any, ...]) -> None:
        """``getattr(self, name)(*args)``; the first call of a compiled update compiles, and
        if that fails the eager update runs instead, with a warning."""
        fn = getattr(self, name)
        if self._gated_ran or fn in (_gated_foreach_update, _gated_flat_update):
            fn(*args)
            return
        try:  # the first call compiles: before it runs anything, it may fail
            fn(*args)
            self._gated_ran = True
        except Exception as e:
            warnings.warn(
                f"torch.compile of the AdamW update failed ({type(e).__name__}: "
                f"{str(e).splitlines()[0][:200]}); using the eager update",
                RuntimeWarning,
                stacklevel=3,
            )
            self.use_eager_update()
            getattr(self, name)(*args)


class _FlatGroup:
    """The flat buffers of one param group: parameters (adopted at construction),
    gradients (copied in at each step) and the two moments (adopted from the state)."""

    def __init__(self, params: list[Tensor]) -> None:
        self.params = FlatBuffer.like(params)
        self.params.adopt(params)
        self.grads = FlatBuffer.like(params)
        self.exp_avg = FlatBuffer.like(params)
        self.exp_avg_sq = FlatBuffer.like(params)
        self.moments_moved = True  # the state's moments are not (yet) in the buffers

    def prepare(
        self, params: list[Tensor], state: dict[Tensor, dict[str, Any]]
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The four flat tensors (parameters, gradients, moments) of this step, with the
        gradients copied in.

        Raises:
            RuntimeError: the parameters were moved out of the buffer.
        """
        if not self.params.holds(params):
            raise RuntimeError(
                "AdamW(flat=True): the parameters no longer live in the optimizer's buffer "
                "(were they moved or replaced after the optimizer was built?); build the "
                "optimizer after moving the model"
            )
        if self.moments_moved:  # first created, or new after load_state_dict: move them in
            self.exp_avg.adopt([state[p]["exp_avg"] for p in params])
            self.exp_avg_sq.adopt([state[p]["exp_avg_sq"] for p in params])
            self.moments_moved = False
        torch._foreach_copy_(self.grads.views, [p.grad for p in params])  # type: ignore[misc]
        return self.params.data, self.grads.data, self.exp_avg.data, self.exp_avg_sq.data


class _AdamWNumbers(NamedTuple):
    """The numbers of one AdamW update, ``p -= lr_wd * p + step * m / (sqrt(v) + eps)``
    after the moments' updates."""

    beta1: float
    beta2: float
    one_minus_beta1: float
    one_minus_beta2: float
    eps: float
    step: float  # alpha_t * (1 - lr wd) (decay after) or alpha_t (decay before)
    lr_wd: float


def _adamw_numbers(group: dict[str, Any], t: int) -> _AdamWNumbers:
    beta1, beta2 = group["betas"]
    lr, wd = group["lr"], group["weight_decay"]
    alpha = lr * math.sqrt(1.0 - beta2**t) / (1.0 - beta1**t)
    step = alpha * (1.0 - lr * wd) if group.get("decay", "after") == "after" else alpha
    return _AdamWNumbers(beta1, beta2, 1.0 - beta1, 1.0 - beta2, group["eps"], step, lr * wd)


def _constants(numbers: list[_AdamWNumbers]) -> tuple[tuple[float, ...], ...]:
    """The numbers that stay the same from step to step (``1 - beta1``, ``1 - beta2``,
    ``eps`` of each group): a compiled update may take them as constants."""
    return tuple((n.one_minus_beta1, n.one_minus_beta2, n.eps) for n in numbers)


def _device_numbers(numbers: list[_AdamWNumbers], skip: Tensor) -> Tensor:
    """The numbers that change (beta1, beta2, step, lr wd; one row per group) as a tensor
    on ``skip``'s device, sent with no host sync (pinned memory, non-blocking)."""
    dtype = torch.float32 if skip.device.type == "mps" else torch.float64  # mps: no float64
    rows = torch.tensor([[n.beta1, n.beta2, n.step, n.lr_wd] for n in numbers], dtype=dtype)
    if skip.device.type == "cuda":
        return rows.pin_memory().to(skip.device, non_blocking=True)
    return rows.to(skip.device)


# The update, four ways: per tensor and multi-tensor with numbers (the fewest passes:
# lerp for m, the decay and the Adam step fused into one addcdiv before p is rounded
# once), and gated by device tensors, multi-tensor or over flat buffers. The same formula;
# they agree to rounding.


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


def _gated(skip: Tensor, numbers: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """beta1, beta2, step, lr wd from a row of :func:`_device_numbers`, or 1, 1, 0, 0 (no
    change at all) where ``skip`` is True."""
    return (
        torch.where(skip, 1.0, numbers[0]),
        torch.where(skip, 1.0, numbers[1]),
        torch.where(skip, 0.0, numbers[2]),
        torch.where(skip, 0.0, numbers[3]),
    )


def _gated_foreach_update(
    params: list[Tensor],
    grads: list[Tensor],
    ms: list[Tensor],
    vs: list[Tensor],
    constants: tuple[float, float, float],
    skip: Tensor,
    numbers: Tensor,
) -> None:
    """The multi-tensor update with the changing numbers on the device (one row of
    :func:`_device_numbers`), so that a skipped step is decided there and the compiled
    update is one graph for every step."""
    one_minus_beta1, one_minus_beta2, eps = constants
    beta1, beta2, step, lr_wd = _gated(skip, numbers[0])
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


def _gated_flat_update(
    params: list[Tensor],
    grads: list[Tensor],
    ms: list[Tensor],
    vs: list[Tensor],
    *args: Any,
) -> None:
    """The same update for the flat buffers of every group at once (``args``: each
    group's constants, then ``skip`` and the device numbers, a row per group): compiled,
    one graph with one fused kernel per group."""
    *constants, skip, numbers = args
    for i, (p, g, m, v) in enumerate(zip(params, grads, ms, vs, strict=True)):
        one_minus_beta1, one_minus_beta2, eps = constants[i]
        beta1, beta2, step, lr_wd = _gated(skip, numbers[i])
        g = torch.where(skip, 0.0, g)
        m.mul_(beta1).add_(g, alpha=one_minus_beta1)
        v.mul_(beta2).addcmul_(g, g, value=one_minus_beta2)
        p.sub_(p * lr_wd + m / (v.sqrt() + eps) * step)
