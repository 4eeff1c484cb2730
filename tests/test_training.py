"""The training loop on the CPU: a tiny run end to end, exact resume, the non-finite stop,
signals, and every bad input."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import threading
import time

import numpy as np
import pytest
import torch

from cs336 import TrainConfig, train
from cs336.training import NonFiniteLossError
from cs336.training.checkpoint import read_checkpoint
from cs336.training.config import apply_overrides
from cs336.training.metrics import read_metrics


def write_tokens(tmp_path, vocab=32):
    """A fixed 48-token loop repeated: learnable in a few steps."""
    loop = np.random.default_rng(0).integers(0, vocab, 48)
    np.save(tmp_path / "train.npy", np.tile(loop, 200).astype(np.uint16))
    np.save(tmp_path / "val.npy", np.tile(loop, 20).astype(np.uint16))


def make_config(tmp_path, **overrides) -> TrainConfig:
    if not (tmp_path / "train.npy").exists():
        write_tokens(tmp_path)
    d = {
        "max_steps": 8,
        "eval_interval": 4,
        "eval_batches": 2,
        "log_interval": 1,
        "checkpoint_interval": 4,
        "out_dir": str(tmp_path / "run"),
        "progress": False,
        "model": dict(
            vocab_size=32, context_length=16, d_model=32, num_layers=2, num_heads=2, d_ff=64
        ),
        "data": dict(
            train_path=str(tmp_path / "train.npy"), val_path=str(tmp_path / "val.npy"), batch_size=8
        ),
        "optim": dict(lr=1e-2, min_lr=1e-3, warmup_iters=2),
    }
    return TrainConfig.from_dict(apply_overrides(d, overrides))


def test_a_tiny_run_learns_and_writes_everything(tmp_path):
    cfg = make_config(tmp_path, max_steps=20, eval_interval=10)
    result = train(cfg)
    assert result.stopped == "completed" and result.step == 20
    assert sorted(result.val_losses) == [0, 10, 20]
    assert result.val_losses[20] < result.val_losses[0] - 1.0
    assert result.train_losses[20] < result.train_losses[1] - 1.0
    run = tmp_path / "run"
    assert {p.name for p in run.iterdir()} == {
        "checkpoint.pt",
        "checkpoint.json",
        "config.json",
        "metrics.jsonl",
    }
    assert TrainConfig.from_dict(json.loads((run / "config.json").read_text())) == cfg
    records = read_metrics(run / "metrics.jsonl")
    train_records = [r for r in records if "train_loss" in r]
    assert [r["step"] for r in train_records] == list(range(1, 21))
    keys = {"step", "tokens", "time", "train_loss", "lr", "grad_norm", "tokens_per_s", "mfu"}
    assert set(train_records[0]) == keys
    assert train_records[-1]["tokens"] == 20 * 8 * 16
    assert train_records[0]["lr"] == 0.0 and train_records[2]["lr"] == pytest.approx(1e-2)
    assert all(r["tokens_per_s"] > 0 and r["mfu"] is None for r in train_records)
    times = [r["time"] for r in records]
    assert times == sorted(times)
    assert [r["step"] for r in records if "val_loss" in r] == [0, 10, 20]
    payload = read_checkpoint(run / "checkpoint.pt")
    assert payload["iteration"] == 20
    assert payload["extra"]["train_state"]["tokens_seen"] == 20 * 8 * 16
    meta = json.loads((run / "checkpoint.json").read_text())
    assert meta["iteration"] == 20 and meta["val_loss"] == result.val_losses[20]


def test_resume_reproduces_the_straight_run_exactly(tmp_path):
    # dropout on: the RNG states must be restored too
    over = {"model.residual_pdrop": 0.1, "model.attn_pdrop": 0.1, "optim.cosine_cycle_iters": 8}
    straight = train(make_config(tmp_path, out_dir=str(tmp_path / "a"), **over))
    first = train(make_config(tmp_path, out_dir=str(tmp_path / "b"), max_steps=4, **over))
    second = train(make_config(tmp_path, out_dir=str(tmp_path / "b"), **over), resume="auto")
    assert list(first.train_losses) == [1, 2, 3, 4] and list(second.train_losses) == [5, 6, 7, 8]
    assert {**first.train_losses, **second.train_losses} == straight.train_losses
    assert second.val_losses[8] == straight.val_losses[8]
    a = read_checkpoint(tmp_path / "a" / "checkpoint.pt")["model"]
    b = read_checkpoint(tmp_path / "b" / "checkpoint.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    # the resumed run's metrics continue the first one's
    steps = [r["step"] for r in read_metrics(tmp_path / "b" / "metrics.jsonl") if "train_loss" in r]
    assert steps == list(range(1, 9))


def test_resume_drops_metrics_written_after_the_checkpoint(tmp_path):
    cfg = make_config(tmp_path, max_steps=6, checkpoint_interval=4, eval_interval=0)
    train(cfg)
    # pretend the run crashed after step 6 with its last checkpoint at step 4
    run = tmp_path / "run"
    state = read_checkpoint(run / "checkpoint.pt")
    assert state["iteration"] == 6
    train(make_config(tmp_path, out_dir=str(tmp_path / "r4"), max_steps=4, eval_interval=0))
    os.replace(tmp_path / "r4" / "checkpoint.pt", run / "checkpoint.pt")
    result = train(make_config(tmp_path, max_steps=6, eval_interval=0), resume="auto")
    assert list(result.train_losses) == [5, 6]
    records = read_metrics(run / "metrics.jsonl")
    assert [r["step"] for r in records if "train_loss" in r] == [1, 2, 3, 4, 5, 6]
    assert [r["step"] for r in records if "val_loss" in r] == [6]  # the first run's is gone


def test_eval_interval_zero_validates_once_at_the_end(tmp_path):
    result = train(make_config(tmp_path, max_steps=6, eval_interval=0, checkpoint_interval=0))
    assert list(result.val_losses) == [6]
    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in records if "val_loss" in r] == [6]
    assert (
        json.loads((tmp_path / "run" / "checkpoint.json").read_text())["val_loss"]
        == (result.val_losses[6])
    )


def test_resume_accepts_another_attention_kernel_but_not_another_model(tmp_path):
    """The kernel changes how the weights are used, not what they are."""
    cycle = {"optim.cosine_cycle_iters": 8}
    train(make_config(tmp_path, max_steps=2, eval_interval=0, **cycle))
    fused = {"model.kernels": "fused", **cycle}
    assert list(train(make_config(tmp_path, max_steps=3, **fused), resume="auto").train_losses) == [
        3
    ]
    wider = make_config(tmp_path, max_steps=4, **{"model.d_ff": 128, **fused})
    with pytest.raises(ValueError, match=r"different model \(d_ff: 64 vs 128\)"):
        train(wider, resume="auto")


def test_gradient_accumulation_matches_one_big_batch(tmp_path):
    a = train(make_config(tmp_path, out_dir=str(tmp_path / "a"), max_steps=4))
    b = train(
        make_config(
            tmp_path, out_dir=str(tmp_path / "b"), max_steps=4, **{"data.grad_accum_steps": 4}
        )
    )
    np.testing.assert_allclose(
        list(a.train_losses.values()), list(b.train_losses.values()), rtol=1e-5
    )


def test_non_finite_loss_stops_the_run_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    import cs336.nn.model as model

    calls = {"n": 0}
    real = model.chunked_cross_entropy  # the default kernels' loss

    def poisoned(logits, targets):
        calls["n"] += 1
        loss = real(logits, targets)
        return loss * float("nan") if calls["n"] == 6 else loss

    monkeypatch.setattr(model, "chunked_cross_entropy", poisoned)
    cfg = make_config(tmp_path, max_steps=10, eval_interval=0, log_interval=3)
    with pytest.raises(
        NonFiniteLossError, match=r"non-finite loss \(loss nan.* at step 6: its update was skipped"
    ) as e:
        train(cfg)
    assert "checkpoint.pt (step 4)" in str(e.value)
    assert read_checkpoint(tmp_path / "run" / "checkpoint.pt")["iteration"] == 4


def test_non_finite_gradient_with_a_finite_loss_stops_the_run_too(tmp_path, monkeypatch):
    """The gradient-norm half of the guard: one inf gradient entry, a finite loss."""
    import cs336.training.step as step

    calls = {"n": 0}
    real = step.clip_grad_norm

    def poisoning(params, max_norm):
        params = list(params)
        calls["n"] += 1
        if calls["n"] == 3:
            params[0].grad[0, 0] = float("inf")
        return real(params, max_norm)

    monkeypatch.setattr(step, "clip_grad_norm", poisoning)
    cfg = make_config(tmp_path, max_steps=10, eval_interval=0, checkpoint_interval=2)
    with pytest.raises(NonFiniteLossError, match=r"non-finite gradient norm .* at step 3:") as e:
        train(cfg)
    assert "checkpoint.pt (step 2)" in str(e.value)
    assert read_checkpoint(tmp_path / "run" / "checkpoint.pt")["iteration"] == 2


def test_non_finite_loss_before_any_checkpoint_says_so(tmp_path):
    # a huge learning rate really diverges: the weights overflow within a few steps
    cfg = make_config(tmp_path, checkpoint_interval=0, **{"optim.lr": 1e30, "max_steps": 50})
    with pytest.raises(NonFiniteLossError, match="no checkpoint was written yet"):
        train(cfg)
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_sigint_stops_cleanly_with_a_checkpoint(tmp_path):
    cfg = make_config(tmp_path, max_steps=100_000, eval_interval=0, checkpoint_interval=0)
    metrics = tmp_path / "run" / "metrics.jsonl"

    def interrupt():
        while not (metrics.exists() and metrics.stat().st_size):
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGINT)

    thread = threading.Thread(target=interrupt)
    thread.start()
    result = train(cfg)
    thread.join()
    assert result.stopped == "SIGINT" and 1 <= result.step < 100_000
    assert read_checkpoint(tmp_path / "run" / "checkpoint.pt")["iteration"] == result.step
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@pytest.mark.parametrize(
    ("mutate", "error", "message"),
    [
        (lambda p: np.save(p / "train.npy", np.array([1, 2, 40] * 20, np.uint16)), ValueError,
         r"train.npy contains token id 40, but the model's vocab_size is 32"),
        (lambda p: np.save(p / "val.npy", np.arange(10, dtype=np.uint16)), ValueError,
         r"val.npy has 10 tokens; a context of 16 needs at least 17"),
        (lambda p: os.remove(p / "val.npy"), FileNotFoundError, r"token file not found: .*val.npy"),
    ],
)  # fmt: skip
def test_bad_token_files(tmp_path, mutate, error, message):
    write_tokens(tmp_path)
    mutate(tmp_path)
    with pytest.raises(error, match=message):
        train(make_config(tmp_path))
    assert not (tmp_path / "run").exists()


def test_existing_runs_and_resume_paths(tmp_path):
    train(make_config(tmp_path, max_steps=3, eval_interval=0))
    with pytest.raises(ValueError, match="already holds a run .* pass --resume"):
        train(make_config(tmp_path, max_steps=4))
    with pytest.raises(ValueError, match="at step 3, which is not below max_steps \\(3\\)"):
        train(make_config(tmp_path, max_steps=3), resume="auto")
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        train(make_config(tmp_path, out_dir=str(tmp_path / "x")), resume=str(tmp_path / "nope.pt"))
    with pytest.raises(ValueError, match=r"different model \(d_model: 32 vs 64\)"):
        train(make_config(tmp_path, max_steps=4, **{"model.d_model": 64}), resume="auto")
    from cs336 import save_checkpoint
    from cs336.nn.model import TransformerLM

    cfg = make_config(tmp_path, out_dir=str(tmp_path / "plain"))
    model = TransformerLM.from_config(cfg.model)
    save_checkpoint(model, torch.optim.SGD(model.parameters(), lr=0.1), 1, tmp_path / "plain.pt")
    with pytest.raises(ValueError, match="holds no training state"):
        train(cfg, resume=str(tmp_path / "plain.pt"))
    # auto with nothing to resume starts fresh
    result = train(make_config(tmp_path, out_dir=str(tmp_path / "y"), max_steps=3), resume="auto")
    assert list(result.train_losses) == [1, 2, 3]


@pytest.mark.parametrize("sink", ["tensorboard", "wandb_project"])
def test_missing_logging_packages_give_a_clear_error(tmp_path, sink):
    module = "torch.utils.tensorboard" if sink == "tensorboard" else "wandb"
    try:
        __import__(module)
    except ImportError:
        pass
    else:
        pytest.skip(f"{module} is installed")
    value = "true" if sink == "tensorboard" else "demo"
    with pytest.raises(RuntimeError, match=f"needs the {module.split('.')[-1]} package"):
        train(make_config(tmp_path, **{sink: value}))
    assert not (tmp_path / "run").exists()


def test_bad_device_is_torchs_error(tmp_path):
    with pytest.raises(RuntimeError, match="not-a-device"):
        train(make_config(tmp_path, device="not-a-device"))


def test_records_reach_weights_and_biases_and_tensorboard(tmp_path, monkeypatch):
    """Fake wandb and tensorboard modules stand in for the real packages (no network)."""
    import importlib.machinery
    import sys
    import types

    logged: dict[str, list] = {"wandb": [], "tb": []}

    class Run:
        def log(self, data, step):
            logged["wandb"].append((step, data))

        def finish(self):
            logged["wandb"].append("finished")

    class SummaryWriter:
        def __init__(self, log_dir):
            assert log_dir.endswith("tensorboard")

        def add_scalar(self, key, value, step):
            logged["tb"].append((key, value, step))

        def close(self):
            logged["tb"].append("closed")

    wandb = types.ModuleType("wandb")
    wandb.__spec__ = importlib.machinery.ModuleSpec("wandb", None)
    wandb.init = lambda **kwargs: Run()
    tensorboard = types.ModuleType("tensorboard")
    tensorboard.__spec__ = importlib.machinery.ModuleSpec("tensorboard", None)
    writer = types.ModuleType("torch.utils.tensorboard")
    writer.SummaryWriter = SummaryWriter
    monkeypatch.setitem(sys.modules, "wandb", wandb)
    monkeypatch.setitem(sys.modules, "tensorboard", tensorboard)
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", writer)

    train(make_config(tmp_path, max_steps=3, wandb_project="p", tensorboard=True))
    assert logged["wandb"][-1] == "finished" and logged["tb"][-1] == "closed"
    steps = [step for step, data in logged["wandb"][:-1] if "train_loss" in data]
    assert steps == [1, 2, 3]
    assert ("train_loss", pytest.approx(logged["wandb"][1][1]["train_loss"]), 1) in logged["tb"]


def test_bf16_autocast_path_runs_on_the_cpu(tmp_path):
    """The CUDA default (bf16 autocast) also works when asked for on the CPU, and stays
    close to float32."""
    fp32 = train(make_config(tmp_path, out_dir=str(tmp_path / "a"), max_steps=3))
    bf16 = train(make_config(tmp_path, out_dir=str(tmp_path / "b"), max_steps=3, dtype="bfloat16"))
    a, b = list(fp32.train_losses.values()), list(bf16.train_losses.values())
    assert a != b  # really computed in bf16
    np.testing.assert_allclose(a, b, rtol=0.03)


def test_compile_path_trains_and_saves_the_unwrapped_model(tmp_path, monkeypatch):
    """--compile true: torch.compile (here with the eager backend: no C++ toolchain needed)
    gives the same losses, and the checkpoint has plain parameter names."""
    calls = []
    real = torch.compile

    def eager_compile(model, **kwargs):
        calls.append(model)
        return real(model, **{**kwargs, "backend": "eager"})

    monkeypatch.setattr(torch, "compile", eager_compile)
    plain = train(make_config(tmp_path, out_dir=str(tmp_path / "a"), max_steps=3))
    compiled = train(make_config(tmp_path, out_dir=str(tmp_path / "b"), max_steps=3, compile=True))
    # AdamW's two updates (multi-tensor, flat), each block (one compiled code for all) and
    # the head with the loss
    expected = ["function", "function", *["TransformerBlock"] * 2, "method"]
    assert [type(c).__name__ for c in calls] == expected
    np.testing.assert_allclose(
        list(plain.train_losses.values()), list(compiled.train_losses.values()), rtol=1e-5
    )
    keys = read_checkpoint(tmp_path / "b" / "checkpoint.pt")["model"].keys()
    assert not any("_orig_mod" in k for k in keys)


def test_a_failing_compile_warns_and_trains_without_it(tmp_path, monkeypatch):
    """compile = true where compiling fails (here: a backend that raises): a warning,
    then the same run as without compiling."""

    def broken_compile(model, **kwargs):
        def fail(*args, **kw):
            raise RuntimeError("no C++ compiler for this backend")

        return fail

    monkeypatch.setattr(torch, "compile", broken_compile)
    plain = train(make_config(tmp_path, out_dir=str(tmp_path / "a"), max_steps=3))
    with pytest.warns(RuntimeWarning, match="torch.compile of the training step failed .*C\\+\\+"):
        tried = train(make_config(tmp_path, out_dir=str(tmp_path / "b"), max_steps=3, compile=True))
    assert tried.train_losses == plain.train_losses


def test_torch_adamw_impl_trains_like_ours(tmp_path):
    """optim.impl = torch: torch.optim.AdamW (fused), the same schedule and groups; its
    formula differs from the handout's only in where eps and the decay sit."""
    ours = train(make_config(tmp_path, out_dir=str(tmp_path / "a"), max_steps=5))
    torch_run = train(
        make_config(tmp_path, out_dir=str(tmp_path / "b"), max_steps=5, **{"optim.impl": "torch"})
    )
    np.testing.assert_allclose(
        list(torch_run.train_losses.values()), list(ours.train_losses.values()), rtol=1e-3
    )


