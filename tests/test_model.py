"""TransformerLM and ModelConfig: names, validation, variants, KV cache, init, training;
the 2025 preset (its layout, its init, its state dicts) in tests/test_model_2025.py."""

from __future__ import annotations

import json

import pytest
import torch

from cs336 import AdamW, ModelConfig, TransformerLM, cross_entropy
from cs336.nn.config import MODEL_PRESETS
from cs336.nn.model import KVCache

SMALL = dict(vocab_size=50, context_length=16, d_model=32, num_layers=2, num_heads=4, d_ff=48)
PRESET_2025 = MODEL_PRESETS["cs336-2025"]
VARIANTS = [
    {},
    {"tie_embeddings": True},
    {"norm": "post"},
    {"norm": "none"},
    {"parallel": True},
    {"position": "rope"},
    {"position": "none"},
    {"ffn": "swiglu"},
    {"ffn": "silu"},
    {"kernels": "fused"},
    {"init": "xavier"},
    {"position": "rope", "ffn": "swiglu", "kernels": "fused", "tie_embeddings": True},
    PRESET_2025,
    {**PRESET_2025, "position": "none"},  # the 2025 NoPE ablation
    {**PRESET_2025, "ffn": "silu"},  # the 2025 SiLU ablation
    {**PRESET_2025, "norm": "post"},
    {**PRESET_2025, "norm": "none", "kernels": "fused"},
]


def _id(kw: dict) -> str:
    return "2025" if kw == PRESET_2025 else ",".join(f"{k}={v}" for k, v in kw.items())


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _model(**kw) -> TransformerLM:
    torch.manual_seed(0)
    return TransformerLM(**{**SMALL, **kw})


def test_parameter_names_follow_the_course_layout():
    names = list(dict(_model(num_layers=1).named_parameters()))
    assert names == [
        "token_embeddings.weight",
        "position_embeddings.weight",
        "layers.0.ln1.weight",
        "layers.0.attn.q_proj.weight",
        "layers.0.attn.k_proj.weight",
        "layers.0.attn.v_proj.weight",
        "layers.0.attn.output_proj.weight",
        "layers.0.ln2.weight",
        "layers.0.ffn.w1.weight",
        "layers.0.ffn.w2.weight",
        "ln_final.weight",
        "lm_head.weight",
    ]
    shapes = {n: tuple(p.shape) for n, p in _model().named_parameters()}
    assert shapes["token_embeddings.weight"] == (50, 32)
    assert shapes["position_embeddings.weight"] == (16, 32)
    assert shapes["layers.1.ffn.w1.weight"] == (48, 32)
    assert shapes["lm_head.weight"] == (50, 32)


def test_state_dict_has_no_buffers_and_loads_into_a_fresh_model():
    for kw in VARIANTS:
        a, b = _model(**kw), TransformerLM(**{**SMALL, **kw})
        keys = set(a.state_dict())
        assert all(k.endswith(".weight") for k in keys), keys
        b.load_state_dict(a.state_dict())
        x = torch.randint(0, 50, (2, 9))
        torch.testing.assert_close(a(x), b(x))


def test_variant_parameter_sets():
    for position in ("rope", "none"):
        names = dict(_model(position=position).named_parameters())
        assert "position_embeddings.weight" not in names
    rope = _model(position="rope")
    assert rope.layers[1].attn.rope is rope.layers[0].attn.rope is not None  # one table
    assert all(layer.attn.rope is None for layer in _model(position="none").layers)
    assert "layers.0.ffn.w3.weight" in dict(_model(ffn="swiglu").named_parameters())
    assert "layers.0.ffn.w3.weight" not in dict(_model(ffn="silu").named_parameters())
    no_norm = dict(_model(norm="none").named_parameters())
    assert not any("ln" in n for n in no_norm)
    tied = _model(tie_embeddings=True)
    assert tied.lm_head.weight is tied.token_embeddings.weight
    assert "lm_head.weight" not in dict(tied.named_parameters())  # listed once, as embeddings


def test_norm_eps_reaches_every_rmsnorm():
    model = _model(norm_eps=1e-6)
    eps = {m.eps for m in model.modules() if isinstance(m, torch.nn.Module) and hasattr(m, "eps")}
    assert eps == {1e-6}
    assert {m.eps for m in _model().modules() if hasattr(m, "eps")} == {1e-5}


