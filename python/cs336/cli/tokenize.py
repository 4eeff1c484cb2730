"""``cs336 tokenize``: encode a text file into a ``.npy`` array of token ids.

    cs336 tokenize corpus.txt --tokenizer tok/ --out corpus.npy

reads the tokenizer directory written by ``cs336 train-bpe`` (or GPT-2's two files in a
folder), streams the file through :meth:`cs336.Tokenizer.encode_file` in parallel and
prints the number of tokens, bytes per token and throughput. The array is ``uint16`` when
the vocabulary fits, else ``uint32``; read it with ``np.load(path, mmap_mode="r")``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "encode a text file into a .npy array of token ids"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", type=Path, metavar="INPUT", help="UTF-8 text file")
    parser.add_argument(
        "--tokenizer", required=True, type=Path, metavar="DIR", help="tokenizer directory"
    )
    parser.add_argument("--out", required=True, type=Path, metavar="FILE.npy", help="output")
    parser.add_argument("--threads", type=int, default=None, help="threads (default: all)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from cs336.tokenizer import Tokenizer

    tokenizer = Tokenizer.from_dir(args.tokenizer)
    stats = tokenizer.encode_file(
        args.input, args.out, num_threads=args.threads, show_progress=not args.quiet
    )
    print(f"{stats.tokens} tokens ({stats.dtype}) from {stats.bytes} bytes")
    print(f"{stats.bytes_per_token:.3f} bytes/token, {stats.mb_per_second:.1f} MB/s")
    print(f"wrote {stats.path}")
    return 0
