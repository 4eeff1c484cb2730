"""Gradient clipping by the global L2 norm (:func:`clip_grad_norm`), with no host sync."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

from cs336._checks import nonnegative

__all__ = ["clip_grad_norm"]


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
    nonnegative(max_norm=max_norm)
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
