"""Ctrl-C at any moment of any command, start-up included: exit status 130, one line
saying what stopped, no traceback, never an abort, and no partial output (nothing, or the
complete result). Each case is a real `python -m cs336` process sent SIGINT by this one.

The signal is sent a set time after the process has put in its first handler (the one
cs336/__init__.py installs before importing anything else; seen in /proc as SIGTERM being
caught, which Python alone does not do), so that no case depends on how fast a loaded
machine starts Python itself."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cs336 import Tokenizer

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/PID/status"),
]


def handler_installed(pid: int) -> bool:
    """Whether process ``pid`` catches SIGTERM (cs336's first handler is in)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True  # it has ended: nothing to wait for
    caught = int(next(line for line in status.splitlines() if line.startswith("SigCgt:"))[7:], 16)
    return bool(caught >> (signal.SIGTERM - 1) & 1)


def interrupt(
    args: list, delay: float, cwd: Path, until: str | None = None, env: dict | None = None
) -> tuple:
    """Start ``cs336 ARGS`` in ``cwd`` (with ``env`` added to the environment), send SIGINT
    ``delay`` s after its handler is in (or after stdout shows ``until``); (exit status,
    stdout, stderr)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "python"), "PYTHONUNBUFFERED": "1", **(env or {})}
    proc = subprocess.Popen(
        [sys.executable, "-m", "cs336", *map(str, args)],
        cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not handler_installed(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.002)
    seen = ""
    if until is not None:
        assert proc.stdout is not None
        while until not in seen and proc.poll() is None:
            seen += proc.stdout.readline()
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=300)
    return proc.returncode, seen + out, err


def assert_one_line_stop(code: int, err: str, command: str) -> None:
    assert "Traceback" not in err and "terminate called" not in err, err
    assert code == 130, (code, err)
    assert err.strip().splitlines()[-1].startswith(f"cs336 {command}: interrupted"), err


def hidden(folder: Path) -> list[str]:
    return [str(p) for p in folder.rglob(".*")]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    """Inputs for every command: a corpus (20 MB of random words), a tokenizer, a run folder
    (checkpoint and metrics) and its Hugging Face export, token files, a training config."""
    from cs336.export import to_hf
    from cs336.nn.model import ModelConfig, TransformerLM
    from cs336.training.checkpoint import save_checkpoint

    d = tmp_path_factory.mktemp("interrupt")
    table = bytes(32 if i % 7 == 0 else 97 + i % 26 for i in range(256))
    rng = np.random.default_rng(0)
    words = rng.integers(0, 256, 20 << 20, dtype=np.uint8).tobytes().translate(table)
    (d / "big.txt").write_bytes(words)
    Tokenizer({i: bytes([i]) for i in range(256)}, [], ["<|endoftext|>"]).save_dir(d / "tok")
    cfg = ModelConfig.preset(
        "cs336-2025", vocab_size=257, context_length=64, d_model=32, num_layers=1, num_heads=2
    )
    model = TransformerLM.from_config(cfg)
    save_checkpoint(model, None, 0, d / "run" / "checkpoint.pt")
    record = {"step": 1, "time": 0.1, "train_loss": 5.0}
    (d / "run" / "metrics.jsonl").write_text(json.dumps(record) + "\n")
    to_hf(model, d / "hf")
    np.save(d / "t.npy", rng.integers(0, 64, 5000).astype(np.uint16))
    config = {
        "max_steps": 100000, "eval_interval": 0, "progress": False, "out_dir": "run",
        "model": dict(vocab_size=64, context_length=16, d_model=32, num_layers=1, num_heads=2,
                      d_ff=64),
        "data": {"train_path": str(d / "t.npy"), "val_path": str(d / "t.npy"), "batch_size": 4},
        "optim": {"warmup_iters": 0},
    }  # fmt: skip
    (d / "c.json").write_text(json.dumps(config))
    return d


@pytest.mark.parametrize("delay", [0.0, 0.05, 0.3, 1.0, 2.0])
def test_train_at_start_up(files, tmp_path, delay):
    """Imports of torch (and its compilers), reading the token files, building the model:
    the process ends at once with one line and no run folder, or, once it trains, stops
    after a step with a checkpoint."""
    code, out, err = interrupt(["train", files / "c.json"], delay, tmp_path)
    assert "Traceback" not in err and "terminate called" not in err, err
    assert code == 130, (code, err)
    if "stopped by SIGINT" in out:  # it was training: a complete run folder
        assert (tmp_path / "run" / "checkpoint.pt").is_file()
    else:
        assert err.strip().splitlines()[-1].startswith("cs336 train: interrupted"), err
        assert not (tmp_path / "run" / "checkpoint.pt").exists()
    assert not hidden(tmp_path)


@pytest.mark.parametrize(
    "args",
    [
        ["generate", "--checkpoint", "{d}/run", "--tokenizer", "{d}/tok"],
        ["export-hf", "--checkpoint", "{d}/run", "--tokenizer", "{d}/tok", "--out", "hf"],
        ["import-hf", "{d}/hf", "--out", "x.pt"],
        ["plot", "{d}/run", "--out", "x.png"],
        ["accounting", "--preset", "gpt2-xl"],
        ["train-bpe", "{d}/big.txt", "--vocab-size", "300", "--out", "t"],
        ["tokenize", "{d}/big.txt", "--tokenizer", "{d}/tok", "--out", "x.npy"],
    ],
)
def test_every_command_at_start_up(files, tmp_path, args):
    """Valid inputs, so that no command is done (or fails) before the signal comes."""
    code, _, err = interrupt([a.replace("{d}", str(files)) for a in args], 0.02, tmp_path)
    assert_one_line_stop(code, err, args[0])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("delay", [0.3, 0.8])
def test_tokenize_leaves_nothing_or_the_whole_array(files, tmp_path, delay):
    out = tmp_path / "ids.npy"
    code, _, err = interrupt(
        ["tokenize", files / "big.txt", "--tokenizer", files / "tok", "--out", out], delay, tmp_path
    )
    if code == 0:  # it finished first
        assert len(np.load(out, mmap_mode="r")) > 0
    else:
        assert_one_line_stop(code, err, "tokenize")
        assert not out.exists()
    assert not hidden(tmp_path)


@pytest.mark.parametrize("delay", [0.3, 1.5])
def test_train_bpe_leaves_no_folder(files, tmp_path, delay):
    args = ["train-bpe", files / "big.txt", "--vocab-size", "20000", "--out", tmp_path / "tok"]
    code, _, err = interrupt(args, delay, tmp_path)
    assert_one_line_stop(code, err, "train-bpe")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("delay", [1.5, 3.0])
def test_eval_of_text_leaves_no_temporary_token_file(files, tmp_path, delay):
    """Text is encoded to a temporary .npy before it is evaluated: a stop while it is
    encoded or evaluated removes it."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    args = ["eval", "--checkpoint", files / "run", "--data", files / "big.txt",
            "--tokenizer", files / "tok", "--context-length", "64", "--device", "cpu"]  # fmt: skip
    code, _, err = interrupt(args, delay, tmp_path, env={"TMPDIR": str(temp)})
    assert_one_line_stop(code, err, "eval")
    assert list(temp.iterdir()) == []


@pytest.mark.parametrize("step", ["[2/5]", "[4/5]"])
def test_the_demo_leaves_nothing(tmp_path, step):
    args = ["demo", "--out", "d", "--stories", "2000", "--vocab-size", "300", "--minutes", "0.2"]
    code, out, err = interrupt(args, 0.3, tmp_path, until=step)
    assert_one_line_stop(code, err, "demo")
    assert list(tmp_path.iterdir()) == []
