"""Accounting formulas against instantiated models and torch's FLOP counter."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from cs336 import ModelConfig, TransformerLM
from cs336.accounting import (
    PEAK_FLOPS,
    PRESETS,
    adamw_step_flops,
    count_parameters,
    forward_flops,
    max_batch_size,
    mfu,
    peak_flops,
    train_flops_per_token,
    training_memory,
    with_edition,
)
from cs336.nn.config import MODEL_PRESETS

SMALL = ModelConfig(
    vocab_size=37, context_length=12, d_model=16, num_layers=3, num_heads=4, d_ff=24
)
VARIANTS = [
    {},
    {"tie_embeddings": True},
    {"norm": "none"},
    {"norm": "post"},
    {"position": "rope"},
    {"ffn": "swiglu"},
    {"parallel": True, "tie_embeddings": True, "ffn": "swiglu", "position": "rope"},
    {"position": "none"},
    {"ffn": "silu"},
    MODEL_PRESETS["cs336-2025"],
    {**MODEL_PRESETS["cs336-2025"], "position": "none", "ffn": "silu", "norm": "post"},
]


def _component(name: str) -> str:
    """Which count_parameters component a parameter name belongs to."""
    for key in ("token_embeddings", "position_embeddings", "lm_head"):
        if name.startswith(key):
            return key
    if ".attn." in name:
        return "attention"
    if ".ffn." in name:
        return "ffn"
    assert "ln" in name, name
    return "norms"


@pytest.mark.parametrize("kw", VARIANTS, ids=str)
def test_parameter_counts_equal_the_instantiated_model(kw):
    cfg = dataclasses.replace(SMALL, **kw)
    model = TransformerLM.from_config(cfg)
    by_component = dict.fromkeys(count_parameters(cfg), 0)
    for name, p in model.named_parameters():
        by_component[_component(name)] += p.numel()
    by_component["total"] = model.num_parameters()
    assert count_parameters(cfg) == by_component


@pytest.mark.parametrize("edition", [None, "2024", "2025", "2026"])
@pytest.mark.parametrize("name", sorted(PRESETS))
def test_gpt2_preset_counts_equal_a_meta_device_model(name, edition):
    cfg = PRESETS[name] if edition is None else with_edition(PRESETS[name], edition)
    with torch.device("meta"):
        model = TransformerLM.from_config(cfg)
    assert count_parameters(cfg)["total"] == model.num_parameters()


def test_the_2025_preset_count_equals_the_instantiated_model():
    """The preset as ModelConfig.preset builds it (d_ff from 8/3 d_model): the tool's
    count, the model's, and the handout's TinyStories numbers."""
    shape = dict(vocab_size=10000, context_length=256, d_model=512, num_layers=4, num_heads=16)
    cfg = ModelConfig.preset("cs336-2025", **shape)
    model = TransformerLM.from_config(cfg, device="meta")
    counts = count_parameters(cfg)
    assert counts["total"] == model.num_parameters() == 22_696_448
    assert counts["position_embeddings"] == 0 and counts["ffn"] == 4 * 3 * 512 * 1344
    non_embedding = counts["total"] - counts["token_embeddings"]
    assert non_embedding == model.num_parameters(exclude_embeddings=True) == 17_576_448
    assert with_edition(PRESETS["gpt2-small"], "2024") == PRESETS["gpt2-small"]
    with pytest.raises(ValueError, match="edition must be one of 2024, 2025, 2026, got '2023'"):
        with_edition(cfg, "2023")


def test_gpt2_xl_numbers():
    cfg = PRESETS["gpt2-xl"]
    assert (cfg.num_layers, cfg.d_model, cfg.num_heads, cfg.d_ff) == (48, 1600, 25, 6400)
    assert count_parameters(cfg)["total"] == 1_637_176_000
    flops = forward_flops(cfg)
    assert flops["attention_scores"] == 48 * 2 * 1024 * 1024 * 1600
    assert flops["total"] == 3_506_703_564_800
    assert max(flops, key=lambda k: flops[k] if k != "total" else 0) == "ffn"


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"ffn": "swiglu"},
        {"tie_embeddings": True, "norm": "none"},
        {"ffn": "silu", "position": "none"},
        MODEL_PRESETS["cs336-2025"],
    ],
)
@pytest.mark.parametrize("seq_len", [12, 5])
def test_forward_flops_equal_torch_flop_counter(kw, seq_len):
    # the handout's math (the fused attention's backward recomputes the scores: 5 matmuls)
    cfg = dataclasses.replace(SMALL, **kw, kernels="reference")
    model = TransformerLM.from_config(cfg)
    x = torch.randint(0, cfg.vocab_size, (1, seq_len))
    with FlopCounterMode(display=False) as counter:
        logits = model(x)
    assert counter.get_total_flops() == forward_flops(cfg, seq_len)["total"]
    with FlopCounterMode(display=False) as counter:
        logits = model(x)
        logits.sum().backward()
    # the backward pass of every matmul is two matmuls of the same size
    assert counter.get_total_flops() == 3 * forward_flops(cfg, seq_len)["total"]
    assert train_flops_per_token(cfg) == 3 * forward_flops(cfg)["total"] / cfg.context_length


def test_gpt2_xl_numbers_in_the_2025_architecture():
    """The 2025 accounting questions: GPT-2 XL's shape (d_ff 6,400) with a SwiGLU FFN of
    three matrices and no position embeddings."""
    cfg = with_edition(PRESETS["gpt2-xl"], "2025")
    assert (cfg.ffn, cfg.position, cfg.d_ff) == ("swiglu", "rope", 6400)
    counts = count_parameters(cfg)
    assert counts["total"] == 2_127_057_600
    assert counts["ffn"] == 48 * 3 * 1600 * 6400 and counts["position_embeddings"] == 0
    flops = forward_flops(cfg)
    assert flops["ffn"] == 48 * 3 * 2 * 1024 * 1600 * 6400
    assert flops["total"] == 3_506_703_564_800 + 48 * 2 * 1024 * 1600 * 6400
    per_layer = 2 * 1600 + 5 * 1600 + 2 * 25 * 1024 + 4 * 6400 + 1600
    a = 4 * 1024 * (48 * per_layer + 1600 + 2 * 50257)  # bytes per sequence
    one = training_memory(cfg, 1)
    assert one["activations"] == a and one["total"] - a == 16 * 2_127_057_600
    assert adamw_step_flops(cfg) == 14 * 2_127_057_600


def test_forward_flops_validates_seq_len():
    with pytest.raises(ValueError, match=r"seq_len \(13\) must be in \[1, context_length \(12\)\]"):
        forward_flops(SMALL, 13)


def test_training_memory_by_part():
    cfg, b = SMALL, 3
    p = count_parameters(cfg)["total"]
    mem = training_memory(cfg, b)
    assert (mem["params"], mem["grads"], mem["adamw_state"]) == (4 * p, 4 * p, 8 * p)
    d, t, h, f, v = 16, 12, 4, 24, 37
    per_layer = 2 * d + 3 * d + 2 * h * t + d + d + 2 * f + d
    assert mem["activations"] == 4 * b * t * (3 * per_layer + d + 2 * v)
    assert mem["total"] == sum(v for k, v in mem.items() if k != "total")
    half = training_memory(cfg, b, param_bytes=2, activation_bytes=2)
    assert half["params"] == 2 * p and half["activations"] == mem["activations"] // 2
    with pytest.raises(ValueError, match="batch_size must be positive, got 0"):
        training_memory(cfg, 0)


def test_max_batch_size_is_the_largest_that_fits():
    cfg = PRESETS["gpt2-xl"]
    n = max_batch_size(cfg, 80e9)
    assert training_memory(cfg, n)["total"] <= 80e9 < training_memory(cfg, n + 1)["total"]
    assert max_batch_size(cfg, 1e9) == 0


def test_adamw_flops_and_mfu():
    cfg = PRESETS["gpt2-small"]
    assert adamw_step_flops(cfg) == 14 * count_parameters(cfg)["total"]
    tps = 1e12 / train_flops_per_token(cfg)  # exactly 1 PFLOP/s of training
    assert mfu(tps, cfg, peak_flops=2e12) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="peak_flops must be positive"):
        mfu(1.0, cfg, 0.0)


def test_gpt2_xl_numbers_in_the_2026_architecture():
    """The 2026 handout's questions (transformer_accounting, adamw_accounting) on its
    modernised GPT-2 XL, each written out as the handout's closed-form formula in V, T, L,
    d, H and d_ff: SwiGLU with three matrices, d_ff = 8/3 d_model rounded to a multiple of
    64, no position embeddings, and the MFU question's H100 at 495 TFLOP/s (TF32)."""
    cfg = with_edition(PRESETS["gpt2-xl"], "2026")
    v, t, n_layers, d, h, f = 50257, 1024, 48, 1600, 25, 4288
    assert (cfg.vocab_size, cfg.context_length, cfg.num_layers) == (v, t, n_layers)
    assert (cfg.d_model, cfg.num_heads, cfg.d_ff) == (d, h, f)
    assert f % 64 == 0 and abs(f - 8 * d / 3) < 32  # the multiple of 64 nearest 8/3 d
    assert (cfg.ffn, cfg.position, cfg.tie_embeddings, cfg.norm) == ("swiglu", "rope", False, "pre")

    # (a) parameters: embeddings and head, per layer q/k/v/o + w1/w2/w3 + two RMSNorm gains,
    # and the final RMSNorm
    params = 2 * v * d + n_layers * (4 * d * d + 3 * d * f + 2 * d) + d
    assert count_parameters(cfg)["total"] == params == 1_640_452_800
    assert count_parameters(cfg)["position_embeddings"] == 0

    # (b) forward FLOPs: per layer 3 projections 2Td^2 each, Q K^T and weights @ V 2T^2d
    # each, the output projection 2Td^2, three FFN matmuls 2Td d_ff each; the head 2TdV
    def forward(t: int) -> int:
        return n_layers * (8 * t * d * d + 4 * t * t * d + 6 * t * d * f) + 2 * t * d * v

    flops = forward_flops(cfg)
    assert flops["total"] == forward(t) == 3_516_769_894_400
    assert flops["ffn"] == n_layers * 6 * t * d * f and flops["lm_head"] == 2 * t * d * v
    # (c) the FFN costs most: 57.5%
    assert max((k for k in flops if k != "total"), key=flops.__getitem__) == "ffn"
    assert round(100 * flops["ffn"] / flops["total"], 1) == 57.5
    # (e) context 16,384: the attention matmuls T^2 take over
    long = dataclasses.replace(cfg, context_length=16384)
    long_flops = forward_flops(long)
    assert long_flops["total"] == forward(16384)
    attention = long_flops["attention_scores"] + long_flops["attention_values"]
    assert attention > long_flops["total"] / 2

    # adamw_accounting (a), (b): 16 bytes of params, grads and moments per parameter, and
    # float32 activations per token: per layer RMSNorms 2d, QKV 3d, scores and softmax
    # 2HT, weighted values d, output projection d, SwiGLU W1, W3, SiLU, product 4 d_ff
    # and W2 d; then the final RMSNorm d, the logits and their softmax 2V
    per_token = n_layers * (8 * d + 2 * h * t + 4 * f) + d + 2 * v
    one = training_memory(cfg, 1)
    assert one["activations"] == 4 * t * per_token == 16_373_391_360
    assert one["total"] - one["activations"] == 16 * params
    assert max_batch_size(cfg, 80e9) == 3  # (80e9 - 26.25e9) / 16.37e9 = 3.28
    # (c) one AdamW step: 14 FLOPs per parameter
    assert adamw_step_flops(cfg) == 14 * params
    # (d) 400K steps of 1024 sequences, the backward twice the forward, at 50% MFU of an
    # H100's 495 TFLOP/s: 1.746e7 s, 4,850 hours, 202 days
    seconds = 400_000 * 1024 * 3 * forward(t) / (0.5 * 495e12)
    assert 400_000 * 1024 * t * train_flops_per_token(cfg) / (0.5 * 495e12) == seconds
    assert round(seconds / 3600) == 4850


