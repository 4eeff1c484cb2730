"""Type stub of the compiled extension ``cs336._core`` (hand-written; checked against the
module by tests/test_package.py). Users call the wrappers in ``cs336``, not these."""

from collections.abc import Iterable, Sequence
from typing import TypedDict

GPT2_PATTERN: str

# ---- pretokenize (rust/py/pretokenize.rs) ----

def pretokenize(text: str, pattern: str | None = None, *, scanner: bool = True) -> list[str]:
    """The pretokens of ``text``: the successive matches of ``pattern`` (``GPT2_PATTERN``
    when None). The GPT-2 pattern runs a hand-written scanner with identical output;
    ``scanner=False`` forces fancy-regex.

    >>> pretokenize("Hello, world!  It's")
    ['Hello', ',', ' world', '!', ' ', ' It', "'s"]

    Raises:
        ValueError: ``pattern`` does not compile, or fancy-regex exceeds its backtracking
            limit on ``text`` (the scanner has none).
        UnicodeEncodeError: ``text`` holds a lone surrogate.
    """

def safe_cuts(
    text: str, special_tokens: Sequence[str] = ..., pattern: str | None = None
) -> list[int]:
    """The character offsets (not 0 nor ``len(text)``) where the trainer and the encoder
    may cut the complete ``text``: the two sides pretokenize, after splitting on
    ``special_tokens``, as the whole. With a pattern other than GPT-2's, only right after
    special tokens. Raises ValueError for bad special tokens or a bad pattern."""

def count_pretokens(text: str, pattern: str | None = None, *, scanner: bool = True) -> int:
    """``len(pretokenize(text, pattern, scanner=scanner))`` without building the list (so a
    benchmark times the pretokenizer alone). Raises as ``pretokenize``."""

# ---- train (rust/py/train.rs) ----

class _TrainOptions(TypedDict):
    """The options of a training run (every key given; ``cs336.BPETrainer`` builds it).
    Exists for type checking only: at run time it is a plain dict."""

    vocab_size: int
    special_tokens: Sequence[str]
    pattern: str
    num_threads: int | None
    show_progress: bool
    chunk_size: int  # bytes per parallel counting task
    block_size: int  # bytes per read of a file
    max_token_length: int | None

def train_bpe_files(paths: Sequence[str], options: _TrainOptions) -> list[tuple[bytes, bytes]]:
    """Merges learned from the files (each its own document), in creation order; no
    merged token is longer than ``max_token_length`` bytes. Raises OSError for an
    unreadable path, UnicodeError naming the byte offset of invalid UTF-8, ValueError for a
    too small vocab_size, bad special tokens or a bad pattern, MemoryError when an
    allocation fails, and whatever a signal handler raises (KeyboardInterrupt on
    Ctrl-C)."""

def train_bpe_iter(texts: Iterable[str], options: _TrainOptions) -> list[tuple[bytes, bytes]]:
    """Merges learned from the strings of ``texts`` (each its own document). Raises
    TypeError for a non-str item, and as train_bpe_files."""

# ---- encode (rust/py/encode.rs) ----

import os  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import final  # noqa: E402

@final
class Encoder:
    """A compiled byte-level BPE model (immutable; safe to share across threads). Wrapped
    by ``cs336.Tokenizer``, which validates the arguments."""

    def __new__(
        cls,
        vocab: list[tuple[int, bytes]],
        merges: list[tuple[bytes, bytes]],
        special_tokens: list[tuple[str, int]],
        pattern: str,
    ) -> Encoder:
        """Raises ValueError when a byte, a merge's token or a special token's id is
        missing from ``vocab``, or ``pattern`` does not compile. Of two ids with the same
        bytes, encoding produces the larger. With a pattern other than ``GPT2_PATTERN``,
        text is only cut (for streaming and parallel files) right after special tokens."""

    @property
    def vocab_size(self) -> int:
        """The number of tokens (ids may have gaps: memory follows this number)."""

    @property
    def max_token_id(self) -> int:
        """The largest token id (``.npy`` files are ``uint16`` when it is below 2**16)."""

    @property
    def pattern(self) -> str:
        """The pretokenization pattern."""

    def encode(self, text: str) -> list[int]:
        """Raises MemoryError when an allocation fails, and whatever a signal handler
        raises (the check runs every MB or so)."""
    def encode_batch(self, texts: list[str], num_threads: int | None = None) -> list[list[int]]:
        """``[encode(t) for t in texts]`` in parallel."""

    def stream(self) -> EncodeStream:
        """A new incremental encoder over chunks of text."""

    def encode_file(
        self,
        input: str | os.PathLike[str],
        output: str | os.PathLike[str],
        num_threads: int | None = None,
        progress: Callable[[int], object] | None = None,
    ) -> tuple[int, int, str]:
        """Encode a UTF-8 file into a ``.npy`` array in parallel rounds; returns ``(bytes,
        tokens, dtype)``. On the calling thread, signals are checked every few
        milliseconds and ``progress`` is called with the number of bytes done after each
        round; an exception either raises stops the work, leaves no output file and comes
        out unchanged."""

    def decode_bytes(self, ids: list[int]) -> bytes: ...

@final
class EncodeStream:
    """Encodes chunks of text as they come, with the ids of one ``encode`` call on their
    concatenation."""

    def feed(self, chunk: str) -> list[int]:
        """Add ``chunk``; returns the ids (as ``Encoder.encode``) of the text now known to
        encode on its own."""

    def finish(self) -> list[int]:
        """The input has ended: returns the ids of the rest."""
