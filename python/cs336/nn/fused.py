"""The fast path's kernels: PyTorch's fused operations, and a chunked cross-entropy that
never holds a float32 copy of the logits. Each is tested equal (values and gradients)
to its reference in :mod:`cs336.nn.functional`, which uses no ``torch.nn.functional``;
the layers pick one or the other by their ``kernels`` argument.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F

from cs336.nn.functional import check_targets

__all__ = ["chunked_cross_entropy", "embedding", "gelu", "rms_norm", "silu"]

gelu = F.gelu  # exact (erf) GELU, one kernel forward and one backward
silu = F.silu


def embedding(token_ids: Tensor, weight: Tensor) -> Tensor:
    """``weight[token_ids]`` with ``F.embedding``, whose backward is one dense
    scatter-add kernel."""
    return F.embedding(token_ids, weight)


def rms_norm(x: Tensor, weight: Tensor, eps: float) -> Tensor | None:
    """``x / sqrt(mean(x^2) + eps) * weight`` over the last dim with ``F.rms_norm``
    (torch >= 2.4), or None where torch has no such kernel. ``x`` and ``weight`` should be
    float32 (:class:`~cs336.nn.layers.RMSNorm` passes them so)."""
    if not hasattr(F, "rms_norm"):
        return None
    return F.rms_norm(x, x.shape[-1:], weight, eps)


# Rows per chunk are chosen so that one chunk's float32 copy holds about this many
# numbers (128 MiB): big enough that the chunks cost no launch overhead that matters, small
# enough that at GPT-2 shapes the copy is a fraction of the (B*T, V) logits.
_CHUNK_ELEMENTS = 1 << 25


class _ChunkedCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of ``(N, V)`` logits (any float dtype) against ``(N,)`` ids.

    Forward: per chunk of rows, the row losses in float32 (float64 for float64 logits)
    with ``F.cross_entropy``, keeping only the per-row log-sum-exp. Backward: per chunk,
    ``softmax - onehot`` recomputed from the saved logits and written straight into a
    gradient of the logits' dtype. What stays alive between the two is the logits
    themselves (the caller holds them anyway) and one float per row.
    """

    @staticmethod
    def forward(ctx: Any, logits: Tensor, targets: Tensor, rows: int) -> Tensor:
        acc = torch.promote_types(logits.dtype, torch.float32)  # float64 stays float64
        lse = torch.empty(logits.shape[0], dtype=acc, device=logits.device)
        total = torch.zeros((), dtype=acc, device=logits.device)
        for start in range(0, logits.shape[0], rows):
            x = logits[start : start + rows].to(acc)  # (rows, V)
            t = targets[start : start + rows]
            row_loss = F.cross_entropy(x, t, reduction="none")  # lse - x[t]
            lse[start : start + rows] = row_loss + x.gather(1, t[:, None]).squeeze(1)
            total = total + row_loss.sum()
        ctx.save_for_backward(logits, targets, lse)
        ctx.rows = rows
        return total / logits.shape[0]

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        logits, targets, lse = ctx.saved_tensors
        scale = grad / logits.shape[0]
        out = torch.empty_like(logits)
        for start in range(0, logits.shape[0], ctx.rows):
            stop = start + ctx.rows
            p = (logits[start:stop].to(lse.dtype) - lse[start:stop, None]).exp_()  # softmax
            t = targets[start:stop]
            p[torch.arange(len(t), device=p.device), t] -= 1.0  # - onehot
            torch.mul(p, scale, out=out[start:stop])
        return out, None, None


def chunked_cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean of ``-log softmax(logits)[target]`` over all leading dims, computed in float32
    (float64 for float64 logits) in chunks of rows, so that neither pass materializes a
    float32 ``(N, V)`` copy of bf16 logits nor keeps their log-softmax alive for the
    backward pass (see :class:`_ChunkedCrossEntropy`). Equal to
    :func:`cs336.nn.functional.cross_entropy`. Inside ``torch.compile`` it is
    ``F.cross_entropy`` of the logits cast to float32, which the compiler fuses into
    the same few passes without the copy.

    >>> round(chunked_cross_entropy(torch.zeros(2, 4), torch.tensor([0, 3])).item(), 6)
    1.386294

    Raises:
        ValueError: if the shapes do not line up or ``targets`` is not an integer tensor.
    """
    check_targets(logits, targets)
    vocab = logits.shape[-1]
    flat = logits.reshape(-1, vocab)
    if torch.compiler.is_compiling():
        # Compiled, the float32 cast fuses into the log-softmax's own passes (no copy is
        # made), and the graph is cheaper than the chunks: on an H200, head and loss forward
        # + backward take 2.75 ms instead of 3.70 at the TinyStories shape, 11.1 instead of
        # 39.3 at GPT-2 small's (benchmarks/RESULTS.md).
        acc = torch.promote_types(flat.dtype, torch.float32)
        return F.cross_entropy(flat.to(acc), targets.reshape(-1).long())
    rows = max(1, _CHUNK_ELEMENTS // max(vocab, 1))
    return _ChunkedCrossEntropy.apply(flat, targets.reshape(-1).long(), rows)
