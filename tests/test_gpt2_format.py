"""GPT-2's file format: OpenAI's files load unchanged, what we save loads back
identically, tokenizer directories, malformed files."""

from __future__ import annotations

import json

import pytest

from cs336 import GPT2_PATTERN, Tokenizer, train_bpe
from cs336.tokenizer import gpt2_format

EOT = "<|endoftext|>"


def test_byte_table_is_a_bijection_onto_printable_chars():
    table = gpt2_format.bytes_to_unicode()
    assert sorted(table) == list(range(256))
    assert len(set(table.values())) == 256
    assert all(c.isprintable() and not c.isspace() for c in table.values())
    assert gpt2_format.encode_token(b" the\n") == "ĠtheĊ"
    assert gpt2_format.decode_token("ĠtheĊ") == b" the\n"


def test_gpt2_files_load_unchanged(shared_data):
    vocab_path, merges_path = shared_data("gpt2/vocab.json"), shared_data("gpt2/merges.txt")
    tok = Tokenizer.from_files(vocab_path, merges_path, [EOT])
    assert tok.vocab_size == 50257 and len(tok.merges) == 50000
    assert tok.vocab[50256] == EOT.encode() and tok.merges[0] == (b" ", b"t")
    raw = json.loads(vocab_path.read_text(encoding="utf-8"))
    assert {gpt2_format.encode_token(t): i for i, t in tok.vocab.items()} == raw


def test_save_and_reload_is_identical(shared_data, tmp_path):
    tok = Tokenizer.from_files(
        shared_data("gpt2/vocab.json"), shared_data("gpt2/merges.txt"), [EOT]
    )
    tok.save(tmp_path / "vocab.json", tmp_path / "merges.txt")
    assert (tmp_path / "merges.txt").read_text(encoding="utf-8").startswith("#version: 0.2\n")
    back = Tokenizer.from_files(tmp_path / "vocab.json", tmp_path / "merges.txt", [EOT])
    assert (back.vocab, back.merges, back.special_tokens) == (
        tok.vocab,
        tok.merges,
        tok.special_tokens,
    )
    # Merges are the same lines as OpenAI's file (the vocabulary JSON escapes differ).
    assert (tmp_path / "merges.txt").read_text(encoding="utf-8").splitlines() == (
        shared_data("gpt2/merges.txt").read_text(encoding="utf-8").splitlines()
    )


def test_trained_tokenizer_round_trips_through_a_directory(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(
        f"hello world, héllo wörld 日本語 \x00\x01 ctrl{EOT}hello again" * 20, encoding="utf-8"
    )
    vocab, merges = train_bpe(corpus, 300, [EOT, "<pad>"])
    tok = Tokenizer(vocab, merges, [EOT, "<pad>"])
    directory = tok.save_dir(tmp_path / "tok")
    back = Tokenizer.from_dir(directory)
    assert (back.vocab, back.merges, back.special_tokens) == (vocab, merges, [EOT, "<pad>"])
    text = corpus.read_text(encoding="utf-8")
    assert back.encode(text) == tok.encode(text)
    assert back.pattern == GPT2_PATTERN and not (directory / "pattern.txt").exists()


def test_a_custom_pattern_round_trips_exactly_through_a_directory(tmp_path):
    vocab = {i: bytes([i]) for i in range(256)}
    pattern = "\n+|[^\n]+(?=\n)|[^\n]+\r\n"  # real newlines: saved byte for byte
    directory = gpt2_format.write_dir(tmp_path, vocab, [], [EOT], pattern)
    assert (directory / "pattern.txt").read_bytes() == pattern.encode()
    assert gpt2_format.read_dir(directory) == (vocab, [], [EOT], pattern)
    # Saving GPT-2's pattern again removes the stale file.
    gpt2_format.write_dir(tmp_path, vocab, [], [EOT])
    assert not (directory / "pattern.txt").exists()
    assert gpt2_format.read_dir(directory)[3] == GPT2_PATTERN


def test_a_folder_with_gpt2s_two_files_is_a_tokenizer_directory(shared_data, tmp_path):
    for name in ("vocab.json", "merges.txt"):
        (tmp_path / name).write_bytes(shared_data(f"gpt2/{name}").read_bytes())
    tok = Tokenizer.from_dir(tmp_path)
    assert tok.special_tokens == [] and tok.encode("Hello world") == [15496, 995]


def test_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        Tokenizer.from_dir(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError):
        Tokenizer.from_files(tmp_path / "vocab.json", tmp_path / "merges.txt")


@pytest.mark.parametrize(
    ("vocab_text", "merges_text", "message"),
    [
        ("[1, 2]", "", "expected a JSON object"),
        ("{not json", "", "not valid JSON"),
        ('{"a": "x"}', "", "not an integer"),
        ('{"a": 0, "b": 0}', "", "id 0 is given to two tokens"),
        ('{" ": 0}', "", "not in GPT-2's byte-to-unicode table"),
        (None, "#version: 0.2\na b c\n", r"merges.txt:2: expected two tokens"),
        (None, "a \n", r"merges.txt:1: expected two tokens"),
    ],
)
def test_malformed_files_name_the_problem(tmp_path, vocab_text, merges_text, message):
    if vocab_text is None:
        gpt2_format.write_vocab(tmp_path / "vocab.json", {i: bytes([i]) for i in range(256)})
    else:
        (tmp_path / "vocab.json").write_text(vocab_text, encoding="utf-8")
    (tmp_path / "merges.txt").write_text(merges_text, encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        Tokenizer.from_files(tmp_path / "vocab.json", tmp_path / "merges.txt")


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("vocab.json", b'{"a": \xff}', r"vocab.json is not UTF-8 text \(invalid byte at offset 6"),
        ("merges.txt", b"\xff\xfe", r"merges.txt is not UTF-8 text \(invalid byte at offset 0\)"),
        ("special_tokens.json", b'["\xc3"]', r"special_tokens.json is not UTF-8 text"),
        ("pattern.txt", b"\xff", r"pattern.txt is not UTF-8 text"),
        ("pattern.txt", b"", r"pattern.txt is empty: remove it for GPT-2's pattern"),
    ],
)
def test_unreadable_files_of_a_folder_are_named(tmp_path, name, content, message):
    """A file that is not UTF-8 (or an empty pattern.txt) is an error naming that file."""
    Tokenizer({i: bytes([i]) for i in range(256)}, [], ["<|endoftext|>"]).save_dir(tmp_path)
    (tmp_path / name).write_bytes(content)
    with pytest.raises(ValueError, match=message):
        Tokenizer.from_dir(tmp_path)


def test_windows_line_ends_in_merges_load_as_the_same_merges(tmp_path):
    tok = train_bpe_tokenizer(tmp_path)
    merges = tmp_path / "t" / "merges.txt"
    merges.write_bytes(merges.read_bytes().replace(b"\n", b"\r\n"))
    assert Tokenizer.from_dir(tmp_path / "t").encode("the cat") == tok.encode("the cat")


def train_bpe_tokenizer(tmp_path):
    (tmp_path / "c.txt").write_text("the cat sat on the mat. " * 50, encoding="utf-8")
    vocab, merges = train_bpe(tmp_path / "c.txt", 280)
    tok = Tokenizer(vocab, merges)
    tok.save_dir(tmp_path / "t")
    return tok
