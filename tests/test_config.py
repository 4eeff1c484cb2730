"""Configs: self-validating dataclasses, TOML/JSON files, --section.key overrides, sweeps,
and a clear message for every bad key or value."""

from __future__ import annotations

import json

import pytest

from cs336 import DataConfig, OptimConfig, TrainConfig
from cs336.nn.model import ModelConfig
from cs336.training.config import apply_overrides, field_specs, load_config, load_sweep

BASE = {
    "max_steps": 100,
    "model": {
        "vocab_size": 64,
        "context_length": 16,
        "d_model": 32,
        "num_layers": 1,
        "num_heads": 2,
        "d_ff": 64,
    },
    "data": {"train_path": "t.npy", "val_path": "v.npy"},
    "optim": {"warmup_iters": 10},
}

TOML = """
max_steps = 100
[model]
vocab_size = 64
context_length = 16
d_model = 32
num_layers = 1
num_heads = 2
d_ff = 64
[optim]
warmup_iters = 10
betas = [0.9, 0.99]
[data]
train_path = "t.npy"
val_path = "v.npy"
"""


def test_from_dict_round_trips():
    cfg = TrainConfig.from_dict(BASE)
    assert isinstance(cfg.model, ModelConfig) and isinstance(cfg.optim, OptimConfig)
    assert isinstance(cfg.data, DataConfig)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    assert json.loads(json.dumps(cfg.to_dict())) == cfg.to_dict()
    assert cfg.context_length == 16 and cfg.cosine_cycle_iters == 100


def test_toml_and_json_files_agree(tmp_path):
    (tmp_path / "c.toml").write_text(TOML)
    from_toml = load_config(tmp_path / "c.toml")
    assert from_toml.optim.betas == (0.9, 0.99)
    (tmp_path / "c.json").write_text(json.dumps(from_toml.to_dict()))
    assert load_config(tmp_path / "c.json") == from_toml


def test_overrides_convert_to_each_field_type(tmp_path):
    (tmp_path / "c.toml").write_text(TOML)
    cfg = load_config(
        tmp_path / "c.toml",
        {
            "model.d_model": "64",
            "model.parallel": "true",
            "model.norm": "none",
            "optim.lr": "3e-4",
            "optim.betas": "0.8,0.9",
            "optim.cosine_cycle_iters": "50",
            "data.context_length": "none",
            "eval_batches": "None",
            "dtype": "bfloat16",
            "max_steps": "1_000",
        },
    )
    assert cfg.model.d_model == 64 and cfg.model.parallel is True and cfg.model.norm == "none"
    assert cfg.optim.lr == 3e-4 and cfg.optim.betas == (0.8, 0.9)
    assert cfg.optim.cosine_cycle_iters == 50 and cfg.cosine_cycle_iters == 50
    assert cfg.data.context_length is None and cfg.eval_batches is None
    assert cfg.dtype == "bfloat16" and cfg.max_steps == 1000


def test_every_field_can_be_overridden():
    names = {s.name for s in field_specs()}
    assert {"max_steps", "out_dir", "model.d_model", "optim.lr", "data.batch_size"} <= names
    assert "model" not in names and "optim" not in names
    import dataclasses

    for section, cls in (("model", ModelConfig), ("optim", OptimConfig), ("data", DataConfig)):
        assert {f"{section}.{f.name}" for f in dataclasses.fields(cls)} <= names


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"optim.lrr": "1"}, r"unknown config key 'optim.lrr'.*did you mean 'optim.lr'"),
        ({"optim.lr": "fast"}, r"optim.lr: expected float, got 'fast'"),
        ({"max_steps": "1.5"}, r"max_steps: expected int, got '1.5'"),
        ({"compile": "maybe"}, r"compile: expected bool\|auto, got 'maybe'"),
        ({"dtype": "float16"}, r"dtype must be one of auto, float32, bfloat16, got 'float16'"),
        ({"optim.betas": "0.9"}, r"optim.betas: expected float,float"),
        ({"optim.lr": "-1"}, r"optim.lr must be > 0, got -1.0"),
        ({"optim.warmup_iters": "200"}, r"warmup_iters \(200\) must be < the cosine cycle"),
        ({"optim.cosine_cycle_iters": "5"}, r"warmup_iters \(10\) must be < cosine_cycle_iters"),
        ({"optim.min_lr": "1"}, r"optim.min_lr \(1.0\) must be in \[0, lr"),
        ({"data.batch_size": "6", "data.grad_accum_steps": "4"}, r"batch_size \(6\) must be div"),
        ({"data.context_length": "32"}, r"data.context_length \(32\) is longer than the model"),
        ({"model.d_model": "33"}, r"d_model \(33\) must be divisible by num_heads \(2\)"),
        ({"max_steps": "0"}, r"max_steps must be >= 1, got 0"),
        ({"eval_batches": "0"}, r"eval_batches must be >= 1"),
    ],
)
def test_bad_overrides_name_the_value(overrides, message):
    d = json.loads(json.dumps(BASE))
    with pytest.raises(ValueError, match=message):
        TrainConfig.from_dict(apply_overrides(d, overrides))


