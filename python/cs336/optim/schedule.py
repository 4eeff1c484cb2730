"""Learning-rate schedules: the handout's linear warmup then cosine annealing
(:func:`lr_cosine_schedule`), and :func:`lr_schedule`, which also has warmup-stable-decay and
takes its position in steps or in seconds (a run trained to a time budget)."""

from __future__ import annotations

import math

__all__ = ["SCHEDULES", "lr_cosine_schedule", "lr_schedule"]

#: The schedules :func:`lr_schedule` knows.
SCHEDULES = ("cosine", "wsd")


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


def lr_schedule(
    t: float,
    *,
    max_lr: float,
    min_lr: float,
    warmup: float,
    total: float,
    kind: str = "cosine",
    cooldown: float = 0.2,
) -> float:
    """The learning rate at ``t``, where ``t``, ``warmup`` and ``total`` are in one unit:
    steps, or seconds of a run trained to a time budget.

    - ``kind="cosine"``: :func:`lr_cosine_schedule` (warmup to ``max_lr``, cosine down to
      ``min_lr`` at ``total``, ``min_lr`` after);
    - ``kind="wsd"`` (warmup-stable-decay): linear warmup, ``max_lr``, then over the last
      ``cooldown`` fraction of ``[warmup, total]`` a linear decay to ``min_lr`` at
      ``total``; ``min_lr`` after.

    >>> lr_schedule(100, max_lr=1.0, min_lr=0.0, warmup=10, total=110, kind="wsd", cooldown=0.2)
    0.5

    Raises:
        ValueError: an unknown ``kind``, ``cooldown`` outside [0, 1], or the arguments
            :func:`lr_cosine_schedule` refuses.
    """
    if kind == "cosine":
        return lr_cosine_schedule(t, max_lr, min_lr, warmup, total)  # type: ignore[arg-type]
    if kind != "wsd":
        raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {kind!r}")
    if not 0.0 <= cooldown <= 1.0:
        raise ValueError(f"cooldown must be in [0, 1], got {cooldown}")
    if t < 0 or warmup < 0 or total < warmup:
        lr_cosine_schedule(t, max_lr, min_lr, warmup, total)  # type: ignore[arg-type]  # its errors
    if t < warmup:
        return t / warmup * max_lr
    if t >= total:
        return min_lr
    start = total - cooldown * (total - warmup)
    if t < start:
        return max_lr
    return max_lr + (min_lr - max_lr) * (t - start) / (total - start)
