"""The Transformer's layers as small ``nn.Module``s.

Reference path: only ``nn.Parameter``, ``nn.Module`` containers, ``nn.Linear``,
``nn.Embedding`` and ``nn.Dropout`` from ``torch.nn``, with the math in
``cs336.nn.functional``. ``attention="fused"`` switches attention to PyTorch's
``F.scaled_dot_product_attention`` (tested equal to the reference).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F  # only for the explicit attention="fused" option

from cs336.nn.config import check_variant
from cs336.nn.functional import gelu, scaled_dot_product_attention, silu

__all__ = [
    "RMSNorm",
    "FeedForward",
    "SwiGLU",
    "RotaryEmbedding",
    "AttentionCache",
    "MultiHeadSelfAttention",
    "TransformerBlock",
]


class RMSNorm(nn.Module):
    """Root-mean-square layer norm (Zhang & Sennrich 2019): ``x / sqrt(mean(x^2) + eps) * w``.

    Computed in float32 whatever the input dtype (also under bf16 autocast) and returned
    in the input dtype. ``weight`` starts at ones.
    """

    def __init__(self, d_model: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))

    def forward(self, x: Tensor) -> Tensor:
        x32 = x.float()
        inv_rms = torch.rsqrt(x32.pow(2).mean(dim=-1, keepdim=True) + self.eps)  # (..., 1)
        return (x32 * inv_rms * self.weight.float()).to(x.dtype)


class FeedForward(nn.Module):
    """Position-wise feed-forward network ``w2(gelu(w1(x)))`` without biases."""

    def __init__(self, d_model: int, d_ff: int) -> None:
        super().__init__()
        self.w1 = nn.Linear(d_model, d_ff, bias=False)
        self.w2 = nn.Linear(d_ff, d_model, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.w2(gelu(self.w1(x)))


class SwiGLU(nn.Module):
    """Gated feed-forward ``w2(silu(w1(x)) * w3(x))`` (Shazeer 2020; LLaMA), no biases."""

    def __init__(self, d_model: int, d_ff: int) -> None:
        super().__init__()
        self.w1 = nn.Linear(d_model, d_ff, bias=False)
        self.w2 = nn.Linear(d_ff, d_model, bias=False)
        self.w3 = nn.Linear(d_model, d_ff, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.w2(silu(self.w1(x)) * self.w3(x))


class RotaryEmbedding(nn.Module):
    """Rotary position embedding (Su et al. 2021, RoFormer eq. 34).

    Each adjacent pair ``(x[2i], x[2i+1])`` of a ``d_k``-vector at position ``p`` is
    rotated by the angle ``p * theta^(-2i/d_k)``. The cos/sin tables for positions
    ``[0, max_len)`` are non-persistent buffers, so checkpoints do not contain them.

    Raises:
        ValueError: if ``d_k`` is odd.
    """

    cos: Tensor  # (max_len, d_k / 2)
    sin: Tensor

    def __init__(self, d_k: int, max_len: int, theta: float = 10000.0) -> None:
        super().__init__()
        if d_k % 2:
            raise ValueError(f"rotary embedding needs an even head dimension, got d_k={d_k}")
        inv_freq = theta ** (-torch.arange(0, d_k, 2, dtype=torch.float64) / d_k)  # (d_k/2,)
        angles = torch.outer(torch.arange(max_len, dtype=torch.float64), inv_freq)  # (L, d_k/2)
        self.register_buffer("cos", angles.cos().float(), persistent=False)
        self.register_buffer("sin", angles.sin().float(), persistent=False)

    def forward(self, x: Tensor, positions: Tensor) -> Tensor:
        """Rotate ``x`` of shape ``(..., T, d_k)`` for the int ``positions`` of shape (T,)."""
        cos = self.cos[positions].to(x.dtype)  # (T, d_k/2)
        sin = self.sin[positions].to(x.dtype)
        x1, x2 = x[..., 0::2], x[..., 1::2]  # (..., T, d_k/2) each
        out = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)  # (..., T, d_k/2, 2)
        return out.flatten(-2)  # (..., T, d_k)


class AttentionCache:
    """Keys and values of one attention layer for incremental decoding.

    Preallocated as ``(batch, num_heads, max_len, d_k)``; ``length`` tokens are filled.
    """

    def __init__(
        self,
        batch_size: int,
        num_heads: int,
        max_len: int,
        d_k: int,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        shape = (batch_size, num_heads, max_len, d_k)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.length = 0

    def append(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Store ``k, v`` of shape ``(B, H, T_new, d_k)``; return all keys and values so far.

        Raises:
            ValueError: if the batch size differs or the cache would overflow.
        """
        t_new = k.shape[-2]
        if k.shape[0] != self.k.shape[0]:
            raise ValueError(
                f"kv cache was made for batch size {self.k.shape[0]}, got {k.shape[0]}"
            )
        end = self.length + t_new
        if end > self.k.shape[-2]:
            raise ValueError(
                f"kv cache holds {self.length} tokens; {t_new} more would exceed its "
                f"capacity ({self.k.shape[-2]})"
            )
        self.k[:, :, self.length : end] = k
        self.v[:, :, self.length : end] = v
        self.length = end
        return self.k[:, :, :end], self.v[:, :, :end]


