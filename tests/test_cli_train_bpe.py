"""``cs336 train-bpe``: trains, saves loadable GPT-2 files, reports; errors leave no files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import cs336
from cs336 import GPT2_PATTERN, Tokenizer
from cs336.cli import main
from cs336.tokenizer import reference as ref
from cs336.tokenizer.gpt2_format import read_dir

EOT = "<|endoftext|>"
CORPUS = f"the cat sat on the mat{EOT}the dog sat on the log{EOT}" * 5


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text(CORPUS, encoding="utf-8")
    return path


def test_train_save_and_load_back(corpus, tmp_path, capfd):
    out = tmp_path / "tok"
    rc = main(
        ["train-bpe", str(corpus), "--vocab-size", "270", "--special-token", EOT]
        + ["--out", str(out), "--quiet"]
    )
    assert rc == 0
    vocab, merges, specials, pattern = read_dir(out)
    assert (vocab, merges) == ref.train(CORPUS, 270, [EOT])
    assert specials == [EOT]
    assert pattern == GPT2_PATTERN and not (out / "pattern.txt").exists()
    stdout, stderr = capfd.readouterr()
    assert "peak memory" in stdout and f"vocab size {len(vocab)}" in stdout
    assert f"{len(merges)} merges" in stdout
    longest = max((a + b for a, b in merges), key=len)
    assert f"({len(longest)} bytes)" in stdout
    assert str(out / "merges.txt") in stdout
    assert stderr == ""  # --quiet: no progress lines (and the vocabulary was reached)


def test_custom_pattern_is_saved(corpus, tmp_path, capfd):
    out = tmp_path / "tok"
    pattern = r"\S+(?=\s)|\S+|\s+"
    args = ["train-bpe", str(corpus), "--vocab-size", "280", "--special-token", EOT]
    assert main([*args, "--pattern", pattern, "--out", str(out), "--quiet"]) == 0
    assert (out / "pattern.txt").read_text(encoding="utf-8") == pattern
    assert str(out / "pattern.txt") in capfd.readouterr().out
    vocab, merges = ref.train(CORPUS, 280, [EOT], pattern=pattern)
    tok = Tokenizer.from_dir(out)
    assert tok.pattern == pattern
    text = f"the cat{EOT} sat  on\n the mat"
    assert tok.encode(text) == ref.encode(text, vocab, merges, [EOT], pattern)


def test_max_token_length(corpus, tmp_path, capfd):
    out = tmp_path / "tok"
    args = ["train-bpe", str(corpus), "--vocab-size", "300", "--special-token", EOT]
    assert main([*args, "--max-token-length", "3", "--out", str(out), "--quiet"]) == 0
    vocab, merges, _, _ = read_dir(out)
    assert (vocab, merges) == ref.train(CORPUS, 300, [EOT], max_token_length=3)
    assert max(len(a + b) for a, b in merges) == 3
    assert "(3 bytes)" in capfd.readouterr().out


def test_several_inputs_and_progress(corpus, tmp_path, capfd):
    other = tmp_path / "other.txt"
    other.write_text("zebra zebra", encoding="utf-8")
    out = tmp_path / "tok"
    assert (
        main(["train-bpe", str(corpus), str(other), "--vocab-size", "300", "--out", str(out)]) == 0
    )
    _, merges, _, _ = read_dir(out)
    assert merges == ref.train([CORPUS, "zebra zebra"], 300)[1]
    assert "[train-bpe" in capfd.readouterr().err


def test_subprocess(corpus, tmp_path):
    out = tmp_path / "tok"
    package_root = str(Path(cs336.__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": package_root}
    args = [sys.executable, "-m", "cs336", "train-bpe", str(corpus), "--vocab-size", "270"]
    ok = subprocess.run(
        [*args, "--special-token", EOT, "--out", str(out), "--threads", "2"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert ok.returncode == 0, ok.stderr
    assert "longest learned token" in ok.stdout
    assert read_dir(out)[0][269] == EOT.encode()

    bad = tmp_path / "bad"
    failed = subprocess.run(
        [*args, "--special-token", EOT, "--special-token", EOT, "--out", str(bad)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert failed.returncode == 1
    assert "given more than once" in failed.stderr
    assert not bad.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--vocab-size", "100"], "must be at least 257"),
        (["--vocab-size", "300", "--threads", "0"], "num_threads"),
        (["--vocab-size", "300", "--pattern", "(x"], "bad pretokenization pattern"),
        (["--vocab-size", "300", "--special-token", ""], "empty"),
    ],
)
def test_errors_exit_non_zero_without_output(corpus, tmp_path, capfd, args, message):
    out = tmp_path / "tok"
    assert main(["train-bpe", str(corpus), "--special-token", EOT, *args, "--out", str(out)]) == 1
    assert message in capfd.readouterr().err
    assert not out.exists()


def test_out_is_required(corpus):
    with pytest.raises(SystemExit) as exc:
        main(["train-bpe", str(corpus), "--vocab-size", "300"])
    assert exc.value.code == 2


def test_missing_and_invalid_inputs(tmp_path, capfd):
    out = tmp_path / "tok"
    assert (
        main(["train-bpe", str(tmp_path / "nope.txt"), "--vocab-size", "300", "--out", str(out)])
        == 1
    )
    assert "nope.txt" in capfd.readouterr().err
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"abc\x80")
    assert main(["train-bpe", str(bad), "--vocab-size", "300", "--out", str(out)]) == 1
    assert "offset 3" in capfd.readouterr().err
    assert not out.exists()