def test_post_norm_feeds_the_last_blocks_norm_straight_to_the_head():
    """The handout's post-norm block ends in RMSNorm(z + FFN(z)); a second RMSNorm
    (ln_final) after it would only rescale by its gain, so post-norm has none."""
    model = _model(norm="post")
    assert not hasattr(model, "ln_final")
    assert "ln_final.weight" not in model.state_dict()
    x = torch.randint(0, 50, (2, 16))
    h = model.token_embeddings(x) + model.position_embeddings(torch.arange(16))
    for layer in model.layers:
        h = layer(h)
    torch.testing.assert_close(model(x), model.lm_head(h))
    rms = h.pow(2).mean(-1).sqrt()  # the last block's ln2 (gain 1 at init) normalized it
    torch.testing.assert_close(rms, torch.ones_like(rms), atol=1e-4, rtol=0)
    assert hasattr(_model(norm="pre"), "ln_final") and not hasattr(_model(norm="none"), "ln_final")


@pytest.mark.parametrize("kw", VARIANTS, ids=_id)
def test_every_variant_runs_forward_and_backward(kw):
    model = _model(**kw)
    x = torch.randint(0, 50, (3, 16))
    logits = model(x)
    assert logits.shape == (3, 16, 50)
    cross_entropy(logits[:, :-1], x[:, 1:]).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("kw", VARIANTS, ids=_id)
def test_kv_cache_decoding_equals_full_recomputation(kw):
    model = _model(**kw).eval()
    x = torch.randint(0, 50, (2, 16))
    full = model(x)
    cache = model.init_kv_cache(2)
    assert isinstance(cache, KVCache) and cache.length == 0
    chunks = [model(x[:, :5], kv_cache=cache)]  # prefill, then one token at a time
    chunks += [model(x[:, i : i + 1], kv_cache=cache) for i in range(5, 16)]
    assert cache.length == 16
    torch.testing.assert_close(torch.cat(chunks, dim=1), full, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match=r"holds 16 tokens; 1 more would exceed context_length"):
        model(x[:, :1], kv_cache=cache)
    cache.reset()
    torch.testing.assert_close(model(x[:, :3], kv_cache=cache), full[:, :3])


@pytest.mark.parametrize("kernels", ["auto", "fused"])
@pytest.mark.parametrize(
    "kw",
    [{}, {"ffn": "swiglu", "position": "rope"}, {"ffn": "silu", "norm": "post"}, PRESET_2025],
    ids=["2024", "swiglu-rope", "silu-post", "2025"],
)
def test_fast_kernels_equal_the_reference_path(kernels, kw):
    """The default kernels (auto) and fused ones against the handout's code: logits, the
    loss with targets, and every parameter's gradient (float64, so only the math counts)."""
    ref = _model(**kw, kernels="reference").double()
    fast = _model(**kw, kernels=kernels).double()
    fast.load_state_dict(ref.state_dict())
    x = torch.randint(0, 50, (4, 16))
    torch.testing.assert_close(fast(x), ref(x))
    losses = [m(x, targets=x.roll(-1, 1)) for m in (ref, fast)]
    torch.testing.assert_close(losses[1], losses[0])
    for loss in losses:
        loss.backward()
    for (name, p), q in zip(ref.named_parameters(), fast.parameters(), strict=True):
        torch.testing.assert_close(q.grad, p.grad, msg=name)


def test_the_default_kernels_are_torchs_fused_ones():
    """kernels='auto' runs F.scaled_dot_product_attention, F.rms_norm, F.gelu and the
    chunked cross-entropy (seen through the ops the profiler records), 'reference' none."""
    from torch.profiler import ProfilerActivity, profile

    x = torch.randint(0, 50, (2, 16))
    ops = {}
    for kernels in ("auto", "reference"):
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            _model(kernels=kernels)(x, targets=x).backward()
        ops[kernels] = {e.key for e in prof.key_averages()}
    fused = {"aten::scaled_dot_product_attention", "aten::rms_norm", "aten::gelu"}
    assert fused <= ops["auto"] and not fused & ops["reference"]
    assert any("ChunkedCrossEntropy" in k for k in ops["auto"])
    # auto decodes with the reference attention after the prefill; fused keeps SDPA
    for kernels, sdpa_in_decode in (("auto", False), ("fused", True)):
        model = _model(kernels=kernels).eval()
        cache = model.init_kv_cache(2)
        model(x[:, :8], kv_cache=cache)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            model(x[:, 8:9], kv_cache=cache)
        keys = {e.key for e in prof.key_averages()}
        assert ("aten::scaled_dot_product_attention" in keys) is sdpa_in_decode, kernels


