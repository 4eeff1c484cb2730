"""``cs336 train-bpe``: train a byte-level BPE tokenizer and save it in GPT-2's format.

    cs336 train-bpe corpus.txt --vocab-size 10000 --special-token '<|endoftext|>' --out tok/

writes ``tok/vocab.json``, ``tok/merges.txt``, ``tok/special_tokens.json`` and, with
``--pattern``, ``tok/pattern.txt`` (loadable with ``cs336.Tokenizer.from_dir`` or
``cs336.tokenizer.gpt2_format.read_dir``) and prints the wall time, peak memory, vocabulary size,
number of merges and the longest token. The folder is built beside its place and renamed
into it at the end; an existing one is replaced only with ``--overwrite`` and only when it
holds nothing but a tokenizer's files. An empty input is an error; a vocabulary the corpus
cannot reach (no pair left to merge) is a warning naming the size reached.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

from cs336.cli import _signals
from cs336.cli._common import add_overwrite


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from cs336.tokenizer.trainer import GPT2_PATTERN

    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="UTF-8 text file(s)")
    parser.add_argument(
        "--vocab-size",
        type=int,
        required=True,
        help="vocabulary size to reach, special tokens included (a corpus that runs out of "
        "pairs to merge stops short of it, with a warning)",
    )
    parser.add_argument(
        "--special-token",
        action="append",
        default=[],
        dest="special_tokens",
        metavar="TOKEN",
        help="a special token (repeatable), e.g. '<|endoftext|>'",
    )
    parser.add_argument(
        "--out",
        required=True,
        type=Path,
        metavar="DIR",
        help="tokenizer folder to write (new or empty; its parent is created when missing)",
    )
    add_overwrite(parser, "tokenizer folder (one that holds nothing else)")
    parser.add_argument(
        "--pattern", default=GPT2_PATTERN, help="pretokenization regex (default: GPT-2's)"
    )
    parser.add_argument(
        "--max-token-length",
        type=int,
        default=None,
        metavar="BYTES",
        help="no learned token longer than this (default: no limit, the spec's rule)",
    )
    parser.add_argument("--threads", type=int, default=None, help="threads (default: all)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MB (Linux reports ru_maxrss in KiB)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1 << 20) if sys.platform == "darwin" else rss / 1024


def run(args: argparse.Namespace) -> int:
    from cs336._files import check_output
    from cs336.tokenizer.gpt2_format import (
        MERGES_FILE,
        PATTERN_FILE,
        SPECIAL_TOKENS_FILE,
        TOKENIZER_FILES,
        VOCAB_FILE,
        write_dir,
    )
    from cs336.tokenizer.trainer import GPT2_PATTERN, BPETrainer

    if not args.pattern:
        raise ValueError("--pattern is empty: give a pretokenization regex (default: GPT-2's)")
    for path in map(Path, args.inputs):
        if path.is_dir():
            raise IsADirectoryError(f"INPUT {path} is a folder; give the text files in it")
        if not path.is_file():
            raise FileNotFoundError(f"INPUT not found: {path}")
        if path.stat().st_size == 0:
            raise ValueError(f"INPUT {path} is empty: there is no text to train on")
    check_output(
        args.out,
        overwrite=args.overwrite,
        inputs=args.inputs,
        folder=True,
        replaceable=TOKENIZER_FILES,
    )
    _signals.progress_on_stderr(not args.quiet)
    start = time.perf_counter()
    trainer = BPETrainer(
        args.vocab_size,
        args.special_tokens,
        pattern=args.pattern,
        num_threads=args.threads,
        show_progress=not args.quiet,
        max_token_length=args.max_token_length,
    )
    vocab, merges = trainer.train_raw(args.inputs)
    elapsed = time.perf_counter() - start
    write_dir(args.out, vocab, merges, args.special_tokens, args.pattern)

    # The longest learned token (special tokens are given, not learned).
    longest = max((a + b for a, b in merges), key=len, default=b"")
    print(f"trained in {elapsed:.2f} s, peak memory {peak_rss_mb():.0f} MB")
    print(f"vocab size {len(vocab)}, {len(merges)} merges")
    print(
        f"longest learned token: {longest.decode('utf-8', errors='replace')!r} "
        f"({len(longest)} bytes)"
    )
    names = [VOCAB_FILE, MERGES_FILE, SPECIAL_TOKENS_FILE]
    if args.pattern != GPT2_PATTERN:
        names.append(PATTERN_FILE)
    for name in names:
        print(f"wrote {args.out / name}")
    if len(vocab) < args.vocab_size:
        limit = " no longer than --max-token-length" if args.max_token_length else ""
        print(
            f"cs336 train-bpe: warning: the vocabulary reached {len(vocab):,} tokens, not the "
            f"{args.vocab_size:,} asked: the corpus has no pair left to merge{limit}. A model "
            f"for this tokenizer takes vocab_size = {len(vocab)}",
            file=sys.stderr,
        )
    return 0
