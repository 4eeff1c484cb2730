"""The demo in a tiny setting: built-in stories or a given corpus -> tokenizer -> tokens ->
a model whose validation loss falls -> a story and a loss plot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cs336.cli import main
from cs336.demo import run_demo, split_corpus
from cs336.demo.stories import EOT, write_corpus
from cs336.tokenizer import Tokenizer

TINY = dict(d_model=32, num_layers=1, num_heads=2, d_ff=64, context_length=64)


def test_demo_on_the_built_in_stories(tmp_path):
    lines = []
    result = run_demo(
        str(tmp_path / "demo"),
        num_stories=300,
        vocab_size=350,
        model=TINY,
        max_steps=16,
        lr=1e-2,
        progress=False,
        log=lines.append,
    )
    losses = list(result.val_losses.values())
    assert losses[-1] < losses[0] - 0.5
    tokenizer = Tokenizer.from_dir(result.tokenizer)
    assert tokenizer.vocab_size == 350 and EOT in tokenizer.special_tokens
    train = np.load(result.tokens[0], mmap_mode="r")
    assert int(train.max()) < 350 and len(train) > 10_000
    assert Path(result.plot).read_bytes()[:4] == b"\x89PNG"
    assert isinstance(result.story, str) and result.story
    assert any("Everything is in" in line for line in lines)


def test_demo_on_a_given_corpus(tmp_path, capsys, monkeypatch):
    import cs336.demo

    monkeypatch.setattr(cs336.demo.pipeline, "DEMO_MODEL", TINY)
    corpus = tmp_path / "corpus.txt"
    write_corpus(corpus, 200, seed=5)
    # the CLI front with the time budget: the number of steps comes from a measured step
    rc = main(
        ["demo", "--out", str(tmp_path / "d"), "--corpus", str(corpus), "--minutes", "0.02",
         "--vocab-size", "300"]
    )  # fmt: skip
    assert rc == 0
    out = capsys.readouterr().out
    assert "val loss" in out and "Once upon a time" in out
    train_text = (tmp_path / "d" / "train.txt").read_text()
    val_text = (tmp_path / "d" / "val.txt").read_text()
    assert train_text + val_text == corpus.read_text()
    assert train_text.endswith(EOT) and val_text.strip()


def test_split_corpus_cuts_after_a_separator(tmp_path):
    src = tmp_path / "c.txt"
    src.write_text("".join(f"doc {i} " * 30 + EOT for i in range(40)))
    split_corpus(str(src), str(tmp_path / "t.txt"), str(tmp_path / "v.txt"), val_fraction=0.1)
    t, v = (tmp_path / "t.txt").read_text(), (tmp_path / "v.txt").read_text()
    assert t + v == src.read_text() and t.endswith(EOT) and v.startswith("doc ")
    assert 0 < len(v) < 0.15 * len(t + v)


def test_bad_corpus(tmp_path, capsys):
    (tmp_path / "plain.txt").write_text("no separators here " * 100)
    with pytest.raises(ValueError, match="has no <|endoftext|>"):
        split_corpus(str(tmp_path / "plain.txt"), str(tmp_path / "a"), str(tmp_path / "b"))
    assert main(["demo", "--out", str(tmp_path / "d"), "--corpus", str(tmp_path / "no.txt")]) == 1
    assert "corpus not found" in capsys.readouterr().err
    with pytest.raises(ValueError, match="minutes must be > 0"):
        run_demo(str(tmp_path / "d"), minutes=0)