def test_forward_rejects_long_or_malformed_input():
    model = _model()
    with pytest.raises(ValueError, match=r"sequence length 17 exceeds context_length \(16\)"):
        model(torch.zeros(1, 17, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\(16,\)"):
        model(torch.zeros(16, dtype=torch.long))
    with pytest.raises(ValueError, match="integer tensor, got torch.float32"):
        model(torch.zeros(1, 4))
    with pytest.raises(ValueError, match="batch size 2"):
        model(torch.zeros(3, 4, dtype=torch.long), kv_cache=model.init_kv_cache(2))


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (
            {"d_model": 500, "num_heads": 16},
            r"d_model \(500\) must be divisible by num_heads \(16\)",
        ),
        ({"vocab_size": 0}, "vocab_size must be a positive integer, got 0"),
        ({"num_layers": 2.0}, "num_layers must be a positive integer, got 2.0"),
        ({"attn_pdrop": 1.0}, r"attn_pdrop \(1.0\) must be in \[0, 1\)"),
        ({"residual_pdrop": -0.1}, r"residual_pdrop \(-0.1\) must be in"),
        ({"norm": "layernorm"}, "norm must be one of 'pre', 'post', 'none', got 'layernorm'"),
        ({"ffn": "relu"}, "ffn must be one of"),
        ({"position": "sinusoidal"}, "position must be one of"),
        ({"init": "kaiming"}, "init must be one of 'gpt2', 'xavier'"),
        ({"kernels": "flash"}, "kernels must be one of"),
        ({"parallel": "yes"}, "parallel must be true or false"),
        ({"norm": "post", "parallel": True}, "parallel layers need norm"),
        ({"position": "rope", "d_model": 36, "num_heads": 4}, "even head dimension.*= 9"),
        ({"position": "rope", "rope_theta": 0.0}, "rope_theta must be positive"),
        ({"norm_eps": 0.0}, "norm_eps must be positive, got 0.0"),
        ({"norm_eps": "small"}, "norm_eps must be a positive number"),
    ],
)
def test_model_config_validation(change, match):
    with pytest.raises(ValueError, match=match):
        ModelConfig(**{**SMALL, **change})
    with pytest.raises(ValueError, match=match):
        TransformerLM(**{**SMALL, **change})


def test_model_config_dict_round_trip_through_json():
    cfg = ModelConfig(**SMALL, norm="post", ffn="swiglu", position="rope", tie_embeddings=True)
    assert ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    model = TransformerLM.from_config(cfg)
    assert model.config == cfg
    with pytest.raises(ValueError, match="unknown model config keys: bogus, n_layer"):
        ModelConfig.from_dict({**SMALL, "n_layer": 2, "bogus": 1})
    missing = dict(SMALL)
    del missing["d_ff"]
    with pytest.raises(ValueError, match="missing model config keys: d_ff"):
        ModelConfig.from_dict(missing)


def test_init_weights_follows_its_docstring():
    model = _model(d_model=256, num_heads=4, d_ff=512, num_layers=8, vocab_size=300)
    std, out_std = 0.02, 0.02 / 4  # 4 = sqrt(2 * 8)
    for name, p in model.named_parameters():
        if p.ndim == 1:
            assert torch.equal(p, torch.ones_like(p)), name
            continue
        s = out_std if name.endswith(("output_proj.weight", "w2.weight")) else std
        assert p.abs().max() <= 3 * s, name
        assert abs(p.std().item() - s) < 0.15 * s, (name, p.std().item(), s)


def test_num_parameters():
    model = _model()
    assert model.num_parameters() == sum(p.numel() for p in model.parameters())
    assert model.num_parameters(exclude_embeddings=True) == model.num_parameters() - 66 * 32
    tied = _model(tie_embeddings=True)
    assert tied.num_parameters() == model.num_parameters() - 50 * 32
    assert tied.num_parameters(exclude_embeddings=True) == tied.num_parameters() - 16 * 32


def test_dropout_zero_model_is_deterministic_in_training_mode():
    model = _model()
    x = torch.randint(0, 50, (2, 16))
    train_out = model.train()(x)
    assert torch.equal(train_out, model.eval()(x))
    dropped = _model(attn_pdrop=0.1, residual_pdrop=0.1)
    dropped.load_state_dict(model.state_dict())
    assert torch.equal(dropped.eval()(x), train_out)
    assert not torch.equal(dropped.train()(x), train_out)


