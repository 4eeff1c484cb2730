"""Use a :class:`~cs336.Tokenizer` with tiktoken and Hugging Face ``tokenizers``.

tiktoken and ``tokenizers`` are optional: each function imports what it needs when
called, so importing :mod:`cs336` never does. The functions take and return plain data
(vocab, merges, special tokens, pattern), so this module never imports the Tokenizer;
``Tokenizer.to_tiktoken``, ``Tokenizer.from_tiktoken`` and
``Tokenizer.save_hf_tokenizer_json`` are the public entry points.

tiktoken describes a BPE model by ranks alone (merge the adjacent pair whose concatenation
has the lowest rank); :func:`to_tiktoken` uses token ids as ranks, which gives the same
ids as ``Tokenizer.encode`` when each merge creates a new token whose id grows with the
merge's rank, as in GPT-2 and in what ``cs336.train_bpe`` produces. :func:`from_tiktoken`
recovers the merges from the ranks the way tiktoken itself would build each token.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cs336.tokenizer import gpt2_format

if TYPE_CHECKING:
    import tiktoken

Vocab = dict[int, bytes]
Merges = list[tuple[bytes, bytes]]


def to_tiktoken(
    vocab: Vocab, special_tokens: dict[str, int], pattern: str, name: str = "cs336"
) -> tiktoken.Encoding:
    """A ``tiktoken.Encoding`` with ``pattern``, ranks = token ids and the special tokens
    ``{token: id}`` (pass ``allowed_special="all"`` to its ``encode`` to encode them).

    >>> enc = Tokenizer.from_dir("gpt2").to_tiktoken()  # doctest: +SKIP
    >>> enc.encode("Hello world")  # doctest: +SKIP
    [15496, 995]
    """
    import tiktoken

    special_ids = set(special_tokens.values())
    ranks = {token: i for i, token in vocab.items() if i not in special_ids}
    return tiktoken.Encoding(
        name, pat_str=pattern, mergeable_ranks=ranks, special_tokens=dict(special_tokens)
    )


def from_tiktoken(encoding: Any) -> tuple[Vocab, Merges, list[str], str]:
    """``(vocab, merges, special tokens, pattern)`` of a ``tiktoken.Encoding`` (e.g.
    tiktoken's ``gpt2`` or :func:`to_tiktoken`'s output): the Tokenizer's arguments.

    Raises:
        ValueError: a token cannot be built by merging two lower-ranked tokens.
    """
    ranks: dict[bytes, int] = dict(encoding._mergeable_ranks)
    merges = []
    for token, rank in sorted(ranks.items(), key=lambda item: item[1]):
        if len(token) > 1:
            parts = _bpe(ranks, token, max_rank=rank)
            if len(parts) != 2:
                raise ValueError(
                    f"token {token!r} (rank {rank}) is not the merge of two lower-ranked tokens"
                )
            merges.append((parts[0], parts[1]))
    vocab = {rank: token for token, rank in ranks.items()}
    specials: dict[str, int] = dict(encoding._special_tokens)
    vocab.update({i: s.encode("utf-8") for s, i in specials.items()})
    return vocab, merges, list(specials), encoding._pat_str


def _bpe(ranks: dict[bytes, int], token: bytes, max_rank: int) -> list[bytes]:
    """tiktoken's merge loop on ``token``, using only ranks below ``max_rank``."""
    parts = [bytes([b]) for b in token]
    while True:
        best = None
        for i in range(len(parts) - 1):
            rank = ranks.get(parts[i] + parts[i + 1])
            if rank is not None and rank < max_rank and (best is None or rank < best[0]):
                best = (rank, i)
        if best is None:
            return parts
        i = best[1]
        parts[i : i + 2] = [parts[i] + parts[i + 1]]


def write_hf_tokenizer_json(
    path: str | os.PathLike[str],
    vocab: Vocab,
    merges: Merges,
    special_tokens: dict[str, int],
    pattern: str,
) -> Path:
    """Write a Hugging Face ``tokenizer.json`` (byte-level BPE splitting with ``pattern``;
    the special tokens ``{token: id}`` are added tokens) that
    ``tokenizers.Tokenizer.from_file`` loads and that encodes like the Tokenizer of these
    arguments (for a pattern whose matches cover all text, as GPT-2's do: ``tokenizers``
    keeps the text between matches, cs336 drops it). Written atomically; returns the path.

    >>> import tokenizers  # doctest: +SKIP
    >>> path = tok.save_hf_tokenizer_json("tokenizer.json")  # doctest: +SKIP
    >>> hf = tokenizers.Tokenizer.from_file(str(path))  # doctest: +SKIP
    >>> hf.encode("Hello world").ids == tok.encode("Hello world")  # doctest: +SKIP
    True
    """
    path = Path(path)
    spec = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            _added_token(token, token_id) for token, token_id in special_tokens.items()
        ],
        "normalizer": None,
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [
                {
                    "type": "Split",
                    "pattern": {"Regex": pattern},
                    "behavior": "Isolated",
                    "invert": False,
                },
                {"type": "ByteLevel", **_BYTE_LEVEL},
            ],
        },
        "post_processor": None,
        "decoder": {"type": "ByteLevel", **_BYTE_LEVEL},
        "model": _bpe_model(vocab, merges, special_tokens),
    }
    gpt2_format.atomic_write_text(path, json.dumps(spec, ensure_ascii=False) + "\n")
    return path


# The byte-to-unicode mapping of GPT-2, as tokenizers' pre-tokenizer and decoder apply it
# (the splitting is the Split step's: no regex of its own, no prefix space).
_BYTE_LEVEL = {"add_prefix_space": False, "trim_offsets": False, "use_regex": False}


def _added_token(token: str, token_id: int) -> dict[str, object]:
    """A special token as tokenizers' ``added_tokens`` entry: matched whole, as it is."""
    return {
        "id": token_id, "content": token, "single_word": False, "lstrip": False,
        "rstrip": False, "normalized": False, "special": True,
    }  # fmt: skip


def _bpe_model(vocab: Vocab, merges: Merges, special_tokens: dict[str, int]) -> dict[str, object]:
    """tokenizers' ``BPE`` model: the vocabulary and merges in GPT-2's printable-byte
    encoding (the special tokens under their own text), with no unknown token."""
    encode = gpt2_format.encode_token
    special_ids = set(special_tokens.values())
    hf_vocab = {encode(token): i for i, token in sorted(vocab.items()) if i not in special_ids}
    hf_vocab.update(special_tokens)
    return {
        "type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
        "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
        "ignore_merges": False, "vocab": hf_vocab,
        "merges": [f"{encode(a)} {encode(b)}" for a, b in merges],
    }  # fmt: skip
