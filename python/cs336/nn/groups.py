"""Which of a model's parameters get weight decay (:func:`param_groups`): the model's
business, so the optimizers (:mod:`cs336.optim`) see parameter groups only."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from cs336.nn.layers import Embedding, RMSNorm

__all__ = ["param_groups"]


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
