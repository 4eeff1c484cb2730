"""``cs336 eval`` / :func:`cs336.evaluate_file`: the mean loss over a whole file agrees with
the training loop's validation on the same windows and with a slow per-window reference
that counts every token once (the shorter last window included); text files are encoded
on the way; bad input gets a clear error."""

from __future__ import annotations

import math
import os
import re
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import cs336
from cs336 import ModelConfig, TrainConfig, TransformerLM, train
from cs336.cli import main
from cs336.evaluation import evaluate_file, evaluate_tokens
from cs336.training.data import eval_batches
from cs336.training.step import evaluate

CTX = 8
MODEL = dict(vocab_size=64, context_length=CTX, d_model=16, num_layers=2, num_heads=2, d_ff=32)


def tiny_model(**options) -> TransformerLM:
    torch.manual_seed(0)
    return TransformerLM.from_config(ModelConfig(**MODEL, **options)).eval()


def reference_mean_loss(model: TransformerLM, tokens: np.ndarray, ctx: int) -> tuple[float, int]:
    """Windows written out one at a time: ``[s, min(s + ctx, N - 1))`` for s = 0, ctx, ...,
    each predicting the token after each of its positions; float64 log-softmax of the
    model's logits. Checks that every token but the first is predicted exactly once."""
    n = len(tokens)
    ids = torch.as_tensor(np.asarray(tokens, dtype=np.int64))
    predicted: list[int] = []
    total = 0.0
    with torch.no_grad():
        for start in range(0, n - 1, ctx):
            end = min(start + ctx, n - 1)
            logits = model(ids[start:end][None])[0].double()  # (T, V)
            log_probs = logits - torch.logsumexp(logits, dim=-1, keepdim=True)
            targets = ids[start + 1 : end + 1]
            total -= float(log_probs[torch.arange(end - start), targets].sum())
            predicted += range(start + 1, end + 1)
    assert predicted == list(range(1, n))  # each token after the first, once, in order
    return total / len(predicted), len(predicted)


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(2, 70),
    ctx=st.integers(1, CTX),
    batch_size=st.integers(1, 5),
    position=st.sampled_from(["learned", "rope", "none"]),
    seed=st.integers(0, 2**16),
)
def test_every_token_is_counted_once_as_the_reference_counts_it(n, ctx, batch_size, position, seed):
    model = tiny_model(position=position)
    tokens = np.random.default_rng(seed).integers(0, 64, n).astype(np.uint16)
    result = evaluate_tokens(model, tokens, context_length=ctx, batch_size=batch_size)
    loss, count = reference_mean_loss(model, tokens, ctx)
    assert result.tokens == count == n - 1
    assert result.windows == math.ceil((n - 1) / ctx)
    assert result.loss == pytest.approx(loss, rel=1e-5)
    assert result.perplexity == pytest.approx(math.exp(loss), rel=1e-5)


