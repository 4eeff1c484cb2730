"""Layers: RMSNorm, feed-forwards, RoPE, attention (reference vs fused vs torch), blocks."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from cs336 import (
    FeedForward,
    MultiHeadSelfAttention,
    RMSNorm,
    RotaryEmbedding,
    SwiGLU,
    TransformerBlock,
)


@given(st.lists(st.integers(1, 4), max_size=2), st.integers(1, 16), st.integers(0, 2**31 - 1))
def test_rmsnorm_matches_torch(lead, d, seed):
    torch.manual_seed(seed)
    norm = RMSNorm(d)
    with torch.no_grad():
        norm.weight.normal_()
    x = torch.randn(*lead, d, requires_grad=True)
    ours = norm(x)
    theirs = F.rms_norm(x, (d,), norm.weight, eps=1e-5)
    torch.testing.assert_close(ours, theirs)
    g = torch.randn_like(ours)
    torch.testing.assert_close(
        torch.autograd.grad(ours, x, g)[0], torch.autograd.grad(theirs, x, g)[0]
    )


def test_rmsnorm_computes_in_float32_and_returns_the_input_dtype():
    norm = RMSNorm(64)
    x = (torch.randn(4, 64) * 300).bfloat16()  # squares overflow nothing in fp32
    out = norm(x)
    assert out.dtype == torch.bfloat16
    expected = x.float() / x.float().pow(2).mean(-1, keepdim=True).add(1e-5).sqrt()
    torch.testing.assert_close(out, expected.bfloat16())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert norm(torch.randn(2, 64)).dtype == torch.float32


def test_feedforward_and_swiglu_formulas():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 8)
    ffn = FeedForward(8, 20)
    torch.testing.assert_close(ffn(x), F.gelu(x @ ffn.w1.weight.T) @ ffn.w2.weight.T)
    glu = SwiGLU(8, 20)
    gated = F.silu(x @ glu.w1.weight.T) * (x @ glu.w3.weight.T)
    torch.testing.assert_close(glu(x), gated @ glu.w2.weight.T)
    assert [n for n, _ in ffn.named_parameters()] == ["w1.weight", "w2.weight"]
    assert all(m.bias is None for m in (ffn.w1, ffn.w2, glu.w1, glu.w2, glu.w3))


def test_rope_rotates_pairs_and_depends_only_on_relative_position():
    rope = RotaryEmbedding(8, max_len=32, theta=10000.0)
    torch.manual_seed(0)
    q, k = torch.randn(8), torch.randn(8)

    def score(pq, pk):
        rq = rope(q.view(1, 8), torch.tensor([pq]))
        rk = rope(k.view(1, 8), torch.tensor([pk]))
        return (rq * rk).sum()

    torch.testing.assert_close(score(5, 3), score(12, 10))
    torch.testing.assert_close(score(0, 0), (q * k).sum())
    # position 1, first pair: angle 1 rad
    x = torch.tensor([[1.0, 0.0] + [0.0] * 6])
    out = rope(x, torch.tensor([1]))
    torch.testing.assert_close(out[0, :2], torch.tensor([math.cos(1.0), math.sin(1.0)]))
    torch.testing.assert_close(rope(x, torch.tensor([7])).norm(), x.norm())
    with pytest.raises(ValueError, match="d_k=5"):
        RotaryEmbedding(5, 4)


@pytest.mark.parametrize(("d_k", "theta"), [(8, 10000.0), (16, 500.0), (2, 10.0)])
def test_rope_uses_the_exact_frequencies(d_k, theta):
    """Pair k at position p turns by p * theta^(-2k / d_k), k = 0 .. d_k/2 - 1."""
    rope = RotaryEmbedding(d_k, max_len=20, theta=theta)
    positions = torch.arange(20)
    x = torch.zeros(20, d_k, dtype=torch.float64)
    x[:, 0::2] = 1.0  # every pair (1, 0): it turns into (cos, sin) of its angle
    out = rope(x.float(), positions).double()
    k = torch.arange(d_k // 2, dtype=torch.float64)
    angles = positions[:, None].double() * theta ** (-2 * k / d_k)  # (20, d_k/2)
    torch.testing.assert_close(out[:, 0::2], angles.cos(), atol=1e-6, rtol=0)
    torch.testing.assert_close(out[:, 1::2], angles.sin(), atol=1e-6, rtol=0)


class _ShiftedRope(torch.nn.Module):
    """A rotary embedding that places every token ``shift`` positions later."""

    def __init__(self, rope: RotaryEmbedding, shift: int) -> None:
        super().__init__()
        self.rope, self.shift = rope, shift

    def forward(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        return self.rope(x, positions + self.shift)


def test_rope_attention_depends_only_on_relative_positions():
    """Shifting every position leaves causal attention unchanged, because queries AND
    keys are rotated; rotating only one of them would not be invariant."""
    rope = RotaryEmbedding(8, max_len=64, theta=10000.0)
    torch.manual_seed(0)
    attn = MultiHeadSelfAttention(16, 2, rope=rope)
    shifted = MultiHeadSelfAttention(16, 2, rope=_ShiftedRope(rope, 37))  # type: ignore[arg-type]
    shifted.load_state_dict(attn.state_dict())
    x = torch.randn(2, 10, 16)
    out = attn(x)
    torch.testing.assert_close(shifted(x), out, atol=1e-5, rtol=1e-5)
    plain = MultiHeadSelfAttention(16, 2)
    plain.load_state_dict(attn.state_dict())
    assert not torch.allclose(plain(x), out, atol=1e-3)  # the rotation does something


def _torch_mhsa(attn: MultiHeadSelfAttention, x: torch.Tensor) -> torch.Tensor:
    """The same attention written with torch's fused kernel and its causal flag."""
    b, t, d = x.shape
    h = attn.num_heads

    def split(w):
        return (x @ w.T).view(b, t, h, d // h).transpose(1, 2)

    q, k, v = split(attn.q_proj.weight), split(attn.k_proj.weight), split(attn.v_proj.weight)
    out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    return out.transpose(1, 2).reshape(b, t, d) @ attn.output_proj.weight.T


@pytest.mark.parametrize("fused", [False, True])
def test_attention_matches_torch_causal_attention(fused):
    torch.manual_seed(0)
    attn = MultiHeadSelfAttention(16, 4, fused=fused)
    x = torch.randn(3, 7, 16, requires_grad=True)
    ours, theirs = attn(x), _torch_mhsa(attn, x)
    torch.testing.assert_close(ours, theirs)
    g = torch.randn_like(ours)
    torch.testing.assert_close(
        torch.autograd.grad(ours, x, g)[0], torch.autograd.grad(theirs, x, g)[0]
    )


def test_attention_is_causal_and_takes_extra_batch_dims():
    torch.manual_seed(0)
    attn = MultiHeadSelfAttention(8, 2)
    x = torch.randn(2, 3, 6, 8)
    y = x.clone()
    y[..., 4:, :] = torch.randn(2, 3, 2, 8)  # change only the future of position 3
    torch.testing.assert_close(attn(x)[..., :4, :], attn(y)[..., :4, :])
    torch.testing.assert_close(attn(x)[1, 2], attn(x[1, 2]))
    with pytest.raises(ValueError, match=r"d_model \(10\) must be divisible by num_heads \(4\)"):
        MultiHeadSelfAttention(10, 4)


def _block(**kw):
    torch.manual_seed(0)
    block = TransformerBlock(16, 4, 32, **kw)
    with torch.no_grad():  # non-trivial norm gains, so a swapped norm would show
        for p in block.parameters():
            if p.ndim == 1:
                p.uniform_(0.5, 1.5)
    return block


def test_block_variants_compute_their_formulas():
    x = torch.randn(2, 5, 16)
    b = _block()
    torch.testing.assert_close(b(x), (h := x + b.attn(b.ln1(x))) + b.ffn(b.ln2(h)))
    b = _block(norm="post")
    h = b.ln1(x + b.attn(x))
    torch.testing.assert_close(b(x), b.ln2(h + b.ffn(h)))
    b = _block(norm="none")
    assert not hasattr(b, "ln1") and not hasattr(b, "ln2")
    h = x + b.attn(x)
    torch.testing.assert_close(b(x), h + b.ffn(h))
    b = _block(parallel=True)
    torch.testing.assert_close(b(x), x + b.attn(b.ln1(x)) + b.ffn(b.ln2(x)))
    b = _block(ffn="swiglu")
    assert isinstance(b.ffn, SwiGLU)


def test_block_parameter_names():
    names = [n for n, _ in TransformerBlock(16, 4, 32).named_parameters()]
    assert names == [
        "ln1.weight",
        "attn.q_proj.weight",
        "attn.k_proj.weight",
        "attn.v_proj.weight",
        "attn.output_proj.weight",
        "ln2.weight",
        "ffn.w1.weight",
        "ffn.w2.weight",
    ]


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"norm": "layer"}, "norm must be"),
        ({"ffn": "relu"}, "ffn must be"),
        ({"attention": "flash"}, "attention must be"),
        ({"norm": "post", "parallel": True}, "parallel"),
    ],
)
def test_block_rejects_bad_options(kw, match):
    with pytest.raises(ValueError, match=match):
        TransformerBlock(16, 4, 32, **kw)


def test_dropout_zero_is_exact_identity_in_training_and_positive_dropout_is_random():
    x = torch.randn(2, 5, 16)
    b = _block()
    b.train()
    train_out = b(x)
    b.eval()
    assert torch.equal(train_out, b(x))
    b = _block(attn_pdrop=0.3, residual_pdrop=0.3)
    b.eval()
    assert torch.equal(b(x), b(x))
    b.train()
    torch.manual_seed(1)
    first = b(x)
    torch.manual_seed(2)
    assert not torch.equal(first, b(x))
    torch.manual_seed(1)
    assert torch.equal(first, b(x))
