"""The Rust trainer (``cs336.train_bpe`` / ``BPETrainer``) against the pure-Python reference,
on random corpora, and every kind of bad input."""

from __future__ import annotations

import signal
import tempfile
import threading
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cs336 import BPETrainer, Tokenizer, train_bpe
from cs336.tokenizer import reference as ref

EOT = "<|endoftext|>"

# Pieces chosen to make ties, repeats, contractions, digits, multi-byte characters and
# whitespace runs likely; special tokens appear as pieces too, sometimes back to back.
PIECES = [
    "a", "b", "ab", "ba", "the", " ", "  ", "\n", "\n\n", "\t", "é", "日本", "🙂", "!", "?!",
    "1", "42", "'s", "'ll", "x", "ℵ", "д", "<", "|", "<s>", EOT, "中文", "，", "Привет",
]  # fmt: skip
SPECIAL_SETS = [[], [EOT], ["<s>"], ["<s>", "<s><s>", EOT]]

texts = st.lists(st.sampled_from(PIECES), max_size=80).map("".join)


def write(directory: Path, text: str, name: str = "corpus.txt") -> Path:
    path = directory / name
    path.write_bytes(text.encode("utf-8"))
    return path


@given(
    text=texts,
    specials=st.sampled_from(SPECIAL_SETS),
    extra=st.integers(0, 60),
    threads=st.sampled_from([None, 1, 2, 3]),
)
def test_equals_reference(text, specials, extra, threads):
    vocab_size = 256 + len(specials) + extra
    with tempfile.TemporaryDirectory() as tmp:
        got = train_bpe(write(Path(tmp), text), vocab_size, specials, num_threads=threads)
    assert got == ref.train(text, vocab_size, specials)


@given(
    text=texts,
    specials=st.sampled_from(SPECIAL_SETS),
    chunk=st.integers(1, 40),
    block=st.integers(1, 64),
)
def test_chunks_and_blocks_do_not_matter(text, specials, chunk, block):
    vocab_size = 256 + len(specials) + 40
    expected = ref.train(text, vocab_size, specials)
    trainer = BPETrainer(vocab_size, specials, num_threads=2)
    with tempfile.TemporaryDirectory() as tmp:
        path = write(Path(tmp), text)
        assert trainer.train_raw(path, _chunk_size=chunk, _block_size=block) == expected
    assert trainer.train_raw_from_iterator([text], _chunk_size=chunk) == expected


@given(docs=st.lists(texts, max_size=6), specials=st.sampled_from(SPECIAL_SETS))
def test_iterator_and_files_equal_reference(docs, specials):
    vocab_size = 256 + len(specials) + 30
    expected = ref.train(docs, vocab_size, specials)
    trainer = BPETrainer(vocab_size, specials)
    assert trainer.train_raw_from_iterator(iter(docs)) == expected
    if not docs:
        return  # no files: a ValueError (test_no_paths)
    # Several files: each is its own document, as each string of the iterator.
    with tempfile.TemporaryDirectory() as tmp:
        paths = [write(Path(tmp), d, f"doc{i}.txt") for i, d in enumerate(docs)]
        assert trainer.train_raw(paths) == expected


@given(text=texts, extra=st.integers(0, 30))
def test_custom_pattern_equals_reference(text, extra):
    pattern = r"\S+|\s+"
    vocab_size = 257 + extra
    expected = ref.train(text, vocab_size, [EOT], pattern=pattern)
    trainer = BPETrainer(vocab_size, [EOT], pattern=pattern)
    assert trainer.train_raw_from_iterator([text], _chunk_size=3) == expected


def test_id_layout(tmp_path):
    vocab, merges = train_bpe(write(tmp_path, "aaa bbb" + EOT + "ab"), 260, [EOT, "<pad>"])
    assert [vocab[i] for i in range(256)] == [bytes([i]) for i in range(256)]
    assert [vocab[256 + i] for i in range(len(merges))] == [a + b for a, b in merges]
    assert vocab[258] == EOT.encode() and vocab[259] == b"<pad>"
    assert len(vocab) == 260


def test_empty_corpus(tmp_path):
    vocab, merges = train_bpe(write(tmp_path, ""), 1000, [EOT])
    assert merges == []
    assert vocab == {**{i: bytes([i]) for i in range(256)}, 256: EOT.encode()}
    assert BPETrainer(300).train_raw_from_iterator([]) == ({i: bytes([i]) for i in range(256)}, [])


