"""A slow, obviously correct byte-level BPE trainer and encoder in pure Python.

This module is the specification in code: the Rust trainer and encoder in ``cs336._core``
must return exactly what these functions return. It reads like the CS336 handout and
favours clarity over speed (training rescans every pair after every merge), so use it
on small texts only.

The algorithm, on the handout's example with the pretokens split on whitespace:

>>> text = "low low low low low lower lower widest widest widest " + "newest " * 6
>>> vocab, merges = train(text, 256 + 6, pattern=r"\\S+")
>>> [a.decode() + " " + b.decode() for a, b in merges]
['s t', 'e st', 'o w', 'l ow', 'w est', 'n e']
>>> encode("lowest", vocab, merges, pattern=r"\\S+")
[259, 257]

Id layout: ids 0..255 are the single bytes, merge ``i`` creates id ``256 + i``, and the
special tokens take the last ids, in the order given.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from itertools import pairwise

GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

Vocab = dict[int, bytes]
Merges = list[tuple[bytes, bytes]]
Word = tuple[bytes, ...]


def split_on_special_tokens(text: str, special_tokens: Sequence[str]) -> Iterator[str | int]:
    """Yield the pieces of ``text`` in order: plain text as ``str`` (never empty) and each
    special token as its index in ``special_tokens``. Where two special tokens could match
    at the same place, the longer one wins.

    >>> list(split_on_special_tokens("a<s>b<s><s>", ["<s>", "<s><s>"]))
    ['a', 0, 'b', 1]
    """
    start = 0
    i = 0
    while i < len(text):
        # The longest special token that starts at i, if any.
        found = max(
            (k for k, tok in enumerate(special_tokens) if text.startswith(tok, i)),
            key=lambda k: len(special_tokens[k]),
            default=None,
        )
        if found is None:
            i += 1
            continue
        if i > start:
            yield text[start:i]
        yield found
        i += len(special_tokens[found])
        start = i
    if start < len(text):
        yield text[start:]


def pretokenize(text: str, pattern: str = GPT2_PATTERN) -> list[str]:
    """The successive matches of ``pattern`` in ``text`` (the ``regex`` module's syntax,
    which knows ``\\p{L}``).

    >>> pretokenize("Hello, world!  It's")
    ['Hello', ',', ' world', '!', ' ', ' It', "'s"]
    """
    import regex  # type: ignore[import-untyped]  # a test dependency, imported lazily

    return regex.findall(pattern, text)


def count_words(
    texts: Iterable[str], special_tokens: Sequence[str] = (), pattern: str = GPT2_PATTERN
) -> Counter[Word]:
    """Count each pretoken as a tuple of single bytes. Special tokens cut the text and are
    not counted.

    >>> count_words(["ab ab<|endoftext|>a"], ["<|endoftext|>"])
    Counter({(b'a', b'b'): 1, (b' ', b'a', b'b'): 1, (b'a',): 1})
    """
    counts: Counter[Word] = Counter()
    for text in texts:
        for piece in split_on_special_tokens(text, special_tokens):
            if isinstance(piece, int):
                continue
            for pretoken in pretokenize(piece, pattern):
                counts[tuple(bytes([b]) for b in pretoken.encode("utf-8"))] += 1
    return counts


def count_pairs(words: Counter[Word]) -> Counter[tuple[bytes, bytes]]:
    """How often each adjacent pair occurs, weighted by the word counts.

    >>> count_pairs(Counter({(b"a", b"a", b"a"): 2, (b"a", b"b"): 1}))
    Counter({(b'a', b'a'): 4, (b'a', b'b'): 1})
    """
    pairs: Counter[tuple[bytes, bytes]] = Counter()
    for word, n in words.items():
        for pair in pairwise(word):
            pairs[pair] += n
    return pairs


def merge_word(word: Word, pair: tuple[bytes, bytes]) -> Word:
    """Replace each occurrence of ``pair`` in ``word``, left to right, by its concatenation.

    >>> merge_word((b"a", b"a", b"a"), (b"a", b"a"))
    (b'aa', b'a')
    """
    out = []
    i = 0
    while i < len(word):
        if i + 1 < len(word) and (word[i], word[i + 1]) == pair:
            out.append(word[i] + word[i + 1])
            i += 2
        else:
            out.append(word[i])
            i += 1
    return tuple(out)


def train_from_counts(
    words: Counter[Word],
    vocab_size: int,
    special_tokens: Sequence[str] = (),
    max_token_length: int | None = None,
) -> tuple[Vocab, Merges]:
    """Merge the most frequent pair until the vocabulary has ``vocab_size`` tokens or no
    pair is left. Ties go to the lexicographically greater pair, compared as
    ``(bytes, bytes)``. With ``max_token_length``, only pairs whose merged token has at
    most that many bytes count.

    >>> train_from_counts(Counter({(b"a", b"b"): 1, (b"b", b"a"): 1}), 257)[1]
    [(b'b', b'a')]
    """
    if vocab_size < 256 + len(special_tokens):
        raise ValueError(f"vocab_size ({vocab_size}) must be at least {256 + len(special_tokens)}")
    merges: Merges = []
    while 256 + len(merges) + len(special_tokens) < vocab_size:
        pairs = count_pairs(words)
        if max_token_length is not None:
            pairs = Counter(
                {p: n for p, n in pairs.items() if len(p[0] + p[1]) <= max_token_length}
            )
        if not pairs:
            break
        best = max(pairs, key=lambda pair: (pairs[pair], pair))
        merges.append(best)
        merged: Counter[Word] = Counter()
        for word, n in words.items():
            merged[merge_word(word, best)] += n
        words = merged
    vocab = {i: bytes([i]) for i in range(256)}
    for a, b in merges:
        vocab[len(vocab)] = a + b
    for tok in special_tokens:
        vocab[len(vocab)] = tok.encode("utf-8")
    return vocab, merges


def train(
    text: str | Iterable[str],
    vocab_size: int,
    special_tokens: Sequence[str] = (),
    pattern: str = GPT2_PATTERN,
    max_token_length: int | None = None,
) -> tuple[Vocab, Merges]:
    """Train a byte-level BPE tokenizer on ``text`` (one string or an iterable of strings,
    each split on its own) and return ``(vocab, merges)``.

    >>> vocab, merges = train("aaa aaa", 258)
    >>> merges, vocab[256], vocab[257]
    ([(b'a', b'a'), (b'aa', b'a')], b'aa', b'aaa')
    """
    texts = [text] if isinstance(text, str) else text
    words = count_words(texts, special_tokens, pattern)
    return train_from_counts(words, vocab_size, special_tokens, max_token_length)


def encode(
    text: str,
    vocab: Vocab,
    merges: Merges,
    special_tokens: Sequence[str] = (),
    pattern: str = GPT2_PATTERN,
) -> list[int]:
    """Encode ``text``: split on special tokens (longest first), pretokenize, then in each
    pretoken apply the merges by rank: repeatedly merge, left to right, every occurrence of
    the adjacent pair that was learned first.

    >>> vocab = {i: bytes([i]) for i in range(256)} | {256: b"aa", 257: b"<s>"}
    >>> encode("aaa<s>", vocab, [(b"a", b"a")], ["<s>"])
    [256, 97, 257]
    """
    ids = {token: i for i, token in vocab.items()}
    rank = {pair: r for r, pair in enumerate(merges)}
    out: list[int] = []
    for piece in split_on_special_tokens(text, special_tokens):
        if isinstance(piece, int):
            out.append(ids[special_tokens[piece].encode("utf-8")])
            continue
        for pretoken in pretokenize(piece, pattern):
            word: Word = tuple(bytes([b]) for b in pretoken.encode("utf-8"))
            while len(word) > 1:
                best = min(pairwise(word), key=lambda p: rank.get(p, len(rank)))
                if best not in rank:
                    break
                word = merge_word(word, best)
            out.extend(ids[token] for token in word)
    return out
