"""TransformerBlock: every norm placement's formula, parameter names, the 2025 handout's
block (RoPE + SwiGLU) against a hand-written one, bad options, dropout."""

from __future__ import annotations

import pytest
import torch
from reference_2025 import block as reference_block

from cs336 import FeedForward, SwiGLU, TransformerBlock


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
        ({"kernels": "flash"}, "kernels must be"),
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


def test_block_ffn_variants():
    assert isinstance(_block(ffn="swiglu").ffn, SwiGLU)
    silu = _block(ffn="silu").ffn
    assert isinstance(silu, FeedForward) and silu.activation == "silu"
    assert _block().ffn.activation == "gelu"


def test_the_2025_block_is_the_handouts():
    """z = x + MHSA(RMSNorm(x)) with RoPE on q and k, y = z + SwiGLU(RMSNorm(z))."""
    torch.manual_seed(0)
    block = TransformerBlock(16, 4, 40, max_seq_len=32, theta=10000.0, ffn="swiglu")
    names = sorted(block.state_dict())
    assert names == sorted(
        ["ln1.weight", "ln2.weight", "ffn.w1.weight", "ffn.w2.weight", "ffn.w3.weight"]
        + [f"attn.{p}_proj.weight" for p in ("q", "k", "v", "output")]
    )
    with torch.no_grad():
        block.ln1.weight.uniform_(0.5, 1.5)
        block.ln2.weight.uniform_(0.5, 1.5)
    x = torch.randn(3, 9, 16)
    torch.testing.assert_close(
        block(x), reference_block(block.state_dict(), "", x, 4, torch.arange(9), 1e4)
    )
    # not a shift of 0..8 (RoPE attention is blind to shifts): any order, repeats allowed
    positions = torch.tensor([3, 0, 7, 7, 1, 12, 5, 2, 9])
    torch.testing.assert_close(
        block(x, positions), reference_block(block.state_dict(), "", x, 4, positions, 1e4)
    )


def test_a_2025_style_positional_call_is_rejected_with_the_keyword_form():
    """TransformerBlock(d_model, num_heads, d_ff, max_seq_len, theta) is the 2025
    handout's order; here the 4th and 5th arguments are the 2024 dropouts."""
    with pytest.raises(ValueError, match=r"attn_pdrop \(64\).*max_seq_len=\.\.\., theta=\.\.\."):
        TransformerBlock(16, 4, 32, 64, 10000.0)
    with pytest.raises(ValueError, match=r"residual_pdrop \(10000.0\)"):
        TransformerBlock(16, 4, 32, 0.1, 10000.0)
