"""``cs336 tokenize``: encodes a file into a .npy through a tokenizer directory and reports
bytes per token; errors exit with status 1 and leave no output."""

from __future__ import annotations

import pytest

from cs336 import Tokenizer
from cs336.cli import main

np = pytest.importorskip("numpy")
EOT = "<|endoftext|>"


@pytest.fixture
def tokenizer_dir(tmp_path):
    vocab = {i: bytes([i]) for i in range(256)} | {256: b"he", 257: b"hel"}
    Tokenizer(vocab, [(b"h", b"e"), (b"he", b"l")], [EOT]).save_dir(tmp_path / "tok")
    return tmp_path / "tok"


def test_tokenize_writes_the_ids_and_reports(tokenizer_dir, tmp_path, capsys):
    text = f"hello help{EOT}hey"
    (tmp_path / "in.txt").write_text(text, encoding="utf-8")
    out = tmp_path / "ids.npy"
    args = ["tokenize", str(tmp_path / "in.txt"), "--tokenizer", str(tokenizer_dir)]
    assert main([*args, "--out", str(out), "--threads", "2", "--quiet"]) == 0
    ids = np.load(out, mmap_mode="r")
    assert ids.dtype == np.uint16
    assert ids.tolist() == Tokenizer.from_dir(tokenizer_dir).encode(text)
    report = capsys.readouterr().out
    assert f"{len(ids)} tokens (uint16) from {len(text)} bytes" in report
    assert f"{len(text) / len(ids):.3f} bytes/token" in report and f"wrote {out}" in report


def test_tokenize_errors_exit_1_without_output(tokenizer_dir, tmp_path, capsys):
    (tmp_path / "bad.txt").write_bytes(b"ok \xff")
    out = tmp_path / "ids.npy"
    base = ["--out", str(out), "--quiet"]
    assert (
        main(["tokenize", str(tmp_path / "bad.txt"), "--tokenizer", str(tokenizer_dir), *base]) == 1
    )
    assert "offset 3" in capsys.readouterr().err
    assert main(["tokenize", str(tmp_path / "bad.txt"), "--tokenizer", str(tmp_path), *base]) == 1
    assert "vocab.json" in capsys.readouterr().err
    assert not out.exists()
