"""The 2025 handout's model written a second way, for the tests to compare against: plain
functions of a state dict (the handout's parameter names) built from torch's own
F.embedding, F.linear, F.rms_norm, F.silu, F.scaled_dot_product_attention, and RoPE as a
multiplication of complex numbers; and a check of the handout's truncated-normal inits.
Not collected by pytest (no test_ prefix)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def rope(x: Tensor, positions: Tensor, theta: float) -> Tensor:
    """Each pair (x[2k], x[2k+1]) as the complex number x[2k] + i x[2k+1], multiplied by
    exp(i * p * theta^(-2k/d)); ``positions`` (..., seq) broadcast against x's (..., seq, d)."""
    d = x.shape[-1]
    k = torch.arange(d // 2, dtype=torch.float64)
    angles = positions[..., None].double() * theta ** (-2 * k / d)  # (..., seq, d/2)
    z = torch.view_as_complex(x.double().reshape(*x.shape[:-1], d // 2, 2).contiguous())
    turned = z * torch.polar(torch.ones_like(angles), angles)
    return torch.view_as_real(turned).flatten(-2).to(x.dtype)


def attention(
    sd: dict[str, Tensor], prefix: str, x: Tensor, num_heads: int,
    positions: Tensor | None, theta: float,
) -> Tensor:  # fmt: skip
    """Causal multi-head self-attention (eq. 14), RoPE on q and k when ``positions``."""
    *lead, t, d = x.shape

    def heads(name: str) -> Tensor:
        u = F.linear(x, sd[f"{prefix}{name}_proj.weight"])
        return u.view(*lead, t, num_heads, d // num_heads).transpose(-3, -2)  # (..., H, T, d_k)

    q, k, v = heads("q"), heads("k"), heads("v")
    if positions is not None:
        pos = positions[..., None, :]  # the same rotation for every head
        q, k = rope(q, pos, theta), rope(k, pos, theta)
    out = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(-3, -2)
    return F.linear(out.reshape(*lead, t, d), sd[f"{prefix}output_proj.weight"])


def block(
    sd: dict[str, Tensor], prefix: str, x: Tensor, num_heads: int,
    positions: Tensor, theta: float,
) -> Tensor:  # fmt: skip
    """z = x + MHSA(RMSNorm(x)) (eq. 15), y = z + SwiGLU(RMSNorm(z)) (eq. 7)."""
    d = x.shape[-1]
    a = F.rms_norm(x, (d,), sd[f"{prefix}ln1.weight"], eps=1e-5)
    z = x + attention(sd, f"{prefix}attn.", a, num_heads, positions, theta)
    f = F.rms_norm(z, (d,), sd[f"{prefix}ln2.weight"], eps=1e-5)
    w1, w2, w3 = (sd[f"{prefix}ffn.w{i}.weight"] for i in (1, 2, 3))
    return z + F.linear(F.silu(F.linear(f, w1)) * F.linear(f, w3), w2)


def transformer_lm(
    sd: dict[str, Tensor], ids: Tensor, num_layers: int, num_heads: int, theta: float
) -> Tensor:
    """Logits of the 2025 TransformerLM: embeddings, blocks, ln_final, lm_head."""
    x = F.embedding(ids, sd["token_embeddings.weight"])
    positions = torch.arange(ids.shape[-1])
    for i in range(num_layers):
        x = block(sd, f"layers.{i}.", x, num_heads, positions, theta)
    x = F.rms_norm(x, (x.shape[-1],), sd["ln_final.weight"], eps=1e-5)
    return F.linear(x, sd["lm_head.weight"])


def state_dict_2025(
    vocab_size: int, d_model: int, num_layers: int, d_ff: int, seed: int = 0
) -> dict[str, Tensor]:
    """Random weights under the 2025 handout's state-dict names (norm gains near 1)."""
    g = torch.Generator().manual_seed(seed)

    def w(*shape: int, std: float = 0.2) -> Tensor:
        return torch.randn(shape, generator=g) * std

    def gain() -> Tensor:
        return 1 + w(d_model, std=0.3)

    sd = {"token_embeddings.weight": w(vocab_size, d_model, std=1.0)}
    for i in range(num_layers):
        p = f"layers.{i}."
        sd[p + "ln1.weight"] = gain()
        for name in ("q", "k", "v", "output"):
            sd[f"{p}attn.{name}_proj.weight"] = w(d_model, d_model)
        sd[p + "ln2.weight"] = gain()
        sd[p + "ffn.w1.weight"] = w(d_ff, d_model)
        sd[p + "ffn.w2.weight"] = w(d_model, d_ff)
        sd[p + "ffn.w3.weight"] = w(d_ff, d_model)
    sd["ln_final.weight"] = gain()
    sd["lm_head.weight"] = w(vocab_size, d_model)
    return sd


#: std of N(0, 1) truncated at +-3: sqrt(1 - 2 * 3 * phi(3) / (Phi(3) - Phi(-3)))
TRUNC3_STD = math.sqrt(1 - 6 * math.exp(-4.5) / math.sqrt(2 * math.pi) / math.erf(3 / math.sqrt(2)))


def check_truncated_normal(w: Tensor, std: float, name: str, rel: float = 0.02) -> None:
    """The entries look like N(0, std^2) truncated at +-3 std (2025 handout, 3.4.1): that
    distribution's variance (to ``rel``), the bound, and a tail that reaches close to it
    (so not cut at 2 std)."""
    w = w.detach().double().flatten()
    assert w.abs().max() <= 3 * std, name
    assert w.abs().max() > 2.8 * std, name
    assert abs(w.mean().item()) < 0.02 * std, name
    assert abs(w.std().item() / (TRUNC3_STD * std) - 1) < rel, (name, w.std().item(), std)
