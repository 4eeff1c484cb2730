"""What the 2026 edition's runs need from the loop: training to a wall-clock budget with the
schedule following the clock, the AdamW order from the config, samples during training and
the best checkpoint kept beside the latest (the schedules themselves: test_schedule.py)."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch
from test_training import make_config

from cs336 import AdamW, Tokenizer
from cs336.training import train
from cs336.training.budget import TimeBudget, parse_duration
from cs336.training.checkpoint import read_checkpoint
from cs336.training.metrics import read_metrics
from cs336.training.session import Session
from cs336.training.step import build_model, build_optimizer

# -- the budget ------------------------------------------------------------------------------


def test_durations_parse_and_bad_ones_are_named():
    assert [parse_duration(v) for v in ("45m", "2h", "1h30m", "90s", "90", 600)] == [
        2700.0, 7200.0, 5400.0, 90.0, 90.0, 600.0,
    ]  # fmt: skip
    for bad in ("", "soon", "-5m", 0, "45x"):
        with pytest.raises(ValueError, match="time_budget"):
            parse_duration(bad)


def test_a_config_with_a_bad_time_budget_is_refused(tmp_path):
    with pytest.raises(ValueError, match="time_budget must be a duration .* got 'whenever'"):
        make_config(tmp_path, time_budget="whenever")


def test_the_budget_keeps_room_for_the_longest_validation_and_checkpoint():
    budget = TimeBudget(100.0, checkpoint_guess=4.0)
    assert budget.training_end() == 100.0 - 1.25 * 4.0  # no step, validation, checkpoint yet
    budget.note("first step", 9.0)  # compiled: it stands for steps only until one is noted
    assert budget.training_end() == 100.0 - 1.25 * 4.0 - 27.0
    budget.note("validation", 2.0)
    budget.note("validation", 1.0)  # the longest one counts
    budget.note("checkpoint", 3.0)
    for seconds in (0.9, 0.8, 0.5, 0.5, 0.5, 0.5):  # the slowest of the latest five counts
        budget.note("step", seconds)
    assert budget.training_end() == pytest.approx(100.0 - 1.25 * 5.0 - 3 * 0.8)
    assert not budget.spent(91.3) and budget.spent(91.35)
    fresh = TimeBudget(100.0, checkpoint_guess=1.0, validation_steps=10)
    fresh.note("step", 0.2)  # before any validation: 10 steps' worth
    assert fresh.training_end() == pytest.approx(100.0 - 1.25 * (2.0 + 1.0) - 0.6)


def test_a_timed_run_ends_inside_its_budget_and_resumes_only_with_more(tmp_path):
    """On the real clock (however loaded the machine): the run stops in time to validate
    and save inside its budget; a resume refuses to go past it, or continues on the same
    clock when the budget is raised."""
    import torch._dynamo  # noqa: F401  (torch.optim imports it once: seconds not ours to time)

    budget = 4.0
    cfg = make_config(tmp_path, max_steps=100_000, time_budget=f"{budget}s", eval_interval=0,
                      checkpoint_interval=0)  # fmt: skip
    began = time.perf_counter()
    result = train(cfg)
    assert time.perf_counter() - began <= budget + 1.5  # + returning from train(), + load
    assert result.stopped == "completed" and 0 < result.step < 100_000
    assert list(result.val_losses) == [result.step]  # validated at the end
    saved = read_checkpoint(tmp_path / "run" / "checkpoint.pt")["extra"]["train_state"]
    assert saved["elapsed"] <= budget and saved["out_of_time"] == budget
    with pytest.raises(ValueError, match="has used its time budget"):
        train(cfg, resume="auto")
    more = make_config(tmp_path, max_steps=100_000, time_budget=f"{budget + 2}s",
                       eval_interval=0, checkpoint_interval=0)  # fmt: skip
    assert train(more, resume="auto").step > result.step
    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert budget < records[-1]["time"] <= budget + 2


def test_the_schedule_follows_the_clock_to_the_end_of_the_budget(tmp_path, monkeypatch):
    """On a clock that advances 1 ms at every reading (the same run on any machine): warmup
    by steps, the peak, then a cosine over the clock that is annealed when training stops
    to leave room for the last validation and checkpoint."""
    ticks = iter(range(10**9))
    monkeypatch.setattr(time, "perf_counter", lambda: next(ticks) * 1e-3)
    cfg = make_config(
        tmp_path, max_steps=100_000, time_budget="1s", eval_interval=0, checkpoint_interval=0,
        log_interval=1, **{"optim.min_lr": 1e-4},
    )  # fmt: skip
    result = train(cfg)
    steps = [r for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if "train_loss" in r]
    assert 50 < result.step == len(steps)
    assert steps[-1]["time"] <= 1.0
    lrs = [r["lr"] for r in steps]
    warmup = cfg.optim.warmup_iters
    assert lrs[:warmup] == [i / warmup * cfg.optim.lr for i in range(warmup)]
    assert lrs[warmup] == pytest.approx(cfg.optim.lr, rel=0.01)  # the peak after warmup
    assert all(a >= b for a, b in zip(lrs[warmup:], lrs[warmup + 1 :], strict=False))
    assert lrs[-1] < cfg.optim.min_lr + 0.05 * (cfg.optim.lr - cfg.optim.min_lr)  # annealed


def test_a_budget_that_cannot_hold_the_schedule_still_stops_in_time(tmp_path, monkeypatch):
    """A budget shorter than warmup (on the 1 ms-a-reading clock): training stops when the
    clock runs out, whatever the step, and the run still validates and saves in time."""
    ticks = iter(range(10**9))
    monkeypatch.setattr(time, "perf_counter", lambda: next(ticks) * 1e-3)
    cfg = make_config(tmp_path, max_steps=100_000, time_budget="0.5s", eval_interval=0,
                      **{"optim.warmup_iters": 50_000})  # fmt: skip
    result = train(cfg)
    assert 0 < result.step < 50_000 and list(result.val_losses) == [result.step]
    saved = read_checkpoint(tmp_path / "run" / "checkpoint.pt")["extra"]["train_state"]
    assert saved["warmup_end"] is None and saved["elapsed"] <= 0.5


# -- the optimizer's order, best checkpoint, samples --------------------------------------------


@pytest.mark.parametrize("decay", ["after", "before"])
def test_the_configs_decay_order_reaches_adamw(tmp_path, decay):
    cfg = make_config(tmp_path, **{"optim.decay": decay})
    model = build_model(cfg, torch.device("cpu"))
    opt = build_optimizer(cfg, model, torch.device("cpu"))
    assert isinstance(opt, AdamW)
    assert {g["decay"] for g in opt.param_groups} == {decay}


def test_keep_best_keeps_the_checkpoint_of_the_lowest_validation_loss(tmp_path, monkeypatch):
    scripted = iter([9.0, 5.0, 3.0, 2.5, 6.0, 7.0])  # validations at steps 0, 2, 4, ... 10
    monkeypatch.setattr(Session, "_validate", lambda self: next(scripted))
    cfg = make_config(tmp_path, max_steps=10, eval_interval=2, keep_best=True)
    train(cfg)
    best = json.loads((tmp_path / "run" / "best.json").read_text())
    assert best["iteration"] == 6 and best["val_loss"] == 2.5
    assert read_checkpoint(tmp_path / "run" / "best.pt")["iteration"] == 6
    assert read_checkpoint(tmp_path / "run" / "checkpoint.pt")["iteration"] == 10
    # resumed, the best so far is remembered: worse losses do not replace best.pt ...
    scripted = iter([4.0, 3.0])  # steps 12 and 14
    monkeypatch.setattr(Session, "_validate", lambda self: next(scripted))
    train(make_config(tmp_path, max_steps=14, eval_interval=2, keep_best=True), resume="auto")
    assert json.loads((tmp_path / "run" / "best.json").read_text())["iteration"] == 6
    # ... and a better one does
    scripted = iter([2.0])  # step 16
    monkeypatch.setattr(Session, "_validate", lambda self: next(scripted))
    train(make_config(tmp_path, max_steps=16, eval_interval=2, keep_best=True), resume="auto")
    assert json.loads((tmp_path / "run" / "best.json").read_text())["iteration"] == 16


def _bytes_tokenizer(directory) -> None:
    vocab = {i: bytes([i]) for i in range(256)}
    vocab[256] = b"<|endoftext|>"
    Tokenizer(vocab, [], ["<|endoftext|>"]).save_dir(directory)


def test_samples_are_printed_and_logged_every_sample_interval_steps(tmp_path, capsys):
    np.save(tmp_path / "train.npy", np.frombuffer(b"abcab " * 400, np.uint8).astype(np.uint16))
    np.save(tmp_path / "val.npy", np.frombuffer(b"abcab " * 40, np.uint8).astype(np.uint16))
    _bytes_tokenizer(tmp_path / "tokenizer")  # beside train.npy: found without data.tokenizer
    cfg = make_config(tmp_path, max_steps=6, sample_interval=3, sample_prompt="ab",
                      **{"model.vocab_size": 257})  # fmt: skip
    train(cfg)
    samples = [r for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if "sample" in r]
    assert [r["step"] for r in samples] == [3, 6]
    assert all(r["sample"].startswith("ab") and len(r["sample"]) > 2 for r in samples)
    out = capsys.readouterr().out
    assert "step 3: sample (temperature 0.8, top-p 0.95):\n    ab" in out
    # the same run draws the same samples (seeded by the run's seed and the step)
    train(make_config(tmp_path, max_steps=6, sample_interval=3, sample_prompt="ab",
                      out_dir=str(tmp_path / "again"), **{"model.vocab_size": 257}))  # fmt: skip
    again = [r for r in read_metrics(tmp_path / "again" / "metrics.jsonl") if "sample" in r]
    assert [r["sample"] for r in again] == [r["sample"] for r in samples]


def test_samples_without_a_tokenizer_fail_before_any_work(tmp_path):
    cfg = make_config(tmp_path, sample_interval=2)
    with pytest.raises(ValueError, match="sample_interval = 2 needs the tokenizer"):
        train(cfg)
    assert not (tmp_path / "run").exists()
    _bytes_tokenizer(tmp_path / "tokenizer")  # 257 tokens for a 32-token model
    with pytest.raises(ValueError, match="did not make these token files"):
        train(cfg)