def test_compile_auto_compiles_on_cuda_and_for_long_cpu_runs():
    from cs336.training.step import compile_enabled

    cfg = TrainConfig.from_dict(
        {
            "model": dict(
                vocab_size=8, context_length=4, d_model=8, num_layers=1, num_heads=2, d_ff=8
            ),
            "data": dict(train_path="t.npy", val_path="v.npy"),
        }
    )
    assert cfg.compile == "auto"
    assert compile_enabled(cfg, torch.device("cuda")) is True
    assert compile_enabled(cfg, torch.device("cpu")) is False
    assert compile_enabled(dataclasses.replace(cfg, compile=True), torch.device("cpu")) is True
    assert compile_enabled(dataclasses.replace(cfg, compile=False), torch.device("cuda")) is False
    # the CPU shape: 5,000 steps are ~55 minutes uncompiled; 150 steps 100 s
    shape = dict(vocab_size=4096, context_length=128, d_model=192, num_layers=4, num_heads=6)
    long = TrainConfig.from_dict(
        {
            "model": {**shape, "d_ff": 768},
            "data": dict(train_path="t.npy", val_path="v.npy", batch_size=16),
            "max_steps": 5000,
        }
    )
    assert compile_enabled(long, torch.device("cpu")) is True
    assert compile_enabled(dataclasses.replace(long, max_steps=150), torch.device("cpu")) is False