def test_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.toml"):
        load_config(tmp_path / "missing.toml")
    (tmp_path / "bad.toml").write_text("max_steps = = 3")
    with pytest.raises(ValueError, match="cannot parse config file"):
        load_config(tmp_path / "bad.toml")
    (tmp_path / "c.yaml").write_text("a: 1")
    with pytest.raises(ValueError, match=r"must end in \.toml or \.json"):
        load_config(tmp_path / "c.yaml")
    (tmp_path / "typo.toml").write_text(TOML.replace("d_ff = 64", "d_ff = 64\nd_fff = 3"))
    with pytest.raises(ValueError, match=r"unknown config key 'model.d_fff' in .*typo.toml"):
        load_config(tmp_path / "typo.toml")
    (tmp_path / "nomodel.toml").write_text('[data]\ntrain_path = "a"\nval_path = "b"\n')
    with pytest.raises(ValueError, match="missing config key.*model"):
        load_config(tmp_path / "nomodel.toml")
    (tmp_path / "noval.toml").write_text(TOML.replace('val_path = "v.npy"', ""))
    with pytest.raises(ValueError, match=r"missing config key\(s\) in .*: data.val_path"):
        load_config(tmp_path / "noval.toml")


def test_sweep_expands_into_runs(tmp_path):
    (tmp_path / "s.toml").write_text(
        TOML + '\n[sweep]\n"optim.lr" = [1e-3, 1e-2]\n"data.batch_size" = [4, 8]\n'
    )
    runs = load_sweep(tmp_path / "s.toml", {"out_dir": "runs/x"})
    assert [(c.optim.lr, c.data.batch_size) for c in runs] == [
        (1e-3, 4),
        (1e-3, 8),
        (1e-2, 4),
        (1e-2, 8),
    ]
    assert runs[1].out_dir.replace("\\", "/") == "runs/x/optim.lr=0.001,data.batch_size=8"
    # overriding a swept key replaces that axis
    runs = load_sweep(tmp_path / "s.toml", {"optim.lr": "3e-4"})
    assert [(c.optim.lr, c.data.batch_size) for c in runs] == [(3e-4, 4), (3e-4, 8)]
    with pytest.raises(ValueError, match="defines a sweep of 4 runs"):
        load_config(tmp_path / "s.toml")


def test_bad_sweeps(tmp_path):
    (tmp_path / "a.toml").write_text(TOML + '\n[sweep]\n"optim.lrr" = [1]\n')
    with pytest.raises(ValueError, match="unknown config key 'optim.lrr' in \\[sweep\\]"):
        load_sweep(tmp_path / "a.toml")
    (tmp_path / "b.toml").write_text(TOML + '\n[sweep]\n"optim.lr" = 0.1\n')
    with pytest.raises(ValueError, match="needs a non-empty list"):
        load_sweep(tmp_path / "b.toml")


def test_every_field_has_a_help_text():
    missing = [s.name for s in field_specs() if not s.help]
    assert missing == []


def test_a_model_table_may_name_a_preset(tmp_path):
    """[model] preset = "cs336-2025" fills in the preset's choices and d_ff; the table's own
    keys and command-line overrides win; the saved config spells every field out."""
    path = tmp_path / "c.toml"
    path.write_text(
        TOML.replace("[model]\n", '[model]\npreset = "cs336-2025"\n').replace("d_ff = 64\n", "")
    )
    cfg = load_config(path)
    assert cfg.model == ModelConfig.preset(
        "cs336-2025", vocab_size=64, context_length=16, d_model=32, num_layers=1, num_heads=2
    )
    assert (cfg.model.ffn, cfg.model.position, cfg.model.d_ff) == ("swiglu", "rope", 64)
    ablated = load_config(path, {"model.position": "none", "model.d_ff": "128"})
    assert (ablated.model.position, ablated.model.d_ff, ablated.model.ffn) == (
        "none",
        128,
        "swiglu",
    )
    assert "preset" not in cfg.to_dict()["model"]
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    path.write_text(TOML.replace("[model]\n", '[model]\npreset = "gpt5"\n'))
    with pytest.raises(ValueError, match="preset must be one of 'cs336-2024', 'cs336-2025'"):
        load_config(path)


def test_compile_backend_is_aot_eager_on_mps_only():
    from cs336.training.step import compile_backend

    assert compile_backend("mps") == "aot_eager"
    assert {compile_backend(d) for d in ("cpu", "cuda")} == {"inductor"}


def test_configs_and_checkpoints_that_name_kernels_attention_still_read(tmp_path):
    """`kernels` was called `attention`: a model table, a checkpoint's config and a
    preset read under either name (never both)."""
    from cs336 import ModelConfig

    shape = dict(vocab_size=16, context_length=8, d_model=8, num_layers=1, num_heads=2, d_ff=16)
    assert ModelConfig.from_dict({**shape, "attention": "reference"}).kernels == "reference"
    assert (
        ModelConfig.from_dict({**shape, "preset": "cs336-2025", "attention": "fused"}).kernels
        == "fused"
    )
    with pytest.raises(ValueError, match="not both"):
        ModelConfig.from_dict({**shape, "attention": "fused", "kernels": "fused"})