class MultiHeadSelfAttention(nn.Module):
    """Causal multi-head self-attention (Vaswani et al. 2017, section 3.2.2).

    ``d_k = d_v = d_model / num_heads``. The rows of ``q_proj``, ``k_proj`` and
    ``v_proj`` are ordered head by head, and all heads run in one batched matmul.

    Args:
        d_model: model width.
        num_heads: number of heads; must divide ``d_model``.
        attn_pdrop: dropout on the attention probabilities (training only).
        rope: rotary embedding applied to queries and keys (None: no rotation).
        fused: use ``torch.nn.functional.scaled_dot_product_attention`` (flash /
            memory-efficient kernels) instead of the reference implementation.
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        attn_pdrop: float = 0.0,
        *,
        rope: RotaryEmbedding | None = None,
        fused: bool = False,
    ) -> None:
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by num_heads ({num_heads})")
        self.num_heads = num_heads
        self.d_k = d_model // num_heads
        self.attn_pdrop = attn_pdrop
        self.fused = fused
        self.q_proj = nn.Linear(d_model, d_model, bias=False)
        self.k_proj = nn.Linear(d_model, d_model, bias=False)
        self.v_proj = nn.Linear(d_model, d_model, bias=False)
        self.output_proj = nn.Linear(d_model, d_model, bias=False)
        # One RotaryEmbedding may be shared by all layers; its buffers are not persistent.
        self.rope = rope

    def _heads(self, x: Tensor) -> Tensor:
        *lead, t, _ = x.shape
        return x.view(*lead, t, self.num_heads, self.d_k).transpose(-3, -2)  # (..., H, T, d_k)

    def forward(self, x: Tensor, *, cache: AttentionCache | None = None) -> Tensor:
        """``x`` of shape ``(..., T, d_model)`` -> ``(..., T, d_model)``.

        With ``cache``, ``x`` holds only the new tokens: their positions continue after
        the ``cache.length`` tokens already stored, and their keys/values are appended.
        """
        *lead, t, d_model = x.shape
        start = cache.length if cache is not None else 0
        q = self._heads(self.q_proj(x))  # (..., H, T, d_k)
        k = self._heads(self.k_proj(x))
        v = self._heads(self.v_proj(x))
        if self.rope is not None:
            positions = torch.arange(start, start + t, device=x.device)
            q, k = self.rope(q, positions), self.rope(k, positions)
        if cache is not None:
            k, v = cache.append(k, v)  # (B, H, start + T, d_k)
        p = self.attn_pdrop if self.training else 0.0
        k, v = k.to(q.dtype), v.to(q.dtype)  # a float32 cache under bf16 autocast
        if start == 0 and self.fused:
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
        else:
            # query i sits at position start + i and may see keys 0 ..= start + i
            key_pos = torch.arange(start + t, device=x.device)
            mask = key_pos[None, :] <= (key_pos[start:, None])  # (T, start + T)
            if self.fused:
                out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
            else:
                out = scaled_dot_product_attention(q, k, v, mask, p)
        out = out.transpose(-3, -2).reshape(*lead, t, d_model)  # (..., T, d_model)
        return self.output_proj(out)


class TransformerBlock(nn.Module):
    """One Transformer layer: attention and feed-forward sublayers with residuals.

    ``norm="pre"`` (default, the handout's): ``x + Dropout(Attn(ln1(x)))`` then
    ``x + Dropout(FFN(ln2(x)))``. ``norm="post"`` (the original Transformer):
    ``ln1(x + Dropout(Attn(x)))`` then ``ln2(x + Dropout(FFN(x)))``. ``norm="none"``:
    no ``ln1``/``ln2`` at all. ``parallel=True`` (GPT-J): ``x + Dropout(Attn(ln1(x))) +
    Dropout(FFN(ln2(x)))``, with pre-norm or no norm.

    Raises:
        ValueError: for an unknown ``norm`` or ``ffn``, or parallel with post-norm.
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        d_ff: int,
        attn_pdrop: float = 0.0,
        residual_pdrop: float = 0.0,
        *,
        norm: str = "pre",
        parallel: bool = False,
        ffn: str = "gelu",
        rope: RotaryEmbedding | None = None,
        attention: str = "reference",
    ) -> None:
        super().__init__()
        check_variant("norm", norm)
        check_variant("ffn", ffn)
        check_variant("attention", attention)
        if parallel and norm == "post":
            raise ValueError("parallel layers need norm='pre' or 'none', got 'post'")
        self.norm = norm
        self.parallel = parallel
        if norm != "none":
            self.ln1 = RMSNorm(d_model)
        self.attn = MultiHeadSelfAttention(
            d_model, num_heads, attn_pdrop, rope=rope, fused=attention == "fused"
        )
        if norm != "none":
            self.ln2 = RMSNorm(d_model)
        self.ffn = FeedForward(d_model, d_ff) if ffn == "gelu" else SwiGLU(d_model, d_ff)
        self.dropout = nn.Dropout(residual_pdrop)

    def _ln1(self, x: Tensor) -> Tensor:
        return x if self.norm == "none" else self.ln1(x)

    def _ln2(self, x: Tensor) -> Tensor:
        return x if self.norm == "none" else self.ln2(x)

    def _drop(self, x: Tensor) -> Tensor:
        # nn.Dropout(0) in training mode still draws a mask; skip it to be an exact identity.
        return x if self.dropout.p == 0.0 else self.dropout(x)

    def forward(self, x: Tensor, *, cache: AttentionCache | None = None) -> Tensor:
        if self.parallel:
            return (
                x
                + self._drop(self.attn(self._ln1(x), cache=cache))
                + self._drop(self.ffn(self._ln2(x)))
            )
        if self.norm == "post":
            x = self.ln1(x + self._drop(self.attn(x, cache=cache)))
            return self.ln2(x + self._drop(self.ffn(x)))
        x = x + self._drop(self.attn(self._ln1(x), cache=cache))
        return x + self._drop(self.ffn(self._ln2(x)))
