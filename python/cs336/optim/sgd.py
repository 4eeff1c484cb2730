"""The handout's stochastic gradient descent with a decaying step (:class:`SGD`)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from cs336._checks import nonnegative
from cs336.optim.adamw import Params, run_closure

__all__ = ["SGD"]


class SGD(torch.optim.Optimizer):
    """SGD with the handout's decaying step: ``p -= lr / sqrt(t + 1) * grad``, t = 0, 1, ...

    The step count ``t`` is kept per parameter in ``state["t"]``. ``step(skip=flag)``
    works as in :class:`AdamW`.
    """

    def __init__(self, params: Params, lr: float = 1e-3) -> None:
        nonnegative(lr=lr)
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(  # type: ignore[override]
        self, closure: Callable[[], float] | None = None, *, skip: Tensor | None = None
    ) -> float | None:
        loss = run_closure(closure)
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
