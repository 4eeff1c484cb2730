"""The 2025 handout's model, the ``cs336-2025`` preset: its state-dict layout (built by name,
loaded with strict=True, equal to a hand-written model), defaults, init, NoPE, training."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from reference_2025 import check_truncated_normal, state_dict_2025, transformer_lm

from cs336 import AdamW, ModelConfig, TransformerLM
from cs336.nn.config import MODEL_PRESETS

SHAPE = dict(vocab_size=50, context_length=16, d_model=32, num_layers=2, num_heads=4)
TINYSTORIES = dict(vocab_size=10000, context_length=256, d_model=512, num_layers=4, num_heads=16)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_a_2025_layout_state_dict_loads_strictly_and_is_the_handouts_model():
    sd = state_dict_2025(vocab_size=50, d_model=32, num_layers=2, d_ff=64)
    model = TransformerLM.from_preset("cs336-2025", **SHAPE, d_ff=64, rope_theta=10000.0)
    assert set(model.state_dict()) == set(sd)
    model.load_state_dict(sd, strict=True)
    ids = torch.randint(0, 50, (3, 16))
    expected = transformer_lm(sd, ids, num_layers=2, num_heads=4, theta=10000.0)
    torch.testing.assert_close(model(ids), expected, atol=1e-4, rtol=1e-4)
    targets = torch.randint(0, 50, (3, 16))
    loss = F.cross_entropy(expected.flatten(0, 1), targets.flatten())
    torch.testing.assert_close(model(ids, targets=targets), loss, atol=1e-5, rtol=1e-5)
    # a shorter input than the context (the handout's truncated-input test)
    torch.testing.assert_close(model(ids[:, :5]), expected[:, :5], atol=1e-4, rtol=1e-4)


def test_a_2024_layout_state_dict_built_by_name_still_loads_into_the_default_model():
    model = TransformerLM(50, 16, 32, 2, 4, 48)
    names = ["token_embeddings", "position_embeddings", "ln_final", "lm_head"] + [
        f"layers.{i}.{part}"
        for i in range(2)
        for part in ("ln1", "attn.q_proj", "attn.k_proj", "attn.v_proj", "attn.output_proj")
        + ("ln2", "ffn.w1", "ffn.w2")
    ]
    shapes = {n: p.shape for n, p in model.named_parameters()}
    sd = {f"{n}.weight": torch.randn(shapes[f"{n}.weight"]) for n in names}
    model.load_state_dict(sd, strict=True)
    assert torch.equal(model.lm_head.weight, sd["lm_head.weight"])


def test_the_preset_is_the_2025_handouts_tinystories_model():
    cfg = ModelConfig.preset("cs336-2025", **TINYSTORIES, rope_theta=10000.0)
    assert (cfg.d_ff, cfg.ffn, cfg.position, cfg.norm, cfg.init) == (
        1344, "swiglu", "rope", "pre", "xavier",
    )  # fmt: skip
    assert (cfg.attn_pdrop, cfg.residual_pdrop, cfg.tie_embeddings, cfg.rope_theta) == (
        0.0, 0.0, False, 10000.0,
    )  # fmt: skip
    assert ModelConfig.preset("cs336-2025", **TINYSTORIES, d_ff=2048).d_ff == 2048
    silu = ModelConfig.preset("cs336-2025", **TINYSTORIES, ffn="silu")
    assert silu.d_ff == 2048 and silu.position == "rope"  # the ablation's 4 d_model
    assert ModelConfig.preset("cs336-2024", **TINYSTORIES, d_ff=2048) == ModelConfig(
        **TINYSTORIES, d_ff=2048
    )
    with torch.device("meta"):
        model = TransformerLM.from_config(cfg)
    assert model.num_parameters(exclude_embeddings=True) == 17_576_448  # "about 17M"
    assert model.num_parameters() == 22_696_448


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: ModelConfig.preset("llama", **TINYSTORIES), "preset must be one of 'cs336-2024'"),
        (lambda: ModelConfig.preset("cs336-2025", d_model=64), "missing model config keys"),
        (lambda: ModelConfig.preset("cs336-2025", **TINYSTORIES, ffn="glu"), "ffn must be"),
        # the 2025 handout's positional order lands rope_theta on attn_pdrop: say so
        (lambda: TransformerLM(50, 16, 32, 2, 4, 64, 10000.0), r"attn_pdrop.*rope_theta=\.\.\."),
    ],
)
def test_preset_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_the_2025_init_is_the_handouts():
    """Linear: N(0, 2/(in+out)), Embedding: N(0, 1), both truncated at 3 std; gains 1."""
    torch.manual_seed(0)
    model = TransformerLM.from_preset(
        "cs336-2025", vocab_size=1000, context_length=16, d_model=256, num_layers=2, num_heads=4
    )
    for name, p in model.named_parameters():
        if p.ndim == 1:
            assert torch.equal(p, torch.ones_like(p)), name
        elif name.endswith("embeddings.weight"):
            check_truncated_normal(p, 1.0, name)
        else:
            d_out, d_in = p.shape
            check_truncated_normal(p, math.sqrt(2 / (d_in + d_out)), name)
    before = model.lm_head.weight.clone()
    model.init_weights()  # draws again, from the same distributions
    assert not torch.equal(before, model.lm_head.weight)
    check_truncated_normal(model.lm_head.weight, math.sqrt(2 / 1256), "lm_head again")
    tied = TransformerLM.from_preset(
        "cs336-2025", vocab_size=1000, context_length=16, d_model=256, num_layers=1,
        num_heads=4, tie_embeddings=True,
    )  # fmt: skip
    assert tied.lm_head.weight is tied.token_embeddings.weight
    check_truncated_normal(tied.token_embeddings.weight, 1.0, "tied")  # the embedding's init


def test_the_2024_model_keeps_its_gpt2_init():
    torch.manual_seed(0)
    model = TransformerLM(1000, 16, 256, 2, 4, 512)
    check_truncated_normal(model.token_embeddings.weight, 0.02, "token_embeddings")
    check_truncated_normal(model.layers[0].attn.output_proj.weight, 0.01, "output_proj")


def test_nope_has_no_position_information():
    """With no positions, a one-layer model's last prediction sees its prefix as a set:
    permuting the earlier tokens changes nothing. RoPE and learned positions do see it."""
    torch.manual_seed(0)
    ids = torch.randint(0, 50, (1, 12))
    perm = torch.cat([torch.randperm(11), torch.tensor([11])])
    for position in ("none", "rope", "learned"):
        model = TransformerLM.from_preset(
            "cs336-2025", **{**SHAPE, "num_layers": 1}, position=position
        )
        last, permuted = model(ids)[0, -1], model(ids[:, perm])[0, -1]
        if position == "none":
            torch.testing.assert_close(permuted, last, atol=1e-5, rtol=1e-5)
        else:
            assert not torch.allclose(permuted, last, atol=1e-3), position


@pytest.mark.parametrize("change", [{}, {"ffn": "silu"}, {"position": "none"}])
def test_a_tiny_preset_model_overfits_one_batch(change):
    torch.manual_seed(0)
    model = TransformerLM.from_preset("cs336-2025", **SHAPE, **change)
    x = torch.randint(0, 50, (4, 17))
    opt = AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    losses = []
    for _ in range(80):
        loss = model(x[:, :-1], targets=x[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[0] > 3.0  # about log(50) and more: N(0, 1) embeddings
    assert losses[-1] < 0.1, losses[-10:]


def test_device_and_dtype_reach_every_parameter_and_the_cache():
    model = TransformerLM.from_preset("cs336-2025", **SHAPE, device="meta", dtype=torch.bfloat16)
    assert {(p.device.type, p.dtype) for p in model.parameters()} == {("meta", torch.bfloat16)}
    assert model.layers[0].attn.rope.cos.device.type == "meta"
    cache = model.init_kv_cache(2)
    assert cache.layers[0].k.dtype == torch.bfloat16
    assert MODEL_PRESETS["cs336-2025"]["position"] == "rope"
