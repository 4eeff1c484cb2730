"""Type stub of the compiled extension ``cs336._core`` (hand-written; checked against the
module by tests/test_package.py). Users call the wrappers in ``cs336``, not these."""

from collections.abc import Iterable, Sequence

GPT2_PATTERN: str

# ---- pretokenize (rust/py/pretokenize.rs) ----

def pretokenize(text: str, pattern: str | None = None, *, scanner: bool = True) -> list[str]:
    """The pretokens of ``text``: the successive matches of ``pattern`` (``GPT2_PATTERN``
    when None). The GPT-2 pattern runs a hand-written scanner with identical output;
    ``scanner=False`` forces fancy-regex.

    Raises:
        ValueError: ``pattern`` does not compile.
        UnicodeEncodeError: ``text`` holds a lone surrogate.
    """

def count_pretokens(text: str, pattern: str | None = None, *, scanner: bool = True) -> int:
    """``len(pretokenize(text, pattern, scanner=scanner))`` without building the list (so a
    benchmark times the pretokenizer alone). Raises as ``pretokenize``."""

# ---- train (rust/py/train.rs) ----

def train_bpe_files(
    paths: Sequence[str],
    vocab_size: int,
    special_tokens: Sequence[str],
    pattern: str,
    num_threads: int | None = None,
    show_progress: bool = False,
    chunk_size: int = 1048576,
    block_size: int = 8388608,
) -> list[tuple[bytes, bytes]]:
    """Merges learned from the files (each its own document), in creation order.
    Raises OSError for an unreadable path, UnicodeError naming the byte offset of invalid
    UTF-8, ValueError for a too small vocab_size, bad special tokens or a bad pattern,
    KeyboardInterrupt on Ctrl-C."""

def train_bpe_iter(
    texts: Iterable[str],
    vocab_size: int,
    special_tokens: Sequence[str],
    pattern: str,
    num_threads: int | None = None,
    show_progress: bool = False,
    chunk_size: int = 1048576,
) -> list[tuple[bytes, bytes]]:
    """Merges learned from the strings of ``texts`` (each its own document). Raises
    TypeError for a non-str item, ValueError as train_bpe_files, KeyboardInterrupt."""

# ---- encode (rust/py/encode.rs) ----
