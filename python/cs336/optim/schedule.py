"""The learning-rate schedule: linear warmup, then cosine annealing (:func:`lr_cosine_schedule`)."""

from __future__ import annotations

import math

__all__ = ["lr_cosine_schedule"]


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
