"""``cs336 train``: a tiny run from a TOML file plus flags, sweeps, SIGTERM and resume, and
every bad input (clear message, non-zero exit, nothing half-written)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cs336.cli import main
from cs336.training.checkpoint import read_checkpoint
from cs336.training.metrics import read_metrics

ROOT = Path(__file__).resolve().parent.parent

TOML = """
max_steps = 4
eval_interval = 2
eval_batches = 1
log_interval = 1
progress = false
[model]
vocab_size = 32
context_length = 16
d_model = 16
num_layers = 1
num_heads = 2
d_ff = 32
[optim]
warmup_iters = 1
[data]
train_path = "{train}"
val_path = "{val}"
batch_size = 4
"""


@pytest.fixture
def setup(tmp_path):
    loop = np.random.default_rng(0).integers(0, 32, 40)
    np.save(tmp_path / "train.npy", np.tile(loop, 100).astype(np.uint16))
    np.save(tmp_path / "val.npy", np.tile(loop, 10).astype(np.uint16))
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TOML.format(train=tmp_path / "train.npy", val=tmp_path / "val.npy"))
    return tmp_path, cfg


def test_tiny_run_with_overrides(setup, capsys):
    tmp, cfg = setup
    out = tmp / "run"
    assert main(["train", str(cfg), "--out_dir", str(out), "--max-steps", "3"]) == 0
    assert read_checkpoint(out / "checkpoint.pt")["iteration"] == 3
    said = capsys.readouterr().out
    assert "val loss" in said
    # the run says when it is done (what comes after is the process's exit), and it says
    # "compiling" only of a compiled step (tiny CPU runs are not compiled by default)
    assert re.search(r"done: step 3 \(192 tokens\), \d+\.\d s after the run began", said)
    assert "first step done" in said and "compiling" not in said
    assert re.search(r"out_dir \S+; set up \d+\.\d s after the run began", said), said
    # --resume with a higher max_steps continues the run
    assert main(["train", str(cfg), "--out_dir", str(out), "--max_steps", "5", "--resume"]) == 0
    steps = [r["step"] for r in read_metrics(out / "metrics.jsonl") if "train_loss" in r]
    assert steps == [1, 2, 3, 4, 5]


@pytest.mark.slow
def test_sweep_goes_on_after_a_divergent_run(setup, capsys):
    tmp, cfg = setup
    sweep = tmp / "sweep.toml"
    sweep.write_text(cfg.read_text() + '\n[sweep]\n"optim.lr" = [1e-2, 1e30]\n')
    argv = ["train", str(sweep), "--out_dir", str(tmp / "s"), "--max_steps", "40"]
    assert main([*argv, "--checkpoint_interval", "0", "--eval_interval", "0"]) == 0
    out = capsys.readouterr().out
    assert "run 2/2" in out and "diverged: non-finite" in out and "sweep summary" in out
    assert (tmp / "s" / "optim.lr=0.01" / "checkpoint.pt").exists()
    assert not (tmp / "s" / "optim.lr=1e+30" / "checkpoint.pt").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{tmp}/missing.toml"], "config file not found: .*missing.toml"),
        (["{cfg}", "--data.train_path", "{tmp}/nope.npy"], "token file not found: .*nope.npy"),
        (["{cfg}", "--model.vocab_size", "16"], "contains token id 31, but the model's vocab_size"),
        (["{cfg}", "--data.context_length", "64"], r"data.context_length \(64\) is longer"),
        (["{cfg}", "--optim.lr", "fast"], "optim.lr: expected float, got 'fast'"),
        (["{cfg}", "--model.d_model", "15"], r"d_model \(15\) must be divisible"),
        (["{cfg}", "--resume", "{tmp}/no.pt"], "checkpoint to resume from not found"),
        (["{cfg}", "--device", "not-a-device"], "not-a-device"),
        (["--data.train_path", "x.npy"], "missing config key"),
        (["--resume", "{cfg}"], "put CONFIG first: cs336 train .*tiny.toml --resume"),
    ],
)
def test_bad_input_exits_1_with_a_message_and_writes_nothing(setup, capsys, args, message):
    tmp, cfg = setup
    argv = [a.format(tmp=tmp, cfg=cfg) for a in args]
    assert main(["train", *argv, "--out_dir", str(tmp / "out")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("cs336 train: error: ")
    assert __import__("re").search(message, err), err
    assert not (tmp / "out").exists()


@pytest.mark.parametrize("flag", ["--optim.lrr", "--optim.l", "--bogus"])
def test_unknown_or_abbreviated_flags_are_rejected(setup, capsys, flag):
    tmp, cfg = setup
    with pytest.raises(SystemExit) as e:
        main(["train", str(cfg), flag, "1"])
    assert e.value.code == 2
    assert f"unrecognized arguments: {flag}" in capsys.readouterr().err
    assert not (tmp / "runs").exists()


def test_sigterm_checkpoints_and_exits_143_then_resume_continues(setup):
    tmp, cfg = setup
    out = tmp / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "python")}
    argv = [sys.executable, "-m", "cs336", "train", str(cfg), "--out_dir", str(out)]
    proc = subprocess.Popen(
        [*argv, "--max_steps", "100000", "--eval_interval", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    metrics = out / "metrics.jsonl"
    deadline = time.monotonic() + 100
    while not (metrics.exists() and metrics.stat().st_size) and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=100)
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert "stopped by SIGTERM" in stdout
    step = read_checkpoint(out / "checkpoint.pt")["iteration"]
    assert step >= 1
    rc = main(["train", str(cfg), "--out_dir", str(out), "--resume", "--max_steps", str(step + 2)])
    assert rc == 0
    assert read_checkpoint(out / "checkpoint.pt")["iteration"] == step + 2
