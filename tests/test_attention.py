"""RoPE and causal multi-head self-attention: exact frequencies, a complex-number reference,
arbitrary token_positions shapes, relative-position invariance, torch's fused attention.
The references are in tests/reference_2025.py."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from reference_2025 import attention as reference_attention
from reference_2025 import rope as reference_rope

from cs336 import (
    MultiHeadSelfAttention,
    RotaryEmbedding,
    RotaryPositionalEmbedding,
    TransformerBlock,
)


@pytest.mark.parametrize(("d_k", "theta"), [(8, 10000.0), (16, 500.0), (2, 10.0)])
def test_rope_uses_the_exact_frequencies(d_k, theta):
    """Pair k at position p turns by p * theta^(-2k / d_k), k = 0 .. d_k/2 - 1."""
    rope = RotaryPositionalEmbedding(theta, d_k, max_seq_len=20)
    positions = torch.arange(20)
    x = torch.zeros(20, d_k)
    x[:, 0::2] = 1.0  # every pair (1, 0): it turns into (cos, sin) of its angle
    out = rope(x, positions).double()
    k = torch.arange(d_k // 2, dtype=torch.float64)
    angles = positions[:, None].double() * theta ** (-2 * k / d_k)  # (20, d_k/2)
    torch.testing.assert_close(out[:, 0::2], angles.cos(), atol=1e-6, rtol=0)
    torch.testing.assert_close(out[:, 1::2], angles.sin(), atol=1e-6, rtol=0)
    # position 1, first pair: angle exactly 1 rad; a rotation keeps the norm
    e0 = torch.zeros(1, d_k)
    e0[0, 0] = 1.0
    expected = torch.tensor([math.cos(1.0), math.sin(1.0)])
    torch.testing.assert_close(rope(e0, torch.tensor([1]))[0, :2], expected)
    y = torch.randn(5, d_k)
    torch.testing.assert_close(rope(y, torch.arange(5) + 9).norm(dim=-1), y.norm(dim=-1))


# (x shape, token_positions shape): positions broadcast against x's leading dims
POSITION_SHAPES = [
    ((7, 8), (7,)),
    ((3, 7, 8), (3, 7)),
    ((3, 7, 8), (7,)),
    ((2, 3, 7, 8), (2, 3, 7)),
    ((2, 3, 7, 8), (2, 1, 7)),
    ((2, 3, 7, 8), (1, 7)),
]


@pytest.mark.parametrize(("x_shape", "pos_shape"), POSITION_SHAPES)
def test_rope_equals_the_complex_reference_for_any_token_positions(x_shape, pos_shape):
    torch.manual_seed(0)
    rope = RotaryPositionalEmbedding(10000.0, 8, max_seq_len=64)
    x = torch.randn(x_shape, dtype=torch.float64, requires_grad=True)
    positions = torch.randint(0, 64, pos_shape)  # any positions, not only 0..T-1
    ours = rope(x, positions)
    theirs = reference_rope(x, positions, 10000.0)
    assert ours.shape == x.shape and ours.dtype == x.dtype
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=1e-6)
    g = torch.randn_like(ours)
    torch.testing.assert_close(
        torch.autograd.grad(ours, x, g)[0],
        torch.autograd.grad(theirs, x, g)[0],
        atol=1e-6,
        rtol=1e-6,
    )


def test_rope_buffers_are_not_state_and_the_old_name_is_the_same_module():
    rope = RotaryPositionalEmbedding(500.0, 16, 32)
    assert dict(rope.state_dict()) == {} and not list(rope.parameters())
    old = RotaryEmbedding(16, 32, theta=500.0)
    assert isinstance(old, RotaryPositionalEmbedding)
    assert torch.equal(old.cos, rope.cos) and torch.equal(old.sin, rope.sin)
    assert rope.cos.shape == (32, 8) and rope.cos.dtype == torch.float32
    with pytest.raises(ValueError, match="d_k=5"):
        RotaryPositionalEmbedding(10000.0, 5, 4)
    with pytest.raises(ValueError, match="theta > 0"):
        RotaryPositionalEmbedding(0.0, 4, 4)
    on_meta = RotaryPositionalEmbedding(1e4, 8, 16, device="meta")
    assert on_meta.cos.device.type == "meta"


@given(st.integers(0, 40), st.integers(0, 2**31 - 1))
def test_rope_attention_depends_only_on_relative_positions(shift, seed):
    """Shifting every token position leaves causal attention unchanged, because queries
    AND keys are rotated (rotating only one of them is not invariant)."""
    torch.manual_seed(seed)
    attn = MultiHeadSelfAttention(16, 2, max_seq_len=64, theta=10000.0)
    x = torch.randn(2, 10, 16)
    out = attn(x)  # positions 0..9
    shifted = attn(x, torch.arange(10) + shift)
    torch.testing.assert_close(shifted, out, atol=1e-5, rtol=1e-5)
    # and the positions matter: reversing them changes the output
    assert not torch.allclose(attn(x, torch.arange(10).flip(0) + 20), out, atol=1e-3)


def test_rope_attention_without_rope_differs():
    torch.manual_seed(0)
    attn = MultiHeadSelfAttention(16, 2, max_seq_len=64, theta=10000.0)
    plain = MultiHeadSelfAttention(16, 2)
    plain.load_state_dict(attn.state_dict())
    x = torch.randn(2, 10, 16)
    assert not torch.allclose(plain(x), attn(x), atol=1e-3)  # the rotation does something
    torch.testing.assert_close(plain(x), plain(x, torch.arange(10) + 5))  # no RoPE: unused


def _torch_attention(attn, x, positions=None, theta=10000.0):
    """The same attention from torch's fused kernel (causal flag) and the complex RoPE."""
    return reference_attention(attn.state_dict(), "", x, attn.num_heads, positions, theta)