def test_peak_flops_table():
    """Dense datasheet figures by precision; longer names match before their substrings."""
    assert peak_flops("NVIDIA B200") == 2.25e15 and peak_flops("NVIDIA B200", "tf32") == 1.125e15
    assert peak_flops("NVIDIA GB200") == 2.5e15  # not the B200's
    assert peak_flops("NVIDIA H100 80GB HBM3", "tf32") == 495e12  # the 2026 handout's H100
    assert peak_flops("NVIDIA H100 80GB HBM3") == 989e12
    assert peak_flops("NVIDIA L40S") == 362e12 and peak_flops("NVIDIA L4") == 121e12
    assert peak_flops("NVIDIA A100-SXM4-80GB", "tf32") == 156e12
    assert peak_flops("Intel Arc") is None and peak_flops("", "tf32") is None
    for name, peaks in PEAK_FLOPS.items():
        assert peak_flops(f"NVIDIA {name}") == peaks["bf16"]  # every row is reachable
        assert peaks["tf32"] < peaks["bf16"] <= 2.5e15
    with pytest.raises(ValueError, match="precision must be one of bf16, tf32, got 'fp8'"):
        peak_flops("NVIDIA B200", "fp8")


def test_docstring_examples():
    import doctest

    import cs336.accounting.costs

    result = doctest.testmod(cs336.accounting.costs)
    assert result.attempted >= 6 and result.failed == 0
