"""Layers: Linear, Embedding, RMSNorm and the feed-forwards against PyTorch's own, on random
shapes with extra batch dims, forward and backward; their inits; device and dtype."""

from __future__ import annotations

import ast
import inspect
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from reference_2025 import check_truncated_normal

from cs336 import Embedding, FeedForward, Linear, RMSNorm, SwiGLU, TransformerLM
from cs336.nn import layers
from cs336.nn.config import default_d_ff

# 0 to 3 leading batch dims
leads = st.lists(st.integers(1, 4), max_size=3).map(tuple)
seeds = st.integers(0, 2**31 - 1)


def _same_values_and_grads(ours, theirs, inputs):
    torch.testing.assert_close(ours, theirs)
    g = torch.randn_like(ours)
    for a, b in zip(
        torch.autograd.grad(ours, inputs, g), torch.autograd.grad(theirs, inputs, g), strict=True
    ):
        torch.testing.assert_close(a, b)


@given(leads, st.integers(1, 9), st.integers(1, 9), seeds)
def test_linear_matches_f_linear(lead, d_in, d_out, seed):
    torch.manual_seed(seed)
    lin = Linear(d_in, d_out, dtype=torch.float64)
    x = torch.randn(*lead, d_in, dtype=torch.float64, requires_grad=True)
    assert lin.weight.shape == (d_out, d_in)
    _same_values_and_grads(lin(x), F.linear(x, lin.weight), (x, lin.weight))


@given(st.lists(st.integers(1, 4), max_size=3).map(tuple), st.integers(1, 20), st.integers(1, 8))
def test_embedding_matches_f_embedding(shape, vocab, dim):
    torch.manual_seed(vocab * 31 + dim)
    emb = Embedding(vocab, dim, dtype=torch.float64)
    ids = torch.randint(0, vocab, shape)
    assert emb.weight.shape == (vocab, dim)
    ours, theirs = emb(ids), F.embedding(ids, emb.weight)
    assert ours.shape == (*shape, dim)
    _same_values_and_grads(ours, theirs, (emb.weight,))  # repeated ids accumulate


@given(leads, st.integers(1, 16), seeds)
def test_rmsnorm_matches_torch_rmsnorm(lead, d, seed):
    torch.manual_seed(seed)
    ours_mod = RMSNorm(d)
    theirs_mod = torch.nn.RMSNorm(d, eps=1e-5)
    with torch.no_grad():
        ours_mod.weight.normal_()
        theirs_mod.weight.copy_(ours_mod.weight)
    x = torch.randn(*lead, d, requires_grad=True)
    ours, theirs = ours_mod(x), theirs_mod(x)
    torch.testing.assert_close(ours, theirs)
    g = torch.randn_like(ours)
    g_ours = torch.autograd.grad(ours, (x, ours_mod.weight), g)
    g_theirs = torch.autograd.grad(theirs, (x, theirs_mod.weight), g)
    for a, b in zip(g_ours, g_theirs, strict=True):
        torch.testing.assert_close(a, b)


def test_rmsnorm_computes_in_float32_and_returns_the_input_dtype():
    norm = RMSNorm(64)
    x = (torch.randn(4, 64) * 300).bfloat16()  # squares overflow nothing in fp32
    out = norm(x)
    assert out.dtype == torch.bfloat16
    expected = x.float() / x.float().pow(2).mean(-1, keepdim=True).add(1e-5).sqrt()
    torch.testing.assert_close(out, expected.bfloat16())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert norm(torch.randn(2, 64)).dtype == torch.float32
    # 300^2 = 90,000 overflows float16 (max 65,504): only an upcast squares it correctly
    big = torch.full((2, 64), 300.0, dtype=torch.float16)
    out = norm(big)
    assert out.dtype == torch.float16
    torch.testing.assert_close(out, torch.ones_like(big), atol=1e-3, rtol=1e-3)
    eps = RMSNorm(4, eps=0.5)
    x = torch.full((1, 4), 0.5)  # mean square 0.25: 0.5 / sqrt(0.25 + 0.5)
    torch.testing.assert_close(eps(x), torch.full((1, 4), 0.5 / math.sqrt(0.75)))


@given(leads, st.integers(1, 8), st.integers(1, 12), seeds)
def test_feedforwards_match_their_formulas_in_torch(lead, d, d_ff, seed):
    torch.manual_seed(seed)
    x = torch.randn(*lead, d, dtype=torch.float64, requires_grad=True)
    kw = {"dtype": torch.float64}
    gelu_ffn = FeedForward(d, d_ff, **kw)
    w1, w2 = gelu_ffn.w1.weight, gelu_ffn.w2.weight
    _same_values_and_grads(
        gelu_ffn(x), F.linear(F.gelu(F.linear(x, w1)), w2), (x, w1, w2)
    )  # the 2024 FFN: w2 gelu(w1 x)
    silu_ffn = FeedForward(d, d_ff, activation="silu", **kw)
    w1, w2 = silu_ffn.w1.weight, silu_ffn.w2.weight
    _same_values_and_grads(silu_ffn(x), F.linear(F.silu(F.linear(x, w1)), w2), (x, w1, w2))
    glu = SwiGLU(d, d_ff, **kw)
    w1, w2, w3 = glu.w1.weight, glu.w2.weight, glu.w3.weight
    gated = F.silu(F.linear(x, w1)) * F.linear(x, w3)
    _same_values_and_grads(glu(x), F.linear(gated, w2), (x, w1, w2, w3))


