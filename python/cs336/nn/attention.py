"""Causal multi-head self-attention, rotary position embeddings (RoPE) and the KV cache
of one attention layer.

Reference path (``kernels="reference"``): three :class:`~cs336.nn.layers.Linear`
projections and :func:`~cs336.nn.functional.scaled_dot_product_attention`.
``kernels="fused"`` computes q, k and v in one matmul (the three weights side by side;
the parameters and their names are unchanged) and runs PyTorch's
``F.scaled_dot_product_attention`` (flash / memory-efficient kernels); ``"auto"`` (what
the model passes by default) does the same, except that KV-cache decoding steps run the
reference attention. Tested equal to the reference.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F  # only for kernels="fused" / "auto"

from cs336.nn.config import check_dropout, fused_kernels
from cs336.nn.functional import scaled_dot_product_attention
from cs336.nn.layers import Device, Linear

__all__ = [
    "RotaryPositionalEmbedding",
    "RotaryEmbedding",
    "AttentionCache",
    "MultiHeadSelfAttention",
]


# Where the 2025 handout's RoPE arguments would land positionally, say how to pass them.
_POSITIONAL_2025_HINT = (
    "; RoPE's max_seq_len and theta are keyword arguments: MultiHeadSelfAttention(d_model, "
    "num_heads, max_seq_len=..., theta=...)"
)


class RotaryPositionalEmbedding(nn.Module):
    """Rotary position embedding (Su et al. 2021, RoFormer eq. 34; 2025 handout, 3.5.3).

    Each adjacent pair ``(x[2k], x[2k+1])`` of a ``d_k``-vector at position ``p`` is
    rotated by the angle ``p * theta^(-2k/d_k)``, ``k = 0 .. d_k/2 - 1``. The cos/sin
    tables for positions ``[0, max_seq_len)`` are computed in float64, stored as float32
    non-persistent buffers (so checkpoints do not contain them) and indexed by the
    positions. No parameters; one instance can serve every layer.

    >>> rope = RotaryPositionalEmbedding(10000.0, d_k=8, max_seq_len=16)
    >>> rope(torch.ones(2, 3, 5, 8), torch.arange(5)).shape
    torch.Size([2, 3, 5, 8])

    Raises:
        ValueError: if ``d_k`` is odd, ``theta`` is not positive or ``max_seq_len < 1``.
    """

    cos: Tensor  # (max_seq_len, d_k / 2)
    sin: Tensor

    def __init__(self, theta: float, d_k: int, max_seq_len: int, device: Device = None) -> None:
        super().__init__()
        if d_k % 2:
            raise ValueError(f"rotary embedding needs an even head dimension, got d_k={d_k}")
        if not theta > 0:
            raise ValueError(f"rotary embedding needs theta > 0, got {theta}")
        if max_seq_len < 1:
            raise ValueError(f"max_seq_len must be positive, got {max_seq_len}")
        self.theta, self.d_k, self.max_seq_len = theta, d_k, max_seq_len
        # float64 on the CPU (mps has no float64), then float32 on the target device
        cpu = torch.device("cpu")
        k = torch.arange(0, d_k, 2, dtype=torch.float64, device=cpu)  # 2k, (d_k/2,)
        inv_freq = theta ** (-k / d_k)
        positions = torch.arange(max_seq_len, dtype=torch.float64, device=cpu)
        angles = torch.outer(positions, inv_freq)  # (max_seq_len, d_k/2)
        target = device if device is not None else torch.get_default_device()
        self.register_buffer("cos", angles.cos().to(target, torch.float32), persistent=False)
        self.register_buffer("sin", angles.sin().to(target, torch.float32), persistent=False)

    def forward(self, x: Tensor, token_positions: Tensor) -> Tensor:
        """Rotate ``x`` of shape ``(..., seq, d_k)`` to the integer ``token_positions`` of
        shape ``(..., seq)``, whose leading dims broadcast against those of ``x`` (so a
        ``(seq,)`` vector serves every batch element and head)."""
        cos = self.cos[token_positions].to(x.dtype)  # (..., seq, d_k/2)
        sin = self.sin[token_positions].to(x.dtype)
        x1, x2 = x[..., 0::2], x[..., 1::2]  # (..., seq, d_k/2) each: pair members
        out = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)  # (..., d_k/2, 2)
        return out.flatten(-2)  # (..., seq, d_k), pairs interleaved again

    def extra_repr(self) -> str:
        return f"theta={self.theta}, d_k={self.d_k}, max_seq_len={self.max_seq_len}"


class RotaryEmbedding(RotaryPositionalEmbedding):
    """:class:`RotaryPositionalEmbedding` with cs336 0.1's argument order:
    ``RotaryEmbedding(d_k, max_len, theta=10000.0)``. The same module otherwise."""

    def __init__(
        self, d_k: int, max_len: int, theta: float = 10000.0, *, device: Device = None
    ) -> None:
        super().__init__(theta, d_k, max_len, device)


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
    """Causal multi-head self-attention (Vaswani et al. 2017, section 3.2.2), optionally
    with RoPE on the queries and keys (not the values).

    ``d_k = d_v = d_model / num_heads``. Parameters ``q_proj``, ``k_proj``, ``v_proj``,
    ``output_proj`` (no biases); the rows of q/k/v are ordered head by head and all heads
    run in one batched matmul. ``load_state_dict`` also takes the 2024 handout's per-head
    ``q_heads.{i}.weight`` / ``k_heads`` / ``v_heads`` layout. The 2024 handout's call is
    ``MultiHeadSelfAttention(d_model, num_heads, attn_pdrop)``; the 2025 handout's, with
    RoPE, is ``MultiHeadSelfAttention(d_model, num_heads, max_seq_len=..., theta=...)``.

    Args:
        d_model: model width.
        num_heads: number of heads; must divide ``d_model``.
        attn_pdrop: dropout on the attention probabilities (training only).
        max_seq_len, theta: give both to rotate queries and keys with a
            :class:`RotaryPositionalEmbedding` of its own.
        rope: an existing rotary embedding to use instead (e.g. one shared by all layers).
        kernels: ``"reference"`` (default), ``"fused"`` or ``"auto"`` (see the module
            docstring).
        device, dtype: of the parameters.

    Raises:
        ValueError: if ``num_heads`` does not divide ``d_model``, ``attn_pdrop`` is not in
            [0, 1), only one of ``max_seq_len`` / ``theta`` is given, or both and ``rope``.
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        attn_pdrop: float = 0.0,
        *,
        max_seq_len: int | None = None,
        theta: float | None = None,
        rope: RotaryPositionalEmbedding | None = None,
        kernels: str = "reference",
        device: Device = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by num_heads ({num_heads})")
        check_dropout("attn_pdrop", attn_pdrop, _POSITIONAL_2025_HINT)
        self.num_heads = num_heads
        self.d_k = d_model // num_heads
        self.attn_pdrop = attn_pdrop
        self.fused = fused_kernels(kernels)  # one qkv matmul and torch's SDPA
        self.reference_decode = kernels == "auto"  # ... but not for KV-cache steps
        self.q_proj = Linear(d_model, d_model, device, dtype)
        self.k_proj = Linear(d_model, d_model, device, dtype)
        self.v_proj = Linear(d_model, d_model, device, dtype)
        self.output_proj = Linear(d_model, d_model, device, dtype)
        if (max_seq_len is None) != (theta is None):
            raise ValueError("RoPE needs both max_seq_len and theta (or neither)")
        if max_seq_len is not None and theta is not None:
            if rope is not None:
                raise ValueError("give either rope or max_seq_len and theta, not both")
            rope = RotaryPositionalEmbedding(theta, self.d_k, max_seq_len, device)
        # A shared RotaryPositionalEmbedding has no parameters and non-persistent buffers.
        self.rope = rope
        self._register_load_state_dict_pre_hook(self._join_per_head_weights)

    def _join_per_head_weights(self, state_dict: dict[str, Tensor], prefix: str, *_: Any) -> None:
        """Let ``load_state_dict`` read the 2024 handout's per-head layout too:
        ``q_heads.{i}.weight`` (each ``(d_k, d_model)``, i < num_heads) stacked in head
        order are ``q_proj.weight``; the same for k and v. ``state_dict`` is load_state_dict's
        own copy; an incomplete set of heads is left as it is, for the usual error."""
        for name in ("q", "k", "v"):
            heads = [f"{prefix}{name}_heads.{i}.weight" for i in range(self.num_heads)]
            if all(h in state_dict for h in heads):
                state_dict[f"{prefix}{name}_proj.weight"] = torch.cat(
                    [state_dict.pop(h) for h in heads]
                )

    def _heads(self, x: Tensor) -> Tensor:
        *lead, t, _ = x.shape
        return x.view(*lead, t, self.num_heads, self.d_k).transpose(-3, -2)  # (..., H, T, d_k)

    def forward(
        self,
        x: Tensor,
        token_positions: Tensor | None = None,
        *,
        cache: AttentionCache | None = None,
    ) -> Tensor:
        """``x`` of shape ``(..., T, d_model)`` -> ``(..., T, d_model)``.

        ``token_positions`` (integer, shape ``(..., T)`` broadcastable against the leading
        dims of ``x``) are the positions RoPE rotates to; the default is ``0 .. T-1``, or
        with ``cache`` the ``T`` positions after the ``cache.length`` already stored.
        Without RoPE they are not used. The causal mask always follows the order of the
        tokens in the sequence (and the cache).

        With ``cache``, ``x`` holds only the new tokens (``x`` must be ``(B, T, d_model)``);
        their keys and values are appended.
        """
        *lead, t, d_model = x.shape
        start = cache.length if cache is not None else 0
        if self.fused:  # one (d_model -> 3 d_model) matmul instead of three
            w = torch.cat([self.q_proj.weight, self.k_proj.weight, self.v_proj.weight])
            q, k, v = map(self._heads, (x @ w.T).split(d_model, dim=-1))  # (..., H, T, d_k)
        else:
            q = self._heads(self.q_proj(x))  # (..., H, T, d_k)
            k = self._heads(self.k_proj(x))
            v = self._heads(self.v_proj(x))
        if self.rope is not None:
            if token_positions is None:
                positions = torch.arange(start, start + t, device=x.device)  # (T,)
            else:
                positions = token_positions[..., None, :]  # (..., 1, T): every head alike
            q, k = self.rope(q, positions), self.rope(k, positions)
        if cache is not None:
            k, v = cache.append(k, v)  # (B, H, start + T, d_k)
        p = self.attn_pdrop if self.training else 0.0
        k, v = k.to(q.dtype), v.to(q.dtype)  # a float32 cache under bf16 autocast
        fused = self.fused and not (start > 0 and self.reference_decode)
        if start == 0 and fused:
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
        else:
            # query i sits at position start + i and may see keys 0 ..= start + i
            key_pos = torch.arange(start + t, device=x.device)
            mask = key_pos[None, :] <= (key_pos[start:, None])  # (T, start + T)
            if fused:
                out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
            else:
                out = scaled_dot_product_attention(q, k, v, mask, p)
        out = out.transpose(-3, -2).reshape(*lead, t, d_model)  # (..., T, d_model)
        return self.output_proj(out)
