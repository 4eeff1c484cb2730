"""Use a :class:`~cs336.Tokenizer` with tiktoken and Hugging Face ``tokenizers``.

tiktoken and ``tokenizers`` are optional: each function imports what it needs when
called, so importing :mod:`cs336` never does.

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

from cs336 import gpt2_format

if TYPE_CHECKING:
    import tiktoken

    from cs336.tokenizer import Tokenizer


def to_tiktoken(tok: Tokenizer, name: str = "cs336") -> tiktoken.Encoding:
    """A ``tiktoken.Encoding`` with ``tok``'s pattern, ranks = token ids and the special
    tokens (pass ``allowed_special="all"`` to its ``encode`` to encode them).

    >>> enc = to_tiktoken(Tokenizer.from_dir("gpt2"))  # doctest: +SKIP
    >>> enc.encode("Hello world")  # doctest: +SKIP
    [15496, 995]
    """
    import tiktoken

    specials = tok.special_token_ids
    special_ids = set(specials.values())
    ranks = {token: i for i, token in tok.vocab.items() if i not in special_ids}
    return tiktoken.Encoding(
        name, pat_str=tok.pattern, mergeable_ranks=ranks, special_tokens=specials
    )


def from_tiktoken(encoding: Any) -> Tokenizer:
    """A Tokenizer with the vocabulary, merges, special tokens and pretokenization pattern
    of a ``tiktoken.Encoding`` (e.g. tiktoken's ``gpt2`` or :func:`to_tiktoken`'s output).

    Raises:
        ValueError: a token cannot be built by merging two lower-ranked tokens, or the
            pattern does not compile in fancy-regex.
    """
    from cs336.tokenizer import Tokenizer

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
    return Tokenizer(vocab, merges, list(specials), pattern=encoding._pat_str)


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


def to_hf_tokenizer_json(tok: Tokenizer, path: str | os.PathLike[str]) -> Path:
    """Write a Hugging Face ``tokenizer.json`` (byte-level BPE splitting with ``tok``'s
    pattern; the special tokens are added tokens) that ``tokenizers.Tokenizer.from_file``
    loads and that encodes like ``tok`` (for a pattern whose matches cover all text, as
    GPT-2's do: ``tokenizers`` keeps the text between matches, ``tok`` drops it). Written
    atomically; returns the path.

    >>> import tokenizers  # doctest: +SKIP
    >>> path = to_hf_tokenizer_json(tok, "tokenizer.json")  # doctest: +SKIP
    >>> hf = tokenizers.Tokenizer.from_file(str(path))  # doctest: +SKIP
    >>> hf.encode("Hello world").ids == tok.encode("Hello world")  # doctest: +SKIP
    True
    """
    path = Path(path)
    encode = gpt2_format.encode_token
    specials = tok.special_token_ids
    special_ids = set(specials.values())
    vocab = {encode(token): i for i, token in sorted(tok.vocab.items()) if i not in special_ids}
    vocab.update(specials)
    spec = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {
                "id": token_id,
                "content": token,
                "single_word": False,
                "lstrip": False,
                "rstrip": False,
                "normalized": False,
                "special": True,
            }
            for token, token_id in specials.items()
        ],
        "normalizer": None,
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [
                {
                    "type": "Split",
                    "pattern": {"Regex": tok.pattern},
                    "behavior": "Isolated",
                    "invert": False,
                },
                {
                    "type": "ByteLevel",
                    "add_prefix_space": False,
                    "trim_offsets": False,
                    "use_regex": False,
                },
            ],
        },
        "post_processor": None,
        "decoder": {
            "type": "ByteLevel",
            "add_prefix_space": False,
            "trim_offsets": False,
            "use_regex": False,
        },
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": vocab,
            "merges": [f"{encode(a)} {encode(b)}" for a, b in tok.merges],
        },
    }
    gpt2_format.atomic_write_text(path, json.dumps(spec, ensure_ascii=False) + "\n")
    return path
