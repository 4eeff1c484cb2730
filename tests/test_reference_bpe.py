"""The pure-Python reference trainer and encoder against hand-worked examples."""

from __future__ import annotations

from collections import Counter

import pytest

from cs336.tokenizer import reference as ref

# The CS336 handout's worked example (section 2.4): its pretokenization splits on whitespace.
HANDOUT = (
    "low low low low low lower lower widest widest widest newest newest newest newest newest newest"
)
EOT = "<|endoftext|>"


def names(merges: list[tuple[bytes, bytes]]) -> list[str]:
    return [f"{a.decode()} {b.decode()}" for a, b in merges]


def test_handout_example_whitespace_pretokens():
    vocab, merges = ref.train(HANDOUT, 256 + 1 + 12, [EOT], pattern=r"\S+")
    assert names(merges) == [
        "s t", "e st", "o w", "l ow", "w est", "n e",
        "ne west", "w i", "wi d", "wid est", "low e", "lowe r",
    ]  # fmt: skip
    assert vocab[256] == b"st"
    assert vocab[267] == b"lower"
    assert vocab[268] == EOT.encode()
    assert len(vocab) == 269


def test_handout_example_gpt2_pretokens():
    # GPT-2 pretokens keep the leading space (" low", " newest"), so after the first six
    # merges the whole words with a space win.
    _, merges = ref.train(HANDOUT, 256 + 1 + 12, [EOT])
    assert names(merges) == [
        "s t", "e st", "o w", "l ow", "w est", "n e",
        "ne west", "  newest", "  low", "w i", "wi d", "wid est",
    ]  # fmt: skip


def test_special_tokens_are_boundaries_and_not_counted():
    # "b<s>c": the pair (b, c) never forms across the special token.
    words = ref.count_words(["ab<s>cd<s>"], ["<s>"])
    assert words == Counter({(b"a", b"b"): 1, (b"c", b"d"): 1})
    _, merges = ref.train("b<s>c " * 3, 300, ["<s>"])
    assert (b"b", b"c") not in merges
    assert all(b"<" not in a + b for a, b in merges)


def test_longest_special_token_wins():
    pieces = list(ref.split_on_special_tokens("x<s><s>y<s>", ["<s>", "<s><s>"]))
    assert pieces == ["x", 1, "y", 0]


def test_ties_go_to_the_greater_pair():
    words = Counter({(b"a", b"b"): 1, (b"c", b"d"): 1, (b"b", b"a"): 1})
    assert ref.train_from_counts(words, 257)[1] == [(b"c", b"d")]
    # (bytes, bytes) comparison: after "a a", (b"aa", b"c") ties with (b"b", b"c") and
    # loses, though its token id is larger.
    words = Counter({(b"a", b"a"): 10, (b"a", b"a", b"c"): 1, (b"b", b"c"): 1})
    assert ref.train_from_counts(words, 258)[1] == [(b"a", b"a"), (b"b", b"c")]


def test_stops_when_no_pair_is_left():
    vocab, merges = ref.train("ab", 1000)
    assert merges == [(b"a", b"b")]
    assert len(vocab) == 257


def test_empty_corpus():
    vocab, merges = ref.train("", 300, [EOT])
    assert merges == []
    assert vocab == {**{i: bytes([i]) for i in range(256)}, 256: EOT.encode()}


def test_vocab_too_small():
    with pytest.raises(ValueError, match="vocab_size"):
        ref.train("abc", 256, [EOT])


def test_encode_applies_merges_by_rank():
    vocab, merges = ref.train(HANDOUT, 256 + 1 + 12, [EOT], pattern=r"\S+")
    ids = ref.encode("newest lowest" + EOT, vocab, merges, [EOT], pattern=r"\S+")
    assert [vocab[i] for i in ids] == [b"newest", b"low", b"est", EOT.encode()]
    # Unknown bytes fall back to single-byte tokens.
    assert ref.encode("é", vocab, merges) == list("é".encode())
