"""The hand-written GPT-2 scanner against fancy-regex (the same pattern, the same Unicode
tables) on tricky random text and on every shared corpus, and against Python's ``regex``
module where both know the characters."""

from __future__ import annotations

import functools

import pytest
import regex
from conftest import corpora
from hypothesis import given
from hypothesis import strategies as st

from cs336._core import GPT2_PATTERN, count_pretokens, pretokenize

# Characters that exercise each alternative of the pattern and each whitespace rule:
# contraction letters, digits (ASCII, superscript, Arabic-Indic, vulgar fraction), the
# White_Space characters that are not U+0020, U+001C and U+001F (not White_Space, though
# Python's str.isspace() says they are), U+200B (not White_Space either), combining marks
# (\p{M}: neither letter nor number), CJK, emoji and punctuation.
TRICKY = (
    "aZsdmtlvre'S'LV 09²٣½"
    "\t\n\r\x0b\x0c\x85\xa0\u1680\u2028\u2029\u3000\u205f"
    "\x1c\x1f\u200b\x00"
    "\u0301\u0308\u20dd"
    '漢字ひら😀👍🏽.,!?-_"“”’'
)
tricky_text = st.text(alphabet=st.sampled_from(TRICKY), max_size=80)
# Words and whitespace runs glued together, so long runs and every join are common (the
# scanner reads ASCII letters and digits eight bytes at a time, and words that mix ASCII and
# other letters leave that fast path mid-run).
pieces = st.sampled_from(
    ["'s", "'ll", "'ve", "'re", "'d", "'m", "'t", "'", " ", "  ", "\n", "\r\n", "\t", "word"]
    + ["Word", "42", " 7", "!!", "\u00a0", "\u3000", "\u0085", "e\u0301", "東京", "😀"]
    + ["naïve", "Straße", "résumé2024", "abcdefghijklmnop", "0123456789", "Привет"]
)
glued_text = st.lists(pieces, max_size=30).map("".join)
any_text = tricky_text | glued_text | st.text()


@given(any_text)
def test_scanner_equals_fancy_regex(text: str) -> None:
    pretokens = pretokenize(text)
    assert pretokens == pretokenize(text, scanner=False)
    # Every character is a letter, a number, whitespace or none of those, so the matches
    # cover the text.
    assert "".join(pretokens) == text
    assert count_pretokens(text) == len(pretokens)


@functools.cache
def unicode_disagreements() -> frozenset[str]:
    """The characters that Python's ``regex`` module classes differently from fancy-regex
    for ``\\p{L}``, ``\\p{N}`` or ``\\s``: the two ship different Unicode versions (regex
    follows newer Unicode releases; fancy-regex takes regex-syntax's, 16.0 for 0.8.12), so
    newly assigned letters and numbers differ."""
    every = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF)
    differ: set[str] = set()
    for cls in (r"\p{L}", r"\p{N}", r"\s"):
        ours = set(pretokenize(every, cls, scanner=False))
        differ |= ours ^ set(regex.findall(cls, every))
    return frozenset(differ)


def test_unicode_disagreements_are_only_new_characters() -> None:
    # The versions disagree about some characters, but never about ASCII, the whitespace
    # set or the Latin/Cyrillic/CJK blocks of the corpora.
    differ = unicode_disagreements()
    assert not any(c.isascii() or c.isspace() for c in differ)
    assert not any("\u0400" <= c <= "\u04ff" or "\u4e00" <= c <= "\u9fff" for c in differ)


@given(any_text)
def test_scanner_equals_python_regex_module(text: str) -> None:
    differ = unicode_disagreements()
    text = "".join(c for c in text if c not in differ)
    assert pretokenize(text) == regex.findall(GPT2_PATTERN, text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello, world!  It's", ["Hello", ",", " world", "!", " ", " It", "'s"]),
        ("IT'S we'll", ["IT", "'", "S", " we", "'ll"]),
        ("a\r\n\r\nb", ["a", "\r\n\r", "\n", "b"]),
        ("x  \u00a0 y   ", ["x", "  \u00a0", " y", "   "]),
        ("e\u0301 12 \u3000漢", ["e", "\u0301", " 12", " ", "\u3000", "漢"]),
    ],
)
def test_gpt2_examples(text: str, expected: list[str]) -> None:
    assert pretokenize(text) == expected


def test_long_whitespace_runs() -> None:
    # fancy-regex fails here ("Max stack size exceeded for backtracking" past about a
    # million whitespace characters); the scanner needs no backtracking.
    n = 2_000_000
    assert pretokenize(" " * n + "a\t\t") == [" " * (n - 1), " a", "\t\t"]


def test_custom_pattern_and_errors() -> None:
    assert pretokenize("ab, cd", r"\w+") == ["ab", "cd"]
    assert pretokenize("ab, cd", r"\w+", scanner=False) == ["ab", "cd"]
    with pytest.raises(ValueError, match=r"\(unclosed"):
        pretokenize("x", "(unclosed")
    with pytest.raises(UnicodeEncodeError):
        pretokenize("a\ud800b")
    with pytest.raises(TypeError):
        pretokenize(b"bytes")  # type: ignore[arg-type]


CORPORA = [
    "tinystories/tinystories.txt",
    "web/web_mix_train.txt",
    "web/web_mix_valid.txt",
    "books/gutenberg.txt",
    "multilingual/multilingual_mix.txt",
    "multilingual/tinystories_ru.txt",
    "samples/address.txt",
    "samples/corpus.en",
    "samples/german.txt",
    "samples/tinystories_sample.txt",
]
CHUNK = 1 << 20  # characters, to keep two lists of pretokens small


@pytest.mark.parametrize("relative", corpora(CORPORA))
def test_scanner_equals_fancy_regex_on_corpus(shared_data, relative: str) -> None:
    text = shared_data(relative).read_text(encoding="utf-8")
    for start in range(0, len(text), CHUNK):
        chunk = text[start : start + CHUNK]
        assert pretokenize(chunk) == pretokenize(chunk, scanner=False), (relative, start)
