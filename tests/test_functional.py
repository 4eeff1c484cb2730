"""cs336.nn.functional against PyTorch's own implementations, forward and backward."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from cs336 import cross_entropy, gelu, perplexity, scaled_dot_product_attention, silu, softmax
from cs336.nn.functional import dropout

# leading batch dims (0 to 2 of them) and a last dim
shapes = st.lists(st.integers(1, 5), min_size=1, max_size=3).map(tuple)


def _rand(shape, seed, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g, dtype=torch.float64) * scale).requires_grad_()


def _check_same(ours_fn, torch_fn, *inputs):
    """Same values and same input gradients for a random upstream gradient."""
    ours, theirs = ours_fn(*inputs), torch_fn(*inputs)
    torch.testing.assert_close(ours, theirs)
    upstream = torch.randn_like(ours)
    g_ours = torch.autograd.grad(ours, inputs, upstream)
    g_theirs = torch.autograd.grad(theirs, inputs, upstream)
    for a, b in zip(g_ours, g_theirs, strict=True):
        torch.testing.assert_close(a, b)


@given(shapes, st.integers(0, 2**31 - 1), st.data())
def test_softmax_matches_torch(shape, seed, data):
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    x = _rand(shape, seed)
    _check_same(lambda t: softmax(t, dim), lambda t: F.softmax(t, dim), x)


def test_softmax_is_stable_for_huge_logits():
    x = torch.tensor([[1e4, -1e4, 0.0], [1e4, 1e4, -1e4], [-1e4, -1e4, -1e4]])
    out = softmax(x, dim=-1)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, F.softmax(x, dim=-1))
    torch.testing.assert_close(out[1], torch.tensor([0.5, 0.5, 0.0]))


def test_softmax_of_all_minus_inf_is_zero_not_nan():
    x = torch.full((2, 3), float("-inf"), requires_grad=True)
    out = softmax(x, dim=-1)
    assert torch.equal(out, torch.zeros(2, 3))
    out.sum().backward()
    assert not torch.isnan(x.grad).any()


@given(shapes, st.integers(0, 2**31 - 1))
def test_gelu_and_silu_match_torch(shape, seed):
    x = _rand(shape, seed)
    _check_same(gelu, F.gelu, x)
    _check_same(silu, F.silu, x)


@st.composite
def attention_inputs(draw):
    lead = tuple(draw(st.lists(st.integers(1, 3), max_size=2)))
    t_q, t_k = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    d_k, d_v = draw(st.integers(1, 8)), draw(st.integers(1, 8))
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    q = torch.randn((*lead, t_q, d_k), generator=g, dtype=torch.float64, requires_grad=True)
    k = torch.randn((*lead, t_k, d_k), generator=g, dtype=torch.float64, requires_grad=True)
    v = torch.randn((*lead, t_k, d_v), generator=g, dtype=torch.float64, requires_grad=True)
    mask = None
    if draw(st.booleans()):
        mask = torch.rand((*lead, t_q, t_k), generator=g) < 0.7
        mask[..., 0] = True  # every query may see something (fully masked rows: below)
    return q, k, v, mask


@given(attention_inputs())
def test_attention_matches_torch(inputs):
    q, k, v, mask = inputs
    _check_same(
        lambda q, k, v: scaled_dot_product_attention(q, k, v, mask),
        lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=mask),
        q,
        k,
        v,
    )


def test_attention_masked_positions_get_exactly_zero_probability():
    # With v = identity, the output rows are the attention probabilities.
    t = 5
    q = torch.randn(2, t, 4) * 100
    k = torch.randn(2, t, 4) * 100
    v = torch.eye(t).expand(2, t, t)
    causal = torch.ones(t, t, dtype=torch.bool).tril()
    probs = scaled_dot_product_attention(q, k, v, causal)
    assert torch.all(probs[:, ~causal] == 0)
    torch.testing.assert_close(probs.sum(-1), torch.ones(2, t))


def test_attention_fully_masked_row_outputs_zero():
    q, k, v = torch.randn(3, 4), torch.randn(5, 4), torch.randn(5, 2)
    mask = torch.ones(3, 5, dtype=torch.bool)
    mask[1] = False
    out = scaled_dot_product_attention(q, k, v, mask)
    assert torch.equal(out[1], torch.zeros(2))
    assert torch.isfinite(out).all()


def test_attention_rejects_a_non_boolean_mask():
    q = torch.randn(2, 4)
    with pytest.raises(ValueError, match="boolean"):
        scaled_dot_product_attention(q, q, q, torch.ones(2, 2))


def test_attention_dropout_zeroes_some_probabilities_and_rescales():
    torch.manual_seed(0)
    t = 64
    q = torch.zeros(1, t, 8)  # uniform attention
    v = torch.eye(t).unsqueeze(0)  # output rows = probabilities
    probs = scaled_dot_product_attention(q, q, v, dropout_p=0.5)
    kept = probs != 0
    assert 0.3 < kept.float().mean() < 0.7
    torch.testing.assert_close(probs[kept], torch.full_like(probs[kept], 2.0 / t))


def test_dropout_p_zero_is_the_identity_and_validates_p():
    x = torch.randn(10)
    assert dropout(x, 0.0) is x
    assert dropout(x, 0.9, training=False) is x
    with pytest.raises(ValueError, match="1.0"):
        dropout(x, 1.0)


@given(shapes, st.integers(2, 50), st.integers(0, 2**31 - 1))
def test_cross_entropy_matches_torch(lead, vocab, seed):
    logits = _rand((*lead, vocab), seed)
    targets = torch.randint(0, vocab, lead, generator=torch.Generator().manual_seed(seed))
    ours = cross_entropy(logits, targets)
    theirs = F.cross_entropy(logits.reshape(-1, vocab), targets.reshape(-1))
    assert ours.dtype == torch.float64  # float64 in, float64 math: float64 tolerances hold
    torch.testing.assert_close(ours, theirs)
    (g_ours,) = torch.autograd.grad(ours, logits)
    (g_theirs,) = torch.autograd.grad(theirs, logits)
    torch.testing.assert_close(g_ours, g_theirs)


def test_cross_entropy_is_stable_for_huge_logits():
    logits = torch.tensor([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4]], requires_grad=True)
    targets = torch.tensor([0, 0])
    loss = cross_entropy(logits, targets)
    # row 0: log(1 + ~0) = 0; row 1: logsumexp = 1e4 + log 2, target -1e4
    torch.testing.assert_close(loss, torch.tensor((0.0 + 2e4 + math.log(2)) / 2))
    loss.backward()
    assert torch.isfinite(logits.grad).all()


def test_cross_entropy_of_bf16_logits_is_float32():
    logits = torch.randn(4, 7).bfloat16()
    targets = torch.arange(4)
    loss = cross_entropy(logits, targets)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, F.cross_entropy(logits.float(), targets))


def test_cross_entropy_validates_shapes_and_dtype():
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        cross_entropy(torch.zeros(2, 3, 5), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="integer"):
        cross_entropy(torch.zeros(2, 5), torch.zeros(2))


def test_perplexity_of_uniform_logits_is_the_vocabulary_size():
    logits = torch.zeros(3, 4, 11)
    targets = torch.randint(0, 11, (3, 4))
    torch.testing.assert_close(perplexity(logits, targets), torch.tensor(11.0))
