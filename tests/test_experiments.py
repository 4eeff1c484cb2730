"""Every experiment config in configs/2024, configs/2025 and configs/2026 loads, the full-size
ones are the handouts' models and budgets, and a tiny CPU smoke run of each (sizes and steps
overridden to almost nothing) trains, validates and checkpoints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cs336.accounting import count_parameters
from cs336.nn.config import MODEL_PRESETS
from cs336.training import train
from cs336.training.config import load_sweep

ROOT = Path(__file__).resolve().parent.parent / "configs"
CONFIGS = sorted(ROOT.glob("*/*.toml"))
EXPECTED = {
    "2024": {
        "tinystories", "owt", "lr_sweep", "batch_size_sweep", "parallel_layers", "no_rmsnorm",
        "post_norm", "gpt2_small",
    },
    "2025": {
        "tinystories", "owt", "lr_sweep", "batch_size_sweep", "no_rmsnorm", "post_norm",
        "nope", "silu", "leaderboard", "low_resource",
    },
    "2026": {
        "tinystories", "owt", "lr_sweep", "batch_size_sweep", "no_rmsnorm", "post_norm",
        "nope", "silu", "leaderboard", "low_resource",
    },
}  # fmt: skip


def _first(edition: str, name: str):
    return load_sweep(ROOT / edition / f"{name}.toml")[0]


def test_every_handout_experiment_has_a_config():
    for edition, names in EXPECTED.items():
        assert {p.stem for p in CONFIGS if p.parent.name == edition} >= names, edition
    assert not list(ROOT.glob("*.toml"))  # every config belongs to an edition


def test_full_size_2024_configs_are_the_handout_models():
    base = _first("2024", "tinystories")
    assert (base.model.d_model, base.model.num_layers, base.model.num_heads) == (512, 4, 16)
    assert (base.model.ffn, base.model.position, base.model.d_ff) == ("gelu", "learned", 2048)
    assert base.data.batch_size * base.context_length * base.max_steps == 327_680_000
    assert _first("2024", "owt").model.vocab_size == 32000
    small = _first("2024", "gpt2_small").model
    assert (small.num_layers, small.d_model, small.num_heads, small.d_ff) == (12, 768, 12, 3072)
    assert small.context_length == 1024
    lrs = [c.optim.lr for c in load_sweep(ROOT / "2024" / "lr_sweep.toml")]
    assert len(lrs) >= 5 and max(lrs) >= 0.1  # includes rates meant to diverge
    variants = {p: _first("2024", p).model for p in EXPECTED["2024"]}
    assert variants["parallel_layers"].parallel and variants["no_rmsnorm"].norm == "none"
    assert variants["post_norm"].norm == "post"


def test_full_size_2025_configs_are_the_handout_models():
    base = _first("2025", "tinystories")
    preset = MODEL_PRESETS["cs336-2025"]
    assert {k: getattr(base.model, k) for k in preset} == preset
    m = base.model
    assert (m.vocab_size, m.context_length, m.d_model, m.d_ff) == (10000, 256, 512, 1344)
    assert (m.num_layers, m.num_heads, m.rope_theta) == (4, 16, 10000.0)
    assert base.data.batch_size * base.context_length * base.max_steps == 327_680_000
    low = _first("2025", "low_resource")
    assert (low.data.batch_size, low.max_steps, low.context_length) == (32, 5000, 256)
    assert low.data.batch_size * low.context_length * low.max_steps == 40_960_000
    assert low.device == "cpu" and low.model == base.model
    assert low.cosine_cycle_iters == low.max_steps  # the cosine ends at the last step
    lrs = [c.optim.lr for c in load_sweep(ROOT / "2025" / "lr_sweep.toml")]
    assert len(lrs) >= 5 and max(lrs) >= 0.1  # includes rates meant to diverge
    sizes = [c.data.batch_size for c in load_sweep(ROOT / "2025" / "batch_size_sweep.toml")]
    assert min(sizes) == 1 and {64, 128} <= set(sizes)
    owt = _first("2025", "owt")
    assert owt.model.vocab_size == 32000 and owt.max_steps == base.max_steps
    assert owt.model.ffn == "swiglu" and owt.model.d_model == 512
    # each ablation changes exactly what it ablates
    changes = {"no_rmsnorm": {"norm": "none"}, "post_norm": {"norm": "post"},
               "nope": {"position": "none"}, "silu": {"ffn": "silu", "d_ff": 2048}}  # fmt: skip
    for name, change in changes.items():
        model = _first("2025", name).model
        assert sorted(model.weight_differences(base.model)) == sorted(
            f"{k}: {v!r} vs {getattr(base.model, k)!r}" for k, v in change.items()
        ), name
    silu, swiglu = count_parameters(_first("2025", "silu").model), count_parameters(base.model)
    assert abs(silu["ffn"] / swiglu["ffn"] - 1) < 0.02  # parameter counts about matched
    board = _first("2025", "leaderboard")
    assert board.data.val_path == owt.data.val_path and board.model.position == "rope"


def test_full_size_2026_configs_are_the_2025_models_with_the_2026_adamw():
    """The 2026 handout keeps every 2025 model and budget; its AdamW decays before the step;
    its sweeps fit its B200-hour budgets; its leaderboard is 45 minutes at context 512."""
    for name in EXPECTED["2026"]:
        for config in load_sweep(ROOT / "2026" / f"{name}.toml"):
            assert config.optim.decay == "before", name
        assert _first("2026", name).model == _first("2025", name).model, name
    base, base_2025 = _first("2026", "tinystories"), _first("2025", "tinystories")
    assert base.data.batch_size * base.context_length * base.max_steps == 327_680_000
    assert (base.optim.lr, base.max_steps) == (base_2025.optim.lr, base_2025.max_steps)
    low = _first("2026", "low_resource")
    assert low.data.batch_size * low.context_length * low.max_steps == 40_960_000
    lrs = [c.optim.lr for c in load_sweep(ROOT / "2026" / "lr_sweep.toml")]
    assert len(lrs) >= 5 and max(lrs) >= 0.1  # includes rates meant to diverge
    sweep = load_sweep(ROOT / "2026" / "batch_size_sweep.toml")
    assert min(c.data.batch_size for c in sweep) == 1
    assert all(c.time_budget in ("10m", 600) for c in sweep) and len(sweep) * 10 <= 60
    board = _first("2026", "leaderboard")
    assert board.time_budget in ("45m", 2700)
    assert (board.model.vocab_size, board.model.context_length) == (32000, 512)
    assert board.data.val_path == _first("2026", "owt").data.val_path
    assert board.model.ffn == "swiglu" and board.model.position == "rope"


def test_every_run_writes_to_its_own_directory():
    dirs = [c.out_dir for p in CONFIGS for c in load_sweep(p)]
    assert len(set(dirs)) == len(dirs)


@pytest.fixture(scope="module")
def tokens(tmp_path_factory):
    d = tmp_path_factory.mktemp("tokens")
    ids = np.random.default_rng(0).integers(0, 64, 4000).astype(np.uint16)
    np.save(d / "train.npy", ids)
    np.save(d / "val.npy", ids[:600])
    return d


TINY = {
    "model.vocab_size": 64,
    "model.context_length": 8,
    "model.d_model": 16,
    "model.num_layers": 1,
    "model.num_heads": 2,
    "model.d_ff": 32,
    "optim.warmup_iters": 0,
    "optim.cosine_cycle_iters": None,
    "max_steps": 2,
    "eval_interval": 2,
    "eval_batches": 1,
    "checkpoint_interval": 0,
    "progress": False,
}


@pytest.mark.parametrize("path", CONFIGS, ids=[f"{p.parent.name}/{p.stem}" for p in CONFIGS])
def test_smoke_run(path, tokens, tmp_path):
    overrides = {
        **TINY,
        "data.train_path": str(tokens / "train.npy"),
        "data.val_path": str(tokens / "val.npy"),
        "out_dir": str(tmp_path / path.stem),
    }
    if path.stem != "batch_size_sweep":
        overrides["data.batch_size"] = 4
    if "time_budget" in path.read_text():  # 2 steps, not the budget's minutes
        overrides["time_budget"] = None
    runs = load_sweep(path, overrides)
    for config in runs:
        result = train(config)
        assert result.stopped == "completed" and sorted(result.val_losses) == [0, 2]
        assert (Path(config.out_dir) / "checkpoint.pt").exists()
