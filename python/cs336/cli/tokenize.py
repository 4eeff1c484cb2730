"""``cs336 tokenize``: encode a text file into a ``.npy`` array of token ids.

    cs336 tokenize corpus.txt --tokenizer tok/ --out corpus.npy

reads the tokenizer directory written by ``cs336 train-bpe`` (or GPT-2's two files in a
folder), streams the file through :meth:`cs336.Tokenizer.encode_file` in parallel and
prints the number of tokens, bytes per token and throughput. The array is ``uint16`` when
the vocabulary fits, else ``uint32``; read it with ``np.load(path, mmap_mode="r")``. The
output is written atomically (a missing folder is created); an existing one is replaced
only with ``--overwrite``, and never the input or the tokenizer's files.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from cs336.cli import _signals
from cs336.cli._common import add_overwrite


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", type=Path, metavar="INPUT", help="UTF-8 text file")
    parser.add_argument(
        "--tokenizer",
        required=True,
        type=Path,
        metavar="DIR",
        help="tokenizer folder (vocab.json, merges.txt), as cs336 train-bpe writes",
    )
    parser.add_argument(
        "--out",
        required=True,
        type=Path,
        metavar="FILE.npy",
        help="the .npy file to write (its folder is created when missing)",
    )
    add_overwrite(parser, "--out file")
    parser.add_argument("--threads", type=int, default=None, help="threads (default: all)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from cs336._files import check_output, scratch_dir
    from cs336.tokenizer import Tokenizer

    if args.out.suffix.lower() != ".npy":
        raise ValueError(
            f"--out {args.out} must end in .npy: the output is a NumPy array of token ids"
        )
    if args.input.is_dir():
        raise IsADirectoryError(f"INPUT {args.input} is a folder; give the text file to encode")
    if not args.input.is_file():
        raise FileNotFoundError(f"INPUT not found: {args.input}")
    inputs = [args.input, args.tokenizer]
    check_output(args.out, overwrite=args.overwrite, inputs=inputs)
    tokenizer = Tokenizer.from_dir(args.tokenizer)
    _signals.progress_on_stderr(not args.quiet)
    # Encoded in a folder of its own beside --out, then moved into place: Ctrl-C, which
    # ends the process at once, leaves nothing (the folder is removed).
    with scratch_dir(args.out) as tmp:
        stats = tokenizer.encode_file(
            args.input, tmp / args.out.name, num_threads=args.threads, show_progress=not args.quiet
        )
        os.replace(tmp / args.out.name, args.out)
    print(f"{stats.tokens} tokens ({stats.dtype}) from {stats.bytes} bytes")
    print(f"{stats.bytes_per_token:.3f} bytes/token, {stats.mb_per_second:.1f} MB/s")
    print(f"wrote {args.out}")
    return 0
