"""Identical ids to tiktoken: GPT-2 on every shared corpus and on generated text, and an
Encoding built from a vocabulary our own trainer produced. The tiktoken Encodings are built
here from the files (no network, no cache directory)."""

from __future__ import annotations

import pytest
from conftest import corpora
from hypothesis import example, given
from hypothesis import strategies as st

from cs336 import GPT2_PATTERN, Tokenizer, train_bpe
from cs336.tokenizer import gpt2_format

tiktoken = pytest.importorskip("tiktoken")

EOT = "<|endoftext|>"
CORPORA = [
    "tinystories/tinystories.txt",
    "web/web_mix_valid.txt",
    "books/gutenberg.txt",
    "multilingual/multilingual_mix.txt",
    "samples/corpus.en",
    "samples/tinystories_sample.txt",
    "samples/address.txt",
    "samples/german.txt",
]
# Whitespace and line breaks that pretokenizers get wrong: vertical tab, form feed, NEL,
# line and paragraph separators, no-break and other Unicode spaces.
SPACES = ["\x0b", "\x0c", "\x85", "\u2028", "\u2029", "\xa0", "\u3000", "\u200b", "\ufeff"]
PIECES = st.sampled_from(
    [" ", "  ", "\n", "\n\n", "\r\n", "\t", "a", "Hello", "'s", "'ll", "'", "1", "23", "!", "é"]
    + ["日本", "🙂", "\u0301", EOT, "<|", "endoftext", *SPACES]
)
TEXT = st.lists(PIECES, max_size=40).map("".join)


def tiktoken_of(vocab: dict[int, bytes], specials: dict[str, int]):
    """A ``tiktoken.Encoding`` with ranks = token ids (as GPT-2's and our layout are)."""
    ranks = {token: i for i, token in vocab.items() if i not in specials.values()}
    return tiktoken.Encoding(
        "test", pat_str=GPT2_PATTERN, mergeable_ranks=ranks, special_tokens=specials
    )


@pytest.fixture(scope="module")
def gpt2(shared_data):
    vocab_path, merges_path = shared_data("gpt2/vocab.json"), shared_data("gpt2/merges.txt")
    vocab = gpt2_format.read_vocab(vocab_path)
    return Tokenizer.from_files(vocab_path, merges_path, [EOT]), tiktoken_of(vocab, {EOT: 50256})


def assert_same(tok, enc, text):
    ours, theirs = tok.encode(text), enc.encode(text, allowed_special="all")
    if ours != theirs:
        pairs = enumerate(zip(ours, theirs, strict=False))
        i = next((i for i, (a, b) in pairs if a != b), min(len(ours), len(theirs)))
        window = enc.decode(theirs[max(0, i - 3) : i + 3])
        pytest.fail(f"ids differ at position {i} near {window!r}")


@pytest.mark.parametrize("corpus", corpora(CORPORA))
def test_gpt2_parity_on_shared_corpora(gpt2, shared_data, corpus):
    text = shared_data(corpus).read_text(encoding="utf-8")
    assert_same(*gpt2, text)


def test_gpt2_parity_on_a_sample_of_web_train(gpt2, shared_data):
    with open(shared_data("web/web_mix_train.txt"), encoding="utf-8") as f:
        f.seek(10_000_000)
        f.readline()  # start at a line boundary
        text = f.read(4_000_000)
    assert_same(*gpt2, text)


@given(text=TEXT)
@example(text="\x0b\x0c\x85\u2028 \xa0 a\n\n b  \r\n  ")
@example(text="   ")
@example(text="a \n\n")
def test_gpt2_parity_on_generated_text(gpt2, text):
    assert_same(*gpt2, text)


@given(text=st.text(st.characters(exclude_categories=["Cs"]), max_size=60))
def test_gpt2_parity_on_any_unicode(gpt2, text):
    assert_same(*gpt2, text)


@given(word=st.text(st.sampled_from("abcdeé1 '"), min_size=60, max_size=400))
def test_gpt2_parity_on_long_pretokens(gpt2, word):
    assert_same(*gpt2, word)


@pytest.fixture(scope="module")
def ours(shared_data):
    """A tokenizer our trainer produced, and the tiktoken Encoding of its files."""
    vocab, merges = train_bpe(shared_data("multilingual/multilingual_mix.txt"), 2000, [EOT])
    tok = Tokenizer(vocab, merges, [EOT])
    return tok, tiktoken_of(vocab, tok.special_token_ids)


@pytest.mark.parametrize(
    "corpus", corpora(["multilingual/multilingual_mix.txt", "tinystories/tinystories.txt"])
)
def test_trained_vocab_parity_on_corpora(ours, shared_data, corpus):
    assert_same(*ours, shared_data(corpus).read_text(encoding="utf-8"))


@given(text=TEXT)
def test_trained_vocab_parity_on_generated_text(ours, text):
    assert_same(*ours, text)
