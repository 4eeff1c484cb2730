"""Every experiment config in configs/ loads, and a tiny CPU smoke run of each (sizes and
steps overridden to almost nothing) trains, validates and checkpoints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cs336.training import train
from cs336.training.config import load_sweep

CONFIGS = sorted((Path(__file__).resolve().parent.parent / "configs").glob("*.toml"))
EXPECTED = {
    "tinystories",
    "owt",
    "lr_sweep",
    "batch_size_sweep",
    "parallel_layers",
    "no_rmsnorm",
    "post_norm",
}


def test_every_handout_experiment_has_a_config():
    assert {p.stem for p in CONFIGS} >= EXPECTED


def test_full_size_configs_are_the_handout_models():
    base = load_sweep(CONFIGS[0].parent / "tinystories.toml")[0]
    assert (base.model.d_model, base.model.num_layers, base.model.num_heads) == (512, 4, 16)
    assert base.data.batch_size * base.context_length * base.max_steps == 327_680_000
    assert load_sweep(CONFIGS[0].parent / "owt.toml")[0].model.vocab_size == 32000
    lrs = [c.optim.lr for c in load_sweep(CONFIGS[0].parent / "lr_sweep.toml")]
    assert len(lrs) >= 5 and max(lrs) >= 0.1  # includes rates meant to diverge
    variants = {p: load_sweep(CONFIGS[0].parent / f"{p}.toml")[0].model for p in EXPECTED}
    assert variants["parallel_layers"].parallel and variants["no_rmsnorm"].norm == "none"
    assert variants["post_norm"].norm == "post"
    assert (
        len({c.out_dir for p in EXPECTED for c in load_sweep(CONFIGS[0].parent / f"{p}.toml")}) > 7
    )


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


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_smoke_run(path, tokens, tmp_path):
    overrides = {
        **TINY,
        "data.train_path": str(tokens / "train.npy"),
        "data.val_path": str(tokens / "val.npy"),
        "out_dir": str(tmp_path / path.stem),
    }
    if path.stem != "batch_size_sweep":
        overrides["data.batch_size"] = 4
    runs = load_sweep(path, overrides)
    for config in runs:
        result = train(config)
        assert result.stopped == "completed" and sorted(result.val_losses) == [0, 2]
        assert (Path(config.out_dir) / "checkpoint.pt").exists()
