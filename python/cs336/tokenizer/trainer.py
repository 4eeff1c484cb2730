"""Byte-level BPE training: :func:`train_bpe` and :class:`BPETrainer`.

The work happens in Rust (``cs336._core``): files are read block by block, cut into
chunks at special tokens (or, with the GPT-2 pattern, at safe spaces), pretokenized and
counted on all cores, then merged incrementally. Python holds only the result.

The rules, exactly those of :mod:`cs336.tokenizer.reference`:

- Special tokens split the text first; they are document boundaries, never merged
  across, and not counted.
- Each step merges the most frequent adjacent pair; ties go to the lexicographically
  greater pair compared as ``(bytes, bytes)``. Training stops at ``vocab_size`` or when no
  pair is left.
- Id layout: 0..255 are the byte values, merges follow in creation order, special tokens
  come last (GPT-2 style).
- The corpus must be UTF-8: invalid bytes raise :class:`UnicodeError` (a ``ValueError``)
  naming the byte offset of the first bad byte in the file.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from cs336 import _checks, _core
from cs336._core import GPT2_PATTERN
from cs336.tokenizer.tokenizer import Tokenizer

__all__ = ["GPT2_PATTERN", "BPETrainer", "train_bpe"]

Vocab = dict[int, bytes]
Merges = list[tuple[bytes, bytes]]
StrPath = str | os.PathLike[str]


def _check_options(
    vocab_size: object, special_tokens: object, num_threads: object, pattern: object
) -> list[str]:
    """Validate the options with clear messages; return the special tokens as a list."""
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int):
        raise TypeError(f"vocab_size must be an int, got {type(vocab_size).__name__}")
    specials = _checks.special_tokens(special_tokens)  # type: ignore[arg-type]
    if vocab_size > 2**32:
        raise ValueError(f"vocab_size ({vocab_size}) is too large: token ids are 32-bit")
    if vocab_size < 256 + len(specials):
        raise ValueError(
            f"vocab_size ({vocab_size}) must be at least {256 + len(specials)} "
            "(256 byte tokens + the special tokens)"
        )
    _checks.num_threads(num_threads)  # type: ignore[arg-type]
    _checks.pattern(pattern)
    return specials


def _check_paths(paths: StrPath | Sequence[StrPath]) -> list[Path]:
    """One path or a list of paths -> existing regular files (FileNotFoundError or
    IsADirectoryError naming the bad one)."""
    items = [paths] if isinstance(paths, str | os.PathLike) else list(paths)
    if not items:
        raise ValueError("no input files given")
    out = []
    for p in items:
        path = Path(p)
        if not path.exists():
            raise FileNotFoundError(f"no such file: {str(path)!r}")
        if path.is_dir():
            raise IsADirectoryError(f"expected a text file, got a directory: {str(path)!r}")
        out.append(path)
    return out


def _vocab(merges: Merges, special_tokens: Sequence[str]) -> Vocab:
    """The id layout: bytes, then merges in order, then special tokens."""
    vocab = {i: bytes([i]) for i in range(256)}
    for a, b in merges:
        vocab[len(vocab)] = a + b
    for token in special_tokens:
        vocab[len(vocab)] = token.encode("utf-8")
    return vocab


class BPETrainer:
    """Trains byte-level BPE tokenizers; see the module docs for the rules.

    Args:
        vocab_size: final vocabulary size, counting the 256 bytes and the special tokens.
        special_tokens: strings that split documents; they get the last ids.
        pattern: pretokenization regex (fancy-regex syntax); GPT-2's by default.
        num_threads: threads for pretokenizing and counting (all cores when None).
        show_progress: print progress lines (phase, elapsed time, merges) to stderr.
        max_token_length: no merge creates a token longer than this many bytes (as Hugging
            Face's ``BpeTrainer(max_token_length=...)``); None (the default, the spec's
            rule) for no limit. A pair whose token would be longer is never merged.

    Training polls for Ctrl-C on the calling thread (KeyboardInterrupt within a fraction of
    a second, or whatever exception the signal handler raises) and raises MemoryError when
    an allocation fails (e.g. under ``ulimit -v``).

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "corpus.txt"
    >>> _ = path.write_text("low lower lowest<|endoftext|>low")
    >>> vocab, merges = BPETrainer(259, ["<|endoftext|>"]).train_raw(path)
    >>> merges, vocab[258]
    ([(b'o', b'w'), (b'l', b'ow')], b'<|endoftext|>')
    """

    def __init__(
        self,
        vocab_size: int,
        special_tokens: Iterable[str] = (),
        pattern: str = GPT2_PATTERN,
        num_threads: int | None = None,
        show_progress: bool = False,
        *,
        max_token_length: int | None = None,
    ) -> None:
        self.special_tokens = _check_options(vocab_size, special_tokens, num_threads, pattern)
        if max_token_length is not None and (
            isinstance(max_token_length, bool)
            or not isinstance(max_token_length, int)
            or max_token_length < 1
        ):
            raise ValueError(
                f"max_token_length must be a positive int or None, got {max_token_length!r}"
            )
        self.vocab_size = vocab_size
        self.pattern = pattern
        self.num_threads = num_threads
        self.show_progress = show_progress
        self.max_token_length = max_token_length

    def _options(self, chunk_size: int, block_size: int = 8 << 20) -> _core._TrainOptions:
        """This trainer's options as the extension takes them."""
        return {
            "vocab_size": self.vocab_size,
            "special_tokens": self.special_tokens,
            "pattern": self.pattern,
            "num_threads": self.num_threads,
            "show_progress": self.show_progress,
            "chunk_size": chunk_size,
            "block_size": block_size,
            "max_token_length": self.max_token_length,
        }

    def train_raw(
        self,
        paths: StrPath | Sequence[StrPath],
        *,
        _chunk_size: int = 1 << 20,
        _block_size: int = 8 << 20,
    ) -> tuple[Vocab, Merges]:
        """Train on one file or several (each file is its own document) and return
        ``(vocab, merges)``. The ``_chunk_size`` / ``_block_size`` knobs (bytes per
        parallel task / per read) are for tests; results never depend on them."""
        merges = _core.train_bpe_files(
            [str(p) for p in _check_paths(paths)], self._options(_chunk_size, _block_size)
        )
        return _vocab(merges, self.special_tokens), merges

    def train_raw_from_iterator(
        self, texts: Iterable[str], *, _chunk_size: int = 1 << 20
    ) -> tuple[Vocab, Merges]:
        """Train on the strings of ``texts`` (each its own document; pulled in batches, so
        a generator over a huge corpus is fine) and return ``(vocab, merges)``. Ctrl-C
        between batches raises KeyboardInterrupt.

        >>> BPETrainer(257).train_raw_from_iterator(["ab ab", "ab"])[1]
        [(b'a', b'b')]
        """
        merges = _core.train_bpe_iter(texts, self._options(_chunk_size))
        return _vocab(merges, self.special_tokens), merges

    def train(self, paths: StrPath | Sequence[StrPath]) -> Tokenizer:
        """Train on one file or several and return a :class:`~cs336.tokenizer.Tokenizer`
        (which pretokenizes with this trainer's pattern)."""
        vocab, merges = self.train_raw(paths)
        return Tokenizer(vocab, merges, self.special_tokens, pattern=self.pattern)

    def train_from_iterator(self, texts: Iterable[str]) -> Tokenizer:
        """Train on an iterable of strings and return a :class:`~cs336.tokenizer.Tokenizer`."""
        vocab, merges = self.train_raw_from_iterator(texts)
        return Tokenizer(vocab, merges, self.special_tokens, pattern=self.pattern)