def test_trainer_accepts_one_path_or_a_list(tmp_path):
    path = write(tmp_path, "hello hello")
    trainer = BPETrainer(260)
    assert trainer.train_raw(path) == trainer.train_raw([str(path)])


def test_tinystories_prefix_matches_reference(shared_data):
    text = shared_data("tinystories/tinystories.txt").read_text(encoding="utf-8")
    prefix = text[: text.index(EOT, 30_000) + len(EOT)]
    expected = ref.train(prefix, 256 + 1 + 150, [EOT])
    with tempfile.TemporaryDirectory() as tmp:
        got = train_bpe(write(Path(tmp), prefix), 256 + 1 + 150, [EOT])
    assert got == expected
    assert len(got[1]) == 150


# ---- bad input -------------------------------------------------------------------------


def test_missing_file(tmp_path):
    missing = tmp_path / "nope.txt"
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        train_bpe(missing, 300)
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        BPETrainer(300).train_raw([write(tmp_path, "ok"), missing])


def test_no_paths():
    with pytest.raises(ValueError, match="no input files"):
        BPETrainer(300).train_raw([])


def test_directory_as_path(tmp_path):
    with pytest.raises(IsADirectoryError, match=str(tmp_path.name)):
        train_bpe(tmp_path, 300)


@pytest.mark.parametrize("vocab_size", [0, 255, 256])
def test_vocab_too_small(tmp_path, vocab_size):
    with pytest.raises(ValueError, match=rf"vocab_size \({vocab_size}\) must be at least 257"):
        train_bpe(write(tmp_path, "abc"), vocab_size, [EOT])


def test_vocab_size_too_large():
    with pytest.raises(ValueError, match=r"vocab_size \(4294967297\) is too large"):
        BPETrainer(2**32 + 1)


@pytest.mark.parametrize("vocab_size", [300.0, "300", None, True])
def test_vocab_size_type(vocab_size):
    with pytest.raises(TypeError, match="vocab_size must be an int"):
        BPETrainer(vocab_size)


def test_bad_special_tokens():
    with pytest.raises(ValueError, match="empty"):
        BPETrainer(300, [""])
    with pytest.raises(ValueError, match="'<s>' is given more than once"):
        BPETrainer(300, ["<s>", EOT, "<s>"])
    with pytest.raises(TypeError, match="special tokens must be str, got b'<s>'"):
        BPETrainer(300, [b"<s>"])
    with pytest.raises(TypeError, match="not a single str"):
        BPETrainer(300, EOT)


@pytest.mark.parametrize("threads", [0, -1, 1.5])
def test_bad_num_threads(threads):
    with pytest.raises(ValueError, match="num_threads"):
        BPETrainer(300, num_threads=threads)


def test_bad_pattern(tmp_path):
    with pytest.raises(ValueError, match=r'bad pretokenization pattern "\(unclosed"'):
        train_bpe(write(tmp_path, "abc"), 300, pattern="(unclosed")


def test_an_empty_pattern_is_refused_not_trained_to_nothing():
    """An empty regex matches no text: training would learn no merge, encoding would
    return no token, and neither would say why."""
    with pytest.raises(ValueError, match="pattern is empty"):
        BPETrainer(300, pattern="")
    with pytest.raises(ValueError, match="pattern is empty"):
        Tokenizer({i: bytes([i]) for i in range(256)}, [], pattern="")


@pytest.mark.parametrize("prefix_len", [0, 3, 100, 5000])
def test_invalid_utf8_names_the_offset(tmp_path, prefix_len):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"a" * prefix_len + b"\xff tail")
    with pytest.raises(UnicodeError, match=rf"bad.txt.*offset {prefix_len}\b") as info:
        BPETrainer(300, [EOT]).train_raw(path, _block_size=64)
    assert isinstance(info.value, ValueError)


def test_truncated_utf8_at_end_of_file(tmp_path):
    path = tmp_path / "cut.txt"
    path.write_bytes("ab é".encode()[:-1])
    with pytest.raises(UnicodeError, match="offset 3"):
        train_bpe(path, 300)


def test_non_str_item_in_iterator():
    with pytest.raises(TypeError, match="expects str items, got bytes"):
        BPETrainer(300).train_raw_from_iterator(["ok", b"bytes"])


def test_iterator_errors_propagate():
    def texts():
        yield "abc"
        raise RuntimeError("broken source")

    with pytest.raises(RuntimeError, match="broken source"):
        BPETrainer(300).train_raw_from_iterator(texts())


