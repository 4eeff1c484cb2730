"""GPT-2's tokenizer file format: ``vocab.json`` and ``merges.txt``.

GPT-2 stores byte tokens as printable strings through a fixed byte -> character table
(:func:`bytes_to_unicode`): printable Latin-1 bytes map to themselves, the other 68 bytes
to the characters U+0100 onwards. ``vocab.json`` maps each token's string to its id;
``merges.txt`` has one merge ``a b`` per line in creation order, after an optional
``#version`` line. OpenAI's ``encoder.json`` / ``vocab.bpe`` are exactly these files.

Files are written atomically: to a temporary file in the same folder, then renamed; a
tokenizer folder is built as a temporary folder beside its place, then renamed
(:func:`write_dir`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

from cs336._core import GPT2_PATTERN
from cs336._files import atomic_dir, atomic_open

Vocab = dict[int, bytes]
Merges = list[tuple[bytes, bytes]]


@cache
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character table.

    >>> bytes_to_unicode()[ord("a")], bytes_to_unicode()[ord(" ")]
    ('a', 'Ġ')
    """
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    table = {b: chr(b) for b in printable}
    n = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + n)
            n += 1
    return table


@cache
def unicode_to_bytes() -> dict[str, int]:
    """The inverse of :func:`bytes_to_unicode`."""
    return {c: b for b, c in bytes_to_unicode().items()}


def encode_token(token: bytes) -> str:
    """Token bytes -> GPT-2's printable string. ``encode_token(b" the") == "Ġthe"``."""
    table = bytes_to_unicode()
    return "".join(table[b] for b in token)


def decode_token(text: str, *, where: str = "token") -> bytes:
    """GPT-2's printable string -> token bytes; ValueError naming ``where`` on a character
    outside the table."""
    table = unicode_to_bytes()
    try:
        return bytes(table[c] for c in text)
    except KeyError as e:
        raise ValueError(
            f"{where}: character {e.args[0]!r} is not in GPT-2's byte-to-unicode table"
        ) from None


def _read_text(path: Path) -> str:
    """The whole of a tokenizer file, exactly as written, which must be UTF-8
    (``ValueError`` naming it)."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not UTF-8 text (invalid byte at offset {e.start})") from None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(_read_text(path))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON: {e}") from None


def read_vocab(path: str | os.PathLike[str]) -> Vocab:
    """Read a GPT-2 ``vocab.json`` into ``{id: bytes}``."""
    path = Path(path)
    raw = _read_json(path)
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a JSON object mapping tokens to ids")
    vocab: Vocab = {}
    for text, token_id in raw.items():
        if not isinstance(token_id, int) or isinstance(token_id, bool) or token_id < 0:
            raise ValueError(f"{path}: token {text!r} has id {token_id!r}, not an integer >= 0")
        if token_id in vocab:
            raise ValueError(f"{path}: id {token_id} is given to two tokens")
        vocab[token_id] = decode_token(text, where=f"{path}: token {text!r}")
    return vocab


def read_merges(path: str | os.PathLike[str]) -> Merges:
    """Read a GPT-2 ``merges.txt`` (an optional ``#version`` first line, then ``a b`` per
    line) into ``[(a_bytes, b_bytes), ...]``."""
    path = Path(path)
    merges: Merges = []
    for lineno, line in enumerate(_read_text(path).split("\n"), start=1):
        line = line.rstrip("\r")
        if not line or (lineno == 1 and line.startswith("#version")):
            continue
        parts = line.split(" ")
        if len(parts) != 2 or not parts[0] or not parts[1]:
            raise ValueError(f"{path}:{lineno}: expected two tokens 'a b', got {line!r}")
        where = f"{path}:{lineno}"
        merges.append((decode_token(parts[0], where=where), decode_token(parts[1], where=where)))
    return merges


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8, ``\n`` line ends) to ``path`` atomically: ``path`` is either
    the old file or the complete new one, never a partial write."""
    with atomic_open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)


def write_vocab(path: str | os.PathLike[str], vocab: Vocab) -> None:
    """Write ``{id: bytes}`` as a GPT-2 ``vocab.json`` (ordered by id)."""
    obj = {encode_token(vocab[i]): i for i in sorted(vocab)}
    if len(obj) != len(vocab):
        raise ValueError(
            "vocabulary has two ids with the same bytes; GPT-2's format cannot hold it"
        )
    atomic_write_text(path, json.dumps(obj, ensure_ascii=False) + "\n")