def train_bpe(
    input_path: StrPath | Sequence[StrPath],
    vocab_size: int,
    special_tokens: Iterable[str] = (),
    *,
    pattern: str = GPT2_PATTERN,
    num_threads: int | None = None,
    show_progress: bool = False,
    max_token_length: int | None = None,
) -> tuple[Vocab, Merges]:
    """Train a byte-level BPE tokenizer on the file(s) at ``input_path`` (the CS336
    assignment's ``train_bpe``). Returns ``(vocab, merges)``: ``vocab`` maps ids to token
    bytes (bytes, merges, then special tokens), ``merges`` lists the merged pairs in
    creation order.

    Raises FileNotFoundError / IsADirectoryError for a bad path, ValueError for a
    ``vocab_size`` below 256 + the number of special tokens, for empty or duplicate special
    tokens or a pattern that does not compile, UnicodeError (a ValueError) naming the
    byte offset of invalid UTF-8, and MemoryError when an allocation fails.
    ``max_token_length`` as in :class:`BPETrainer`.

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "corpus.txt"
    >>> _ = path.write_text("the cat the hat")
    >>> vocab, merges = train_bpe(path, 258)
    >>> merges, vocab[257]
    ([(b't', b'h'), (b'th', b'e')], b'the')
    """
    trainer = BPETrainer(
        vocab_size,
        special_tokens,
        pattern,
        num_threads,
        show_progress,
        max_token_length=max_token_length,
    )
    return trainer.train_raw(input_path)
