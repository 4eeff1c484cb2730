"""The byte-level BPE :class:`Tokenizer`: encode text to token ids and decode them back.

The work runs in the Rust extension (``cs336._core.Encoder``); this module holds the
policy, the validation and the file formats. A Tokenizer is immutable after construction,
so one instance may be shared by any number of threads.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cs336 import _checks, _core
from cs336._core import GPT2_PATTERN
from cs336.tokenizer import gpt2_format, interop

if TYPE_CHECKING:
    import tiktoken

Vocab = dict[int, bytes]
Merges = list[tuple[bytes, bytes]]
PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class EncodeFileStats:
    """What :meth:`Tokenizer.encode_file` did."""

    path: Path
    bytes: int
    tokens: int
    dtype: str
    seconds: float

    @property
    def bytes_per_token(self) -> float:
        return self.bytes / self.tokens if self.tokens else 0.0

    @property
    def mb_per_second(self) -> float:
        return self.bytes / 1e6 / self.seconds if self.seconds > 0 else float("inf")


class Tokenizer:
    """A byte-level BPE tokenizer (GPT-2 style).

    ``vocab`` maps token ids to their bytes and must hold every single byte; ``merges``
    lists the merges in creation order (both parts and their concatenation must be in
    ``vocab``). Each special token is encoded to one id wherever it occurs in the text;
    when special tokens overlap, the longest match wins. Special tokens missing from
    ``vocab`` are appended with new ids after the largest one.

    Encoding splits the text on special tokens, pretokenizes it with ``pattern`` (a regex
    in fancy-regex syntax; GPT-2's :data:`cs336.GPT2_PATTERN` by default, which runs a
    fast hand-written scanner) and applies the merges within each pretoken by rank
    (earliest-created first). Given GPT-2's files, the ids are tiktoken's ``gpt2``. Use
    the pattern the tokenizer was trained with (``BPETrainer.train`` does).

    :meth:`encode_iterable` and :meth:`encode_file` cut long text into pieces that encode
    independently. With GPT-2's pattern there are cuts all through ordinary text of every
    script (between a word and punctuation, a letter and a digit, before whitespace...:
    every few characters in Chinese, Japanese, Thai or Cyrillic text without spaces);
    with any other pattern only right after special tokens, so their memory then grows
    with the longest stretch of text between special tokens (the whole text when there
    are none).

    Token ids may have gaps: memory follows the number of tokens, not the largest id (ids
    must be below 2**31). Long calls check for Ctrl-C on the calling thread (the signal
    handler's exception comes out unchanged), and a failed allocation is a MemoryError.

    A tokenizer remembers the ids of pretokens it has encoded (those of at most 128
    bytes), in one cache per concurrent caller that persists across calls (at most
    cores + 2 caches, each cleared when it holds about 24 MB), so repeated and many small
    calls are fast; the memory is freed with the tokenizer. It is safe to share between
    threads.

    >>> vocab = {i: bytes([i]) for i in range(256)} | {256: b"aa"}
    >>> tok = Tokenizer(vocab, [(b"a", b"a")], ["<s>"])
    >>> tok.encode("aaa<s>")
    [256, 97, 257]
    >>> tok.decode([256, 97, 257])
    'aaa<s>'

    Raises:
        TypeError: an argument has the wrong type.
        ValueError: the vocabulary lacks a byte or a merge's token, a special token is
            empty or given twice, or ``pattern`` does not compile.
    """

    # ==== construction

    def __init__(
        self,
        vocab: dict[int, bytes],
        merges: Iterable[tuple[bytes, bytes]],
        special_tokens: Iterable[str] | None = None,
        *,
        pattern: str = GPT2_PATTERN,
    ) -> None:
        _checks.pattern(pattern)
        if not isinstance(vocab, dict):
            raise TypeError(f"vocab must be a dict[int, bytes], got {type(vocab).__name__}")
        for token_id, token in vocab.items():
            if not isinstance(token_id, int) or isinstance(token_id, bool) or token_id < 0:
                raise ValueError(f"vocab id {token_id!r} is not an integer >= 0")
            if token_id >= 2**31:
                raise ValueError(f"vocab id {token_id} is not below 2**31")
            if not isinstance(token, bytes):
                raise TypeError(f"vocab[{token_id}] must be bytes, got {type(token).__name__}")
        merges = [_check_merge(i, pair) for i, pair in enumerate(merges)]
        specials = _checks.special_tokens(special_tokens)
        vocab = dict(vocab)
        ids = {token: i for i, token in vocab.items()}
        special_ids: dict[str, int] = {}
        for special in specials:
            special_id = ids.get(special.encode("utf-8"))
            if special_id is None:
                special_id = max(vocab, default=-1) + 1
                vocab[special_id] = special.encode("utf-8")
            special_ids[special] = special_id
        self._vocab = vocab
        self._merges = merges
        self._special_ids = special_ids
        self._core = _core.Encoder(
            list(vocab.items()), merges, [(t, special_ids[t]) for t in specials], pattern
        )

    @classmethod
    def from_files(
        cls,
        vocab_path: PathLike,
        merges_path: PathLike,
        special_tokens: Iterable[str] | None = None,
        *,
        pattern: str = GPT2_PATTERN,
    ) -> Tokenizer:
        """Load GPT-2's file format: ``vocab.json`` and ``merges.txt`` (OpenAI's
        ``encoder.json`` and ``vocab.bpe`` load unchanged); ``pattern`` as in the
        constructor (the files do not record it).

        >>> tok = Tokenizer.from_files("gpt2/vocab.json", "gpt2/merges.txt",
        ...                            ["<|endoftext|>"])  # doctest: +SKIP
        >>> tok.encode("Hello world<|endoftext|>")  # doctest: +SKIP
        [15496, 995, 50256]

        Raises:
            FileNotFoundError: a file is missing.
            ValueError: a file is malformed (the message names the file and line).
        """
        vocab = gpt2_format.read_vocab(vocab_path)
        merges = gpt2_format.read_merges(merges_path)
        return cls(vocab, merges, special_tokens, pattern=pattern)

    def save(self, vocab_path: PathLike, merges_path: PathLike) -> None:
        """Write GPT-2's ``vocab.json`` and ``merges.txt`` (atomically; special tokens are
        in the vocabulary but :meth:`from_files` needs them listed again, and a custom
        ``pattern`` passed again: :meth:`save_dir` keeps both)."""
        gpt2_format.write_vocab(vocab_path, self._vocab)
        gpt2_format.write_merges(merges_path, self._merges)

    @classmethod
    def from_dir(cls, directory: PathLike) -> Tokenizer:
        """Load a tokenizer directory (``vocab.json``, ``merges.txt``, the optional
        ``special_tokens.json`` and the optional ``pattern.txt``, GPT-2's pattern when
        absent), as written by :meth:`save_dir` and ``cs336 train-bpe``.

        Raises:
            FileNotFoundError: the directory or one of its files is missing.
            NotADirectoryError: ``directory`` is a file.
            ValueError: a file is malformed or the pattern does not compile.
        """
        vocab, merges, specials, pattern = gpt2_format.read_dir(directory)
        return cls(vocab, merges, specials, pattern=pattern)

    def save_dir(self, directory: PathLike) -> Path:
        """Save to ``directory`` (created when missing) in :meth:`from_dir`'s layout and
        return its path (``pattern.txt`` only for a pattern other than GPT-2's). A new
        folder, or one holding only a tokenizer, is replaced as a whole, atomically (see
        :func:`cs336.tokenizer.gpt2_format.write_dir`)."""
        return gpt2_format.write_dir(
            directory, self._vocab, self._merges, self.special_tokens, self.pattern
        )

    # ==== properties

    @property
    def vocab(self) -> dict[int, bytes]:
        """A copy of ``{id: token bytes}``, special tokens included."""
        return dict(self._vocab)

    @property
    def merges(self) -> list[tuple[bytes, bytes]]:
        """A copy of the merges, in creation order."""
        return list(self._merges)

    @property
    def special_tokens(self) -> list[str]:
        return list(self._special_ids)

    @property
    def special_token_ids(self) -> dict[str, int]:
        """``{special token: id}``, e.g. ``tok.special_token_ids["<|endoftext|>"]``."""
        return dict(self._special_ids)

    @property
    def pattern(self) -> str:
        """The pretokenization regex (:data:`cs336.GPT2_PATTERN` by default)."""
        return self._core.pattern

    @property
    def vocab_size(self) -> int:
        """The number of tokens, special tokens included."""
        return len(self._vocab)

    def __len__(self) -> int:
        return len(self._vocab)

    def __repr__(self) -> str:
        pattern = "" if self.pattern == GPT2_PATTERN else f", pattern={self.pattern!r}"
        return (
            f"Tokenizer(vocab_size={self.vocab_size}, merges={len(self._merges)}, "
            f"special_tokens={self.special_tokens!r}{pattern})"
        )

    # ==== encode

    def encode(self, text: str) -> list[int]:
        """The token ids of ``text``.

        >>> Tokenizer({i: bytes([i]) for i in range(256)}, []).encode("hi")
        [104, 105]

        Raises:
            TypeError: ``text`` is not a str.
            UnicodeEncodeError: ``text`` holds a lone surrogate.
            ValueError: a custom ``pattern`` fails to match (fancy-regex's backtracking
                limit).
            MemoryError: the ids do not fit in memory.
        """
        if not isinstance(text, str):
            raise TypeError(f"encode() takes a str, got {type(text).__name__}")
        return self._core.encode(text)

    def encode_iterable(self, iterable: Iterable[str]) -> Iterator[int]:
        """Lazily yield the ids of the concatenation of the strings in ``iterable`` (e.g. an
        open text file): exactly ``encode("".join(iterable))``, whatever the chunk
        boundaries. Only the text after the last safe cut point is held back, which keeps
        memory constant with GPT-2's pattern; with another pattern it is all the text since
        the last special token (see the class docs).

        >>> tok = Tokenizer({i: bytes([i]) for i in range(256)} | {256: b"ab"}, [(b"a", b"b")])
        >>> list(tok.encode_iterable(["a", "b"]))
        [256]

        Raises:
            TypeError: ``iterable`` is a str (use :meth:`encode`) or yields a non-str.
        """
        if isinstance(iterable, (str, bytes)):
            raise TypeError(
                f"encode_iterable() takes an iterable of str, got {type(iterable).__name__}; "
                "use encode() for a single text"
            )
        return self._iter_ids(iter(iterable))

    def _iter_ids(self, chunks: Iterator[str]) -> Iterator[int]:
        stream = self._core.stream()
        for chunk in chunks:
            if not isinstance(chunk, str):
                raise TypeError(f"encode_iterable() got a {type(chunk).__name__} chunk, not str")
            yield from stream.feed(chunk)
        yield from stream.finish()

    def encode_batch(self, texts: Iterable[str], num_threads: int | None = None) -> list[list[int]]:
        """``[encode(t) for t in texts]``, computed in parallel without the GIL.
        ``num_threads`` defaults to one per core.

        >>> Tokenizer({i: bytes([i]) for i in range(256)}, []).encode_batch(["a", "b"])
        [[97], [98]]

        Raises:
            TypeError: an element of ``texts`` is not a str.
            ValueError: ``num_threads`` is not a positive integer.
        """
        texts = list(texts)
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"texts[{i}] is a {type(text).__name__}, not str")
        return self._core.encode_batch(texts, _checks.num_threads(num_threads))

    def encode_file(
        self,
        input_path: PathLike,
        output_path: PathLike,
        *,
        num_threads: int | None = None,
        show_progress: bool = False,
    ) -> EncodeFileStats:
        """Encode the UTF-8 text file ``input_path`` into a ``.npy`` array of token ids at
        ``output_path`` (``uint16`` when the vocabulary fits, else ``uint32``), streaming
        the file in blocks encoded in parallel (with a pattern other than GPT-2's, blocks
        end only after special tokens; see the class docs). The ids equal
        ``encode(whole text)``. The
        array is written to a temporary file and renamed at the end: after an error there
        is no output file. Read it back with ``np.load(output_path, mmap_mode="r")``.

        Raises:
            FileNotFoundError: ``input_path`` does not exist.
            UnicodeError: the file is not valid UTF-8 (the message gives the byte offset).
            ValueError: ``num_threads`` is not a positive integer.
        """
        input_path, output_path = Path(input_path), Path(output_path)
        threads = _checks.num_threads(num_threads)
        start = time.perf_counter()
        if not show_progress:
            n_bytes, n_tokens, dtype = self._core.encode_file(input_path, output_path, threads)
        else:
            from tqdm import tqdm

            total = input_path.stat().st_size
            with tqdm(total=total, unit="B", unit_scale=True, desc=input_path.name) as bar:

                def progress(done: int) -> None:
                    bar.update(done - bar.n)

                n_bytes, n_tokens, dtype = self._core.encode_file(
                    input_path, output_path, threads, progress
                )
        seconds = time.perf_counter() - start
        return EncodeFileStats(output_path, n_bytes, n_tokens, dtype, seconds)

    # ==== decode

    def decode(self, ids: Iterable[int]) -> str:
        """The text of ``ids``; byte sequences that are not valid UTF-8 become U+FFFD.

        >>> Tokenizer({i: bytes([i]) for i in range(256)}, []).decode([104, 105, 0xFF])
        'hi\\ufffd'

        Raises:
            ValueError: an id is not in the vocabulary (the message names it).
            TypeError: an id is not an int.
        """
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """The concatenated bytes of the tokens ``ids``. Raises as :meth:`decode`."""
        ids = list(ids)
        try:
            return self._core.decode_bytes(ids)
        except (OverflowError, TypeError):
            for token_id in ids:
                if not isinstance(token_id, int) or isinstance(token_id, bool):
                    raise TypeError(f"token ids must be int, got {token_id!r}") from None
                if not 0 <= token_id < 2**32:
                    raise ValueError(
                        f"token id {token_id} is not in the vocabulary (size {self.vocab_size})"
                    ) from None
            raise

    # ==== interop

    def to_tiktoken(self, name: str = "cs336") -> tiktoken.Encoding:
        """This tokenizer as a ``tiktoken.Encoding`` (see
        :func:`cs336.tokenizer.interop.to_tiktoken`; tiktoken is imported on first use)."""
        return interop.to_tiktoken(self._vocab, self._special_ids, self.pattern, name=name)

    @classmethod
    def from_tiktoken(cls, encoding: Any) -> Tokenizer:
        """A Tokenizer from a ``tiktoken.Encoding`` (see
        :func:`cs336.tokenizer.interop.from_tiktoken`).

        Raises:
            ValueError: a token is not the merge of two lower-ranked tokens, or the
                pattern does not compile in fancy-regex.
        """
        vocab, merges, specials, pattern = interop.from_tiktoken(encoding)
        return cls(vocab, merges, specials, pattern=pattern)

    def save_hf_tokenizer_json(self, path: PathLike) -> Path:
        """Write a Hugging Face ``tokenizer.json`` (see
        :func:`cs336.tokenizer.interop.write_hf_tokenizer_json`); returns its path."""
        return interop.write_hf_tokenizer_json(
            path, self._vocab, self._merges, self._special_ids, self.pattern
        )


def _check_merge(i: int, pair: Any) -> tuple[bytes, bytes]:
    if isinstance(pair, (tuple, list)) and len(pair) == 2:
        left, right = pair
        if isinstance(left, bytes) and isinstance(right, bytes):
            return left, right
    raise TypeError(f"merges[{i}] must be a pair of bytes, got {pair!r}")