def test_without_a_tail_it_is_exactly_the_loops_validation_sum():
    """The full windows are eval_batches' windows summed by step.evaluate, bit for bit."""
    model = tiny_model()
    tokens = np.random.default_rng(1).integers(0, 64, 5 * CTX + 1).astype(np.uint16)
    total, count = evaluate(model, eval_batches(tokens, 2, CTX, "cpu")).tolist()
    result = evaluate_tokens(model, tokens, batch_size=2)
    assert (result.loss, result.tokens, result.windows) == (total / count, count, 5)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A two-step training run validating on the whole of a validation file of 6 windows
    and a 3-token tail (the loop validates the 6 windows only)."""
    d = tmp_path_factory.mktemp("eval")
    rng = np.random.default_rng(0)
    np.save(d / "train.npy", rng.integers(0, 64, 2000).astype(np.uint16))
    np.save(d / "valid.npy", rng.integers(0, 64, 6 * CTX + 1 + 3).astype(np.uint16))
    cfg = {
        "max_steps": 2,
        "eval_interval": 0,
        "eval_batches": None,  # the whole file
        "progress": False,
        "device": "cpu",
        "out_dir": str(d / "run"),
        "model": MODEL,
        "data": dict(train_path=str(d / "train.npy"), val_path=str(d / "valid.npy"), batch_size=4),
        "optim": dict(warmup_iters=0),
    }
    result = train(TrainConfig.from_dict(cfg))
    return d, result


def test_it_agrees_with_the_training_loops_validation(run):
    d, result = run
    valid = np.load(d / "valid.npy")
    checkpoint = d / "run" / "checkpoint.pt"
    np.save(d / "windows.npy", valid[: 6 * CTX + 1])  # the loop's windows, without the tail
    on_windows = evaluate_file(checkpoint, d / "windows.npy", batch_size=4, device="cpu")
    assert on_windows.loss == result.val_losses[2]  # the same code on the same windows
    assert on_windows.tokens == 6 * CTX
    whole = evaluate_file(checkpoint, d / "valid.npy", batch_size=4, device="cpu")
    model = cs336.generation.load_model(checkpoint)
    assert (whole.tokens, whole.windows) == (6 * CTX + 3, 7)
    assert whole.loss == pytest.approx(reference_mean_loss(model, valid, CTX)[0], rel=1e-5)
    assert cs336.evaluate_file is evaluate_file


def test_a_text_file_is_encoded_on_the_way_and_the_temporary_file_removed(tmp_path, monkeypatch):
    from cs336 import BPETrainer
    from cs336.demo.stories import EOT, write_corpus

    write_corpus(tmp_path / "stories.txt", 30, seed=0)
    tokenizer = BPETrainer(300, special_tokens=[EOT]).train([tmp_path / "stories.txt"])
    tokenizer.save_dir(tmp_path / "tok")
    tokenizer.encode_file(tmp_path / "stories.txt", tmp_path / "stories.npy")
    model = TransformerLM.from_config(ModelConfig(300, 16, 16, 1, 2, 32))
    cs336.save_checkpoint(model, None, 0, tmp_path / "ckpt.pt")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    text = evaluate_file(tmp_path / "ckpt.pt", tmp_path / "stories.txt", tokenizer=tmp_path / "tok")
    ids = evaluate_file(tmp_path / "ckpt.pt", tmp_path / "stories.npy", device="cpu")
    assert text == ids and text.tokens == len(np.load(tmp_path / "stories.npy")) - 1
    assert not os.listdir(scratch)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"context_length": CTX + 1}, r"context_length \(9\) must be in \[1, the model's"),
        ({"context_length": 0}, r"context_length \(0\) must be in"),
        ({"batch_size": 0}, "batch_size must be >= 1, got 0"),
        ({"dtype": "float16"}, "dtype must be one of auto, float32, bfloat16"),
        ({"tokens": np.array([3], dtype=np.uint16)}, "need at least 2 tokens"),
        ({"tokens": np.array([3, 64], dtype=np.uint16)}, "token id 64 is outside the model's"),
        ({"tokens": np.array([3, -2], dtype=np.int32)}, "token ids must be >= 0, got -2"),
    ],
)
def test_bad_arguments(kwargs, message):
    args = {"tokens": np.arange(20, dtype=np.uint16), **kwargs}
    with pytest.raises(ValueError, match=message):
        evaluate_tokens(tiny_model(), **args)


# ---------------------------------------------------------------------------------------------
# cs336 eval


def test_cli_prints_loss_perplexity_and_counts(run, capsys):
    d, _ = run
    argv = ["eval", "--checkpoint", str(d / "run" / "checkpoint.pt")]
    argv += ["--data", str(d / "valid.npy"), "--device", "cpu", "--quiet"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    expected = evaluate_file(d / "run" / "checkpoint.pt", d / "valid.npy", device="cpu")
    assert f"loss        {expected.loss:.6f} (nats per token)" in out
    assert f"perplexity  {expected.perplexity:.4f}" in out
    assert "tokens      51 predicted in 7 windows of 8, the last 3 in a shorter one" in out
    assert main([*argv[:-1], "--context-length", "4", "--batch-size", "3"]) == 0  # a bar
    out, err = capsys.readouterr()
    assert "51 predicted in 13 windows of 4, the last 3 in a shorter one" in out
    assert "eval: 100%" in err and "51.0/51.0" in err


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"--data": "{d}/missing.npy"}, "data file not found: .*missing.npy"),
        ({"--data": "{d}/notes.txt"}, "notes.txt is not a .npy token file: to evaluate it as text"),
        ({"--checkpoint": "{d}/missing.pt"}, "checkpoint not found"),
        ({"--context-length": "9"}, r"context_length \(9\) must be in"),
        ({"--data": "{d}/notes.txt", "--tokenizer": "{d}/nowhere"}, "nowhere"),
    ],
)  # fmt: skip
def test_cli_errors(run, capsys, change, message):
    d, _ = run
    Path(d / "notes.txt").write_text("some text")
    args = {"--checkpoint": str(d / "run" / "checkpoint.pt"), "--data": str(d / "valid.npy")}
    args.update({k: v.format(d=d) for k, v in change.items()})
    argv = ["eval", "--quiet", "--device", "cpu", *[x for kv in args.items() for x in kv]]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("cs336 eval: error:") and re.search(message, err), err