def test_ctrl_c_while_pulling_from_an_iterator():
    def texts():
        yield "abc " * 1000
        signal.raise_signal(signal.SIGINT)
        while True:
            yield "more text "

    assert threading.current_thread() is threading.main_thread()
    with pytest.raises(KeyboardInterrupt):
        BPETrainer(300).train_raw_from_iterator(texts())


def test_trainer_returns_a_tokenizer(tmp_path):
    from cs336 import Tokenizer

    text = f"the cat sat on the mat{EOT}the dog sat on the log{EOT}" * 3
    trainer = BPETrainer(290, [EOT])
    vocab, merges = ref.train(text, 290, [EOT])
    for tokenizer in (
        trainer.train(write(tmp_path, text)),
        trainer.train_from_iterator([text]),
    ):
        assert isinstance(tokenizer, Tokenizer)
        sample = f"the cat sat{EOT}on a log"
        assert tokenizer.encode(sample) == ref.encode(sample, vocab, merges, [EOT])
        assert tokenizer.decode(tokenizer.encode(sample)) == sample


def test_trainer_returns_a_tokenizer_with_its_pattern(tmp_path):
    text = f"the cat sat on the mat{EOT}the dog sat on the log{EOT}" * 3
    pattern = r" ?[a-z]+(?= )|\S+|\s+"
    trainer = BPETrainer(290, [EOT], pattern=pattern)
    vocab, merges = ref.train(text, 290, [EOT], pattern=pattern)
    sample = f"the cat sat{EOT}on a log  the"
    for tokenizer in (
        trainer.train(write(tmp_path, text)),
        trainer.train_from_iterator([text]),
    ):
        assert tokenizer.pattern == pattern
        assert tokenizer.encode(sample) == ref.encode(sample, vocab, merges, [EOT], pattern)


def test_ctrl_c_while_training_on_a_file(tmp_path):
    # SIGALRM's handler raises KeyboardInterrupt as Ctrl-C would; Rust polls for signals
    # between blocks (4 KB here), so the run stops soon after the alarm, with the
    # handler's own exception (its message, not the core's).
    path = write(tmp_path, "some words to count again and again " * 200_000)

    def interrupt(signum, frame):
        raise KeyboardInterrupt("from the handler")

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        trainer = BPETrainer(5000)
        signal.setitimer(signal.ITIMER_REAL, 0.01)
        with pytest.raises(KeyboardInterrupt, match="^from the handler$"):
            trainer.train_raw(path, _block_size=4096)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@given(
    text=texts,
    specials=st.sampled_from(SPECIAL_SETS),
    extra=st.integers(0, 40),
    max_len=st.integers(1, 6),
    chunk=st.sampled_from([1, 7, 1 << 20]),
)
def test_max_token_length_equals_reference(text, specials, extra, max_len, chunk):
    vocab_size = 256 + len(specials) + extra
    trainer = BPETrainer(vocab_size, specials, max_token_length=max_len)
    with tempfile.TemporaryDirectory() as tmp:
        got = trainer.train_raw(write(Path(tmp), text), _chunk_size=chunk, _block_size=chunk)
    expected = ref.train(text, vocab_size, specials, max_token_length=max_len)
    assert got == expected
    assert all(len(a + b) <= max_len for a, b in got[1])
    assert trainer.train_raw_from_iterator([text])[1] == expected[1]


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "3"])
def test_bad_max_token_length(bad):
    with pytest.raises(ValueError, match="max_token_length"):
        BPETrainer(300, max_token_length=bad)


@given(
    words=st.lists(
        st.tuples(st.text("acgt", min_size=50, max_size=700), st.integers(1, 3)),
        min_size=1,
        max_size=3,
    )
)
def test_long_words_equal_reference(words):
    # Pretokens longer than the trainer's blocks of symbols, merged across block edges.
    docs = [w for w, n in words for _ in range(n)]
    assert BPETrainer(256 + 80).train_raw_from_iterator(docs) == ref.train(docs, 256 + 80)


def test_training_a_huge_pretoken_is_not_quadratic(tmp_path):
    # One 2 MB pretoken: merging rescans only the blocks that hold each pair.
    import random

    rng = random.Random(0)
    path = write(tmp_path, "".join(rng.choices("acgt", k=2_000_000)))
    vocab, merges = train_bpe(path, 256 + 1000)
    assert len(merges) == 1000