@pytest.mark.parametrize("kernels", ["reference", "fused", "auto"])
def test_attention_matches_torch_causal_attention(kernels):
    torch.manual_seed(0)
    attn = MultiHeadSelfAttention(16, 4, kernels=kernels)
    x = torch.randn(3, 7, 16, requires_grad=True)
    ours, theirs = attn(x), _torch_attention(attn, x)
    torch.testing.assert_close(ours, theirs)
    g = torch.randn_like(ours)
    torch.testing.assert_close(
        torch.autograd.grad(ours, x, g)[0], torch.autograd.grad(theirs, x, g)[0]
    )


@pytest.mark.parametrize("kernels", ["reference", "fused", "auto"])
@pytest.mark.parametrize(
    ("x_lead", "pos_shape"), [((3,), (3, 7)), ((2, 3), (2, 3, 7)), ((3,), (7,))]
)
def test_rope_attention_matches_torch_for_token_positions_of_any_shape(kernels, x_lead, pos_shape):
    torch.manual_seed(0)
    attn = MultiHeadSelfAttention(16, 4, max_seq_len=32, theta=10000.0, kernels=kernels)
    attn.double()
    x = torch.randn(*x_lead, 7, 16, dtype=torch.float64, requires_grad=True)
    positions = torch.randint(0, 32, pos_shape)
    ours, theirs = attn(x, positions), _torch_attention(attn, x, positions)
    torch.testing.assert_close(ours, theirs)
    g = torch.randn_like(ours)
    torch.testing.assert_close(
        torch.autograd.grad(ours, x, g)[0], torch.autograd.grad(theirs, x, g)[0]
    )
    if len(pos_shape) > 1:  # each batch element is rotated by its own positions
        first = attn(x[:1], positions[:1])
        torch.testing.assert_close(ours[:1], first)


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


def test_attention_parameters_and_argument_errors():
    attn = MultiHeadSelfAttention(16, 4, max_seq_len=8, theta=10000.0)
    assert sorted(attn.state_dict()) == [
        "k_proj.weight", "output_proj.weight", "q_proj.weight", "v_proj.weight",
    ]  # fmt: skip
    assert attn.rope is not None and attn.rope.d_k == 4
    assert MultiHeadSelfAttention(16, 4).rope is None
    with pytest.raises(ValueError, match="both max_seq_len and theta"):
        MultiHeadSelfAttention(16, 4, theta=10000.0)
    with pytest.raises(ValueError, match="either rope or max_seq_len"):
        rope = RotaryPositionalEmbedding(1e4, 4, 8)
        MultiHeadSelfAttention(16, 4, max_seq_len=8, theta=1e4, rope=rope)
    with pytest.raises(ValueError, match=r"attn_pdrop \(256\) must be in \[0, 1\)"):
        MultiHeadSelfAttention(16, 4, 256)
    assert math.isclose(MultiHeadSelfAttention(16, 4, 0.25).attn_pdrop, 0.25)


def test_the_2024_per_head_layout_loads_into_the_joined_projections():
    torch.manual_seed(0)
    source = MultiHeadSelfAttention(12, 3)
    per_head = {"output_proj.weight": source.output_proj.weight.detach().clone()}
    for name in ("q", "k", "v"):
        weight = getattr(source, f"{name}_proj").weight.detach()
        for i, rows in enumerate(weight.split(4)):  # d_k = 4 rows per head
            per_head[f"{name}_heads.{i}.weight"] = rows.clone()
    target = MultiHeadSelfAttention(12, 3)
    target.load_state_dict(per_head)
    x = torch.randn(2, 5, 12)
    assert torch.equal(target(x), source(x))
    assert set(per_head) >= {"q_heads.0.weight", "v_heads.2.weight"}, "the caller's dict is kept"
    # A missing head is the usual strict error.
    del per_head["k_heads.1.weight"]
    with pytest.raises(RuntimeError, match="k_proj.weight"):
        MultiHeadSelfAttention(12, 3).load_state_dict(per_head)


def test_the_per_head_layout_loads_under_a_prefix():
    torch.manual_seed(0)
    source = TransformerBlock(12, 3, 24)
    state = source.state_dict()
    for i, rows in enumerate(state.pop("attn.q_proj.weight").split(4)):
        state[f"attn.q_heads.{i}.weight"] = rows
    target = TransformerBlock(12, 3, 24)
    target.load_state_dict(state)
    x = torch.randn(2, 5, 12)
    assert torch.equal(target(x), source(x))