def write_merges(path: str | os.PathLike[str], merges: Iterable[tuple[bytes, bytes]]) -> None:
    """Write merges as a GPT-2 ``merges.txt`` with a ``#version: 0.2`` first line."""
    lines = ["#version: 0.2"]
    lines += [f"{encode_token(a)} {encode_token(b)}" for a, b in merges]
    atomic_write_text(path, "\n".join(lines) + "\n")


# A tokenizer directory: vocab.json + merges.txt (GPT-2's files) + special_tokens.json,
# and pattern.txt when the pretokenization pattern is not GPT-2's.
VOCAB_FILE = "vocab.json"
MERGES_FILE = "merges.txt"
SPECIAL_TOKENS_FILE = "special_tokens.json"
PATTERN_FILE = "pattern.txt"
TOKENIZER_FILES = (VOCAB_FILE, MERGES_FILE, SPECIAL_TOKENS_FILE, PATTERN_FILE)


def write_dir(
    directory: str | os.PathLike[str],
    vocab: Vocab,
    merges: Merges,
    special_tokens: list[str],
    pattern: str = GPT2_PATTERN,
) -> Path:
    """Save a tokenizer as ``directory/{vocab.json, merges.txt, special_tokens.json}``,
    plus ``pattern.txt`` holding ``pattern`` exactly (no added newline) when it is not
    GPT-2's. Returns the directory.

    A new directory, or one that holds only a tokenizer's files, is built as a temporary
    folder beside it and renamed into place: readers (and an interrupted save) see the
    old tokenizer or the complete new one, never the files of two. In a directory that
    also holds other files (a model's, say) the tokenizer's files are replaced one by one,
    each atomically, and a stale ``pattern.txt`` is removed.
    """
    directory = Path(directory)
    if directory.is_dir() and any(p.name not in TOKENIZER_FILES for p in directory.iterdir()):
        _write_files(directory, vocab, merges, special_tokens, pattern)
        if pattern == GPT2_PATTERN:
            (directory / PATTERN_FILE).unlink(missing_ok=True)
        return directory
    with atomic_dir(directory) as tmp:
        _write_files(tmp, vocab, merges, special_tokens, pattern)
    return directory


def _write_files(
    directory: Path, vocab: Vocab, merges: Merges, special_tokens: list[str], pattern: str
) -> None:
    write_vocab(directory / VOCAB_FILE, vocab)
    write_merges(directory / MERGES_FILE, merges)
    atomic_write_text(
        directory / SPECIAL_TOKENS_FILE, json.dumps(list(special_tokens), ensure_ascii=False) + "\n"
    )
    if pattern != GPT2_PATTERN:
        atomic_write_text(directory / PATTERN_FILE, pattern)


def read_dir(directory: str | os.PathLike[str]) -> tuple[Vocab, Merges, list[str], str]:
    """Load what :func:`write_dir` saved: ``(vocab, merges, special_tokens, pattern)``.
    ``special_tokens.json`` and ``pattern.txt`` are optional (GPT-2's own two files in a
    folder load too, with no special tokens and GPT-2's pattern).

    Raises:
        FileNotFoundError: ``directory`` is missing, or holds no vocab.json / merges.txt.
        NotADirectoryError: ``directory`` is a file.
        ValueError: a file is malformed (named).
    """
    directory = Path(directory)
    if not directory.exists():
        raise FileNotFoundError(f"tokenizer folder not found: {directory}")
    if not directory.is_dir():
        raise NotADirectoryError(
            f"{directory} is a file, not a tokenizer folder (the folder cs336 train-bpe "
            f"writes, with {VOCAB_FILE} and {MERGES_FILE})"
        )
    for name in (VOCAB_FILE, MERGES_FILE):
        if not (directory / name).is_file():
            raise FileNotFoundError(
                f"{directory} is not a tokenizer folder: it has no {name} (cs336 train-bpe "
                f"writes {VOCAB_FILE} and {MERGES_FILE})"
            )
    vocab = read_vocab(directory / VOCAB_FILE)
    merges = read_merges(directory / MERGES_FILE)
    specials_path = directory / SPECIAL_TOKENS_FILE
    specials: list[str] = []
    if specials_path.exists():
        specials = _read_json(specials_path)
        if not isinstance(specials, list) or not all(isinstance(s, str) for s in specials):
            raise ValueError(f"{specials_path}: expected a JSON list of strings")
    pattern_path = directory / PATTERN_FILE
    pattern = GPT2_PATTERN
    if pattern_path.exists():
        pattern = _read_text(pattern_path)
        if not pattern:
            raise ValueError(f"{pattern_path} is empty: remove it for GPT-2's pattern")
    return vocab, merges, specials, pattern
