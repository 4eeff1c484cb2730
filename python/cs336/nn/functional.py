"""Stateless building blocks of the Transformer LM, written with plain tensor operations.

Nothing here uses ``torch.nn.functional``: these are the reference implementations that
the tests compare against PyTorch's own (``F.softmax``, ``F.gelu``,
``F.scaled_dot_product_attention``, ``F.cross_entropy``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = [
    "softmax",
    "gelu",
    "silu",
    "dropout",
    "scaled_dot_product_attention",
    "cross_entropy",
    "perplexity",
]


def softmax(x: Tensor, dim: int = -1) -> Tensor:
    """Numerically stable softmax along ``dim``: ``exp(x - max) / sum(exp(x - max))``.

    Subtracting the maximum keeps every exponent <= 0, so logits of +-1e4 do not
    overflow. Entries equal to ``-inf`` get probability exactly 0. A slice that is
    entirely ``-inf`` (e.g. a fully masked attention row) gets all zeros instead of NaN.

    >>> softmax(torch.tensor([0.0, float("-inf")]), dim=0)
    tensor([1., 0.])
    """
    m = x.amax(dim=dim, keepdim=True)
    # An all -inf slice has max -inf; shifting by 0 instead keeps exp() at exactly 0.
    m = m.masked_fill(m == float("-inf"), 0.0).detach()
    e = torch.exp(x - m)
    s = e.sum(dim=dim, keepdim=True)
    # s >= 1 whenever the slice has a finite entry (its max contributes exp(0) = 1), so
    # only all -inf slices are touched: they divide 0 by 1.
    return e / s.masked_fill(s == 0, 1.0)


def gelu(x: Tensor) -> Tensor:
    """Exact GELU (Hendrycks & Gimpel 2016): ``x/2 * (1 + erf(x / sqrt 2))``."""
    return 0.5 * x * (1.0 + torch.erf(x * (1.0 / math.sqrt(2.0))))


def silu(x: Tensor) -> Tensor:
    """SiLU / swish: ``x * sigmoid(x)`` (the gate of SwiGLU)."""
    return x * torch.sigmoid(x)


def dropout(x: Tensor, p: float, training: bool = True) -> Tensor:
    """Inverted dropout: zero each entry with probability ``p``, scale the rest by 1/(1-p).

    With ``p == 0`` or ``training=False`` it returns ``x`` itself (an exact identity).

    Raises:
        ValueError: if ``p`` is not in [0, 1).
    """
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability {p} must be in [0, 1)")
    if p == 0.0 or not training:
        return x
    keep = torch.rand_like(x) >= p
    return x * keep / (1.0 - p)


def scaled_dot_product_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Tensor | None = None,
    dropout_p: float = 0.0,
) -> Tensor:
    """``softmax(q k^T / sqrt(d_k)) v`` (Vaswani et al. 2017, eq. 1) over any leading dims.

    Args:
        q: ``(..., T_q, d_k)`` queries.
        k: ``(..., T_k, d_k)`` keys.
        v: ``(..., T_k, d_v)`` values.
        mask: optional boolean tensor broadcastable to ``(..., T_q, T_k)``; True means
            "may attend" (PyTorch's convention). A masked position gets probability
            exactly 0. A query row with no allowed key gets all-zero probabilities and
            hence a zero output (never NaN).
        dropout_p: dropout on the attention probabilities (0 disables it exactly).

    Returns:
        ``(..., T_q, d_v)``.

    Raises:
        ValueError: if the mask is not boolean.
    """
    d_k = q.shape[-1]
    scores = q @ k.transpose(-2, -1) * (1.0 / math.sqrt(d_k))  # (..., T_q, T_k)
    if mask is not None:
        if mask.dtype != torch.bool:
            raise ValueError(
                f"attention mask must be boolean (True = may attend), got {mask.dtype}"
            )
        scores = scores.masked_fill(~mask, float("-inf"))
    probs = softmax(scores, dim=-1)
    probs = dropout(probs, dropout_p)
    return probs @ v  # (..., T_q, d_v)


def cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean of ``-log softmax(logits)[target]`` over all leading dims.

    Computed as ``logsumexp(logits) - logits[target]`` with the max subtracted inside
    the log-sum-exp (stable for logits of +-1e4), in float32 for float32 and narrower
    inputs (bf16, fp16) and in float64 for float64; the softmax itself is never formed.

    Args:
        logits: ``(..., vocab)`` unnormalized scores.
        targets: ``(...)`` integer class ids in ``[0, vocab)``.

    Raises:
        ValueError: if the shapes do not line up or ``targets`` is not an integer tensor.

    >>> round(cross_entropy(torch.zeros(2, 4), torch.tensor([0, 3])).item(), 6)  # log 4
    1.386294
    """
    check_targets(logits, targets)
    x = logits.to(torch.promote_types(logits.dtype, torch.float32))
    m = x.amax(dim=-1, keepdim=True).detach()
    lse = (x - m).exp().sum(dim=-1).log() + m.squeeze(-1)  # (...)
    target_logit = x.gather(-1, targets.long().unsqueeze(-1)).squeeze(-1)  # (...)
    return (lse - target_logit).mean()


def check_targets(logits: Tensor, targets: Tensor) -> None:
    """The checks of a cross-entropy's arguments (also used by the fused one).

    Raises:
        ValueError: if the shapes do not line up or ``targets`` is not an integer tensor.
    """
    if logits.shape[:-1] != targets.shape:
        raise ValueError(
            f"targets shape {tuple(targets.shape)} must equal logits shape without the "
            f"vocabulary dim {tuple(logits.shape[:-1])}"
        )
    if targets.dtype.is_floating_point or targets.dtype == torch.bool:
        raise ValueError(f"targets must be an integer tensor, got {targets.dtype}")


def perplexity(logits: Tensor, targets: Tensor) -> Tensor:
    """``exp(cross_entropy(logits, targets))``: the exponentiated mean per-token loss.

    For a mean loss you already have, the perplexity is ``math.exp(loss)``.
    """
    return torch.exp(cross_entropy(logits, targets))