def test_feedforward_parameter_names_and_shapes():
    shapes = {n: tuple(p.shape) for n, p in SwiGLU(8, 24).named_parameters()}
    assert shapes == {"w1.weight": (24, 8), "w2.weight": (8, 24), "w3.weight": (24, 8)}
    for ffn in (FeedForward(8, 20), FeedForward(8, 20, activation="silu")):
        assert [n for n, _ in ffn.named_parameters()] == ["w1.weight", "w2.weight"]
    assert [n for n, _ in Linear(3, 2).named_parameters()] == ["weight"]  # no bias
    with pytest.raises(ValueError, match="activation must be 'gelu' or 'silu', got 'relu'"):
        FeedForward(8, 20, activation="relu")


@pytest.mark.parametrize(
    ("d_model", "d_ff"), [(512, 1344), (768, 2048), (1024, 2752), (1600, 4288), (64, 192)]
)
def test_swiglu_d_ff_defaults_to_eight_thirds_rounded_to_64(d_model, d_ff):
    assert d_ff % 64 == 0 and abs(d_ff - 8 * d_model / 3) <= 32
    assert default_d_ff(d_model, "swiglu") == d_ff
    assert SwiGLU(d_model).w1.weight.shape == (d_ff, d_model)
    assert default_d_ff(d_model, "silu") == default_d_ff(d_model, "gelu") == 4 * d_model
    assert default_d_ff(8, "swiglu") == 64  # never below one multiple


@pytest.mark.parametrize(("d_in", "d_out"), [(512, 256), (96, 1024)])
def test_linear_init_is_the_2025_truncated_normal(d_in, d_out):
    torch.manual_seed(0)
    check_truncated_normal(Linear(d_in, d_out).weight, math.sqrt(2 / (d_in + d_out)), "linear")


def test_embedding_init_is_a_standard_normal_truncated_at_3():
    torch.manual_seed(0)
    check_truncated_normal(Embedding(1000, 256).weight, 1.0, "embedding")
    assert torch.equal(RMSNorm(7).weight, torch.ones(7))


def test_device_and_dtype_are_those_asked_for():
    for module in (
        Linear(4, 3, device="meta", dtype=torch.bfloat16),
        Embedding(5, 3, "meta", torch.bfloat16),
        RMSNorm(3, 1e-5, "meta", torch.bfloat16),
        SwiGLU(4, 8, device="meta", dtype=torch.bfloat16),
        FeedForward(4, 8, activation="silu", device="meta", dtype=torch.bfloat16),
    ):
        for p in module.parameters():
            assert (p.device.type, p.dtype) == ("meta", torch.bfloat16), module
    lin = Linear(3, 2, dtype=torch.float64)
    assert lin(torch.ones(3, dtype=torch.float64)).dtype == torch.float64


def test_under_bf16_autocast_linear_runs_in_bf16_like_f_linear():
    lin = Linear(8, 4)
    x = torch.randn(2, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours, theirs = lin(x), F.linear(x, lin.weight)
    assert ours.dtype == theirs.dtype == torch.bfloat16
    torch.testing.assert_close(ours, theirs)


def _names_used(module) -> set[str]:
    """Every dotted name (``nn.Linear``, ``F.linear``, ...) the module's source mentions."""
    tree = ast.parse(inspect.getsource(module))
    return {
        ast.unparse(node)
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
    }


def test_the_reference_layers_use_no_torch_nn_layers_or_functional():
    """The 2025 handout's rule for the reference path: no nn.Linear / nn.Embedding /
    torch.nn.functional (nn.Parameter, nn.Module and nn.init are allowed)."""
    used = _names_used(layers)
    banned = {n for n in used if n.startswith(("F.", "functional.")) or n == "torch.nn"}
    banned |= {n for n in used if n.startswith("nn.") and n.split(".")[1] in dir(torch.nn)}
    banned -= {"nn.Module", "nn.Parameter", "nn.init"}
    assert not banned, banned
    model = TransformerLM(50, 8, 16, 2, 2, 32, position="rope", ffn="swiglu")
    builtin = (torch.nn.Linear, torch.nn.Embedding, torch.nn.RMSNorm, torch.nn.LayerNorm)
    assert not [m for m in model.modules() if isinstance(m, builtin)]
