"""DDP through torchrun on the CPU (gloo, 2 processes): the same losses as one process
with the same global batch, because every process draws the same global batch and
trains on its slice."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist

from cs336 import TrainConfig, train
from cs336.training.checkpoint import read_checkpoint
from cs336.training.metrics import read_metrics

ROOT = Path(__file__).resolve().parent.parent
needs_gloo = pytest.mark.skipif(
    not dist.is_available() or not dist.is_gloo_available(), reason="no gloo"
)
pytestmark = pytest.mark.slow  # torchrun starts two processes per run (CI runs slow tests too)


def _torchrun(config: dict, path: Path, *args: str) -> None:
    """``cs336 train`` on 2 CPU processes (gloo) with ``config`` written to ``path``."""
    path.write_text(json.dumps(config))
    env = {**os.environ, "PYTHONPATH": str(ROOT / "python"), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    result = subprocess.run(
        [*cmd, "-m", "cs336", "train", str(path), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]


def _write_tokens(tmp_path: Path) -> None:
    loop = np.random.default_rng(0).integers(0, 32, 40)
    np.save(tmp_path / "train.npy", np.tile(loop, 100).astype(np.uint16))
    np.save(tmp_path / "val.npy", np.tile(loop, 10).astype(np.uint16))


@needs_gloo
def test_two_processes_match_one(tmp_path):
    _write_tokens(tmp_path)
    d = {
        "max_steps": 4,
        "eval_interval": 2,
        "eval_batches": 3,
        "log_interval": 1,
        "progress": False,
        "model": dict(
            vocab_size=32, context_length=16, d_model=16, num_layers=1, num_heads=2, d_ff=32
        ),
        "data": dict(
            train_path=str(tmp_path / "train.npy"),
            val_path=str(tmp_path / "val.npy"),
            batch_size=8,
            grad_accum_steps=2,
        ),
        "optim": dict(lr=1e-2, warmup_iters=1),
    }
    single = train(TrainConfig.from_dict({**d, "out_dir": str(tmp_path / "one")}))

    _torchrun({**d, "out_dir": str(tmp_path / "two")}, tmp_path / "two.json")
    records = read_metrics(tmp_path / "two" / "metrics.jsonl")
    two_train = [r["train_loss"] for r in records if "train_loss" in r]
    two_val = [r["val_loss"] for r in records if "val_loss" in r]
    np.testing.assert_allclose(two_train, list(single.train_losses.values()), rtol=1e-5)
    np.testing.assert_allclose(two_val, list(single.val_losses.values()), rtol=1e-5)
    assert records[-1]["tokens"] == 4 * 8 * 16  # counts the global batch, once
    one = read_checkpoint(tmp_path / "one" / "checkpoint.pt")["model"]
    two = read_checkpoint(tmp_path / "two" / "checkpoint.pt")["model"]
    assert one.keys() == two.keys()  # saved unwrapped: no "module." prefix
    for k in one:
        np.testing.assert_allclose(one[k].numpy(), two[k].numpy(), rtol=1e-4, atol=1e-6)


@needs_gloo
def test_two_processes_with_dropout_resume_exactly(tmp_path):
    """Straight == stop + resume, bitwise, on 2 processes with dropout: every process
    derives its dropout masks from (seed, rank, step)."""
    _write_tokens(tmp_path)
    d = {
        "max_steps": 4,
        "eval_interval": 0,
        "log_interval": 1,
        "progress": False,
        "model": dict(
            vocab_size=32, context_length=16, d_model=16, num_layers=1, num_heads=2, d_ff=32,
            attn_pdrop=0.2, residual_pdrop=0.2,
        ),
        "data": dict(
            train_path=str(tmp_path / "train.npy"), val_path=str(tmp_path / "val.npy"),
            batch_size=8,
        ),
        "optim": dict(lr=1e-2, warmup_iters=1, cosine_cycle_iters=4),
    }  # fmt: skip
    _torchrun({**d, "out_dir": str(tmp_path / "a")}, tmp_path / "a.json")
    _torchrun({**d, "out_dir": str(tmp_path / "b"), "max_steps": 2}, tmp_path / "b2.json")
    _torchrun({**d, "out_dir": str(tmp_path / "b")}, tmp_path / "b4.json", "--resume")
    losses = {
        run: [
            r["train_loss"]
            for r in read_metrics(tmp_path / run / "metrics.jsonl")
            if "step" in r and "train_loss" in r
        ]
        for run in ("a", "b")
    }
    assert losses["a"] == losses["b"] and len(losses["a"]) == 4
    a = read_checkpoint(tmp_path / "a" / "checkpoint.pt")["model"]
    b = read_checkpoint(tmp_path / "b" / "checkpoint.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
