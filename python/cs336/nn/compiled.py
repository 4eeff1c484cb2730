"""Regional compilation of a :class:`~cs336.nn.model.TransformerLM` for training:
:class:`CompiledLM`.

``torch.compile(model)`` traces and compiles all ``num_layers`` blocks as one graph, so
compile time grows with depth (24 s before the first TinyStories step on an H200, 45 s
for GPT-2 small's 12 layers). Every block runs the same code on parameters of the same
shapes, so one compiled block serves them all: :class:`CompiledLM` compiles the block
once (``torch.compile`` of each block reuses the first one's code, since parameters are
graph inputs) and the head with the loss once, and runs the embeddings eagerly (two
kernels). The graphs end at block boundaries, where the residual stream is written to
memory anyway (it is saved for the backward pass).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from cs336.nn.model import TransformerLM

__all__ = ["CompiledLM"]


class CompiledLM(nn.Module):
    """``model``'s forward with each Transformer block and the head (with the loss)
    compiled; the same function as ``model(token_ids, targets=...)``, without a KV cache.

    ``model`` is held as ``_orig_mod`` (the name ``torch.compile``'s wrapper gives it), so
    its parameters are this module's and checkpoint code finds the model inside.

    >>> lm = TransformerLM(50, 8, 16, 2, 2, 32)
    >>> fast = CompiledLM(lm, backend="eager")  # "inductor" for real work
    >>> x = torch.randint(0, 50, (2, 8))
    >>> bool(torch.allclose(fast(x, targets=x), lm(x, targets=x)))
    True
    """

    def __init__(self, model: TransformerLM, backend: str = "inductor") -> None:
        super().__init__()
        self._orig_mod = model
        # plain lists, not submodules: the parameters are registered once, through the model
        self._blocks: list[Callable[..., Tensor]] = [
            torch.compile(layer, backend=backend) for layer in model.layers
        ]
        self._head: Callable[..., Tensor] = torch.compile(model.head, backend=backend)

    def forward(self, token_ids: Tensor, *, targets: Tensor | None = None) -> Tensor:
        """Logits ``(B, T, vocab_size)``, or with ``targets`` the mean cross-entropy (see
        :meth:`TransformerLM.forward <cs336.nn.model.TransformerLM.forward>`)."""
        x = self._orig_mod.embed(token_ids)
        for block in self._blocks:
            x = block(x)
        return self._head(x, targets)