def _overfit(model: TransformerLM, steps: int, autocast: bool = False) -> list[float]:
    torch.manual_seed(0)
    x = torch.randint(0, 50, (4, 16))
    opt = AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    losses = []
    for _ in range(steps):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = cross_entropy(model(x[:, :-1]), x[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_a_tiny_model_overfits_one_batch():
    losses = _overfit(_model(), steps=60)
    assert losses[0] > 3.5  # about log(50)
    assert losses[-1] < 0.1, losses[-10:]


def test_bf16_autocast_training_has_no_nan_and_tracks_fp32():
    fp32 = _overfit(_model(), steps=30)
    bf16 = _overfit(_model(), steps=30, autocast=True)
    assert all(torch.isfinite(torch.tensor(bf16)))
    assert abs(bf16[0] - fp32[0]) < 0.05
    assert bf16[-1] < 0.6 * bf16[0]


def test_large_model_can_be_built_on_the_meta_device():
    with torch.device("meta"):
        model = TransformerLM(50257, 1024, 1600, 48, 25, 6400)
    assert model.num_parameters() == 1_637_176_000
    assert model.lm_head.weight.device.type == "meta"


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.gpu
@cuda
@pytest.mark.parametrize("kernels", ["reference", "fused"])
def test_cuda_bf16_training_tracks_fp32(kernels):
    def train(autocast: bool) -> list[float]:
        torch.manual_seed(0)
        model = TransformerLM(**{**SMALL, "context_length": 64}, kernels=kernels).cuda()
        x = torch.randint(0, 50, (8, 65), device="cuda")
        opt = AdamW(model.parameters(), lr=1e-2, weight_decay=0.1, foreach=True)
        losses = []
        for _ in range(20):
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
                loss = cross_entropy(model(x[:, :-1]), x[:, 1:])
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        return losses

    fp32, bf16 = train(False), train(True)
    assert all(map(torch.isfinite, torch.tensor(bf16)))
    assert abs(bf16[0] - fp32[0]) < 0.02 * fp32[0]
    assert abs(bf16[-1] - fp32[-1]) < 0.1 * fp32[0]


@pytest.mark.gpu
@cuda
def test_cuda_kv_cache_and_fused_attention_match_reference():
    ref = _model().cuda().eval()
    fused = _model(kernels="fused").cuda().eval()
    fused.load_state_dict(ref.state_dict())
    x = torch.randint(0, 50, (2, 16), device="cuda")
    full = ref(x)
    torch.testing.assert_close(fused(x), full, atol=1e-4, rtol=1e-4)
    cache = fused.init_kv_cache(2)
    steps = [fused(x[:, :4], kv_cache=cache)] + [
        fused(x[:, i : i + 1], kv_cache=cache) for i in range(4, 16)
    ]
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("init", ["gpt2", "xavier"])
@pytest.mark.parametrize("tied", [False, True])
def test_every_parameter_is_drawn_once_and_none_is_left_uninitialized(monkeypatch, init, tied):
    """The layers are built without their own init and the model draws every weight once:
    no parameter keeps the memory it was allocated with (filled with NaN here), the gains
    are ones, and the weights have the chosen init's spread."""
    import cs336.nn.layers as layers

    real_empty = torch.empty
    monkeypatch.setattr(
        layers.torch, "empty", lambda *a, **k: real_empty(*a, **k).fill_(float("nan"))
    )
    for preset in ("cs336-2024", "cs336-2025"):
        cfg = ModelConfig.preset(
            preset, vocab_size=64, context_length=16, d_model=32, num_layers=2, num_heads=2,
            init=init, tie_embeddings=tied,
        )  # fmt: skip
        model = TransformerLM.from_config(cfg)
        for name, p in model.named_parameters():
            assert torch.isfinite(p).all(), (preset, name)
            if p.dim() == 1:
                assert torch.equal(p, torch.ones_like(p)), name
        std = float(model.layers[0].attn.q_proj.weight.detach().std())
        expected = 0.02 if init == "gpt2" else (2 / (32 + 32)) ** 0.5
        assert 0.8 * expected < std < 1.2 * expected, (init, std)
    monkeypatch.undo()
