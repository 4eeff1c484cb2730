"""``cs336 download``: fetch a handout corpus (or any http(s) file), resumably.

    cs336 download tinystories --prepare     # data/TinyStoriesV2-GPT4-{train,valid}.txt,
                                             # data/tinystories/{tokenizer/,train.npy,valid.npy}
    cs336 train configs/2025/tinystories.toml

``NAME`` is ``tinystories`` or ``owt-sample`` (``cs336 download --help`` lists them); a URL
downloads one file. Interrupted downloads continue where they stopped when the command
runs again; ``--prepare`` trains the handout's tokenizer (10K tokens for TinyStories, 32K
for the OWT sample) and writes the token files at the paths the shipped configs read.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from cs336.datasets import DATASETS

    names = ", ".join(f"{d.name} ({d.description})" for d in DATASETS.values())
    parser.add_argument("source", metavar="NAME|URL", help=f"{names}; or an http(s) URL")
    parser.add_argument(
        "--dir",
        type=Path,
        default=Path("data"),
        help="folder for the files (default: data, where the shipped configs look)",
    )
    parser.add_argument(
        "--prepare",
        action="store_true",
        help="also train the handout's tokenizer and write DIR/tinystories (or DIR/owt)/"
        "{tokenizer/, train.npy, valid.npy}",
    )
    parser.add_argument(
        "--keep-gz", action="store_true", help="keep the .gz files beside the decompressed text"
    )
    parser.add_argument(
        "--retries",
        type=int,
        default=5,
        help="failed connections in a row retried, with backoff 1, 2, 4, ... s (default: 5)",
    )
    parser.add_argument("--threads", type=int, default=None, help="threads for --prepare")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from cs336.datasets import DATASETS, download, fetch, prepare

    if args.retries < 0:
        raise ValueError(f"--retries must be >= 0, got {args.retries}")
    options = {"keep_gz": args.keep_gz, "retries": args.retries, "show_progress": not args.quiet}
    dataset = DATASETS.get(args.source)
    if dataset is None and "://" not in args.source:
        raise ValueError(
            f"unknown dataset {args.source!r}: choose one of {', '.join(DATASETS)}, or give a URL"
        )
    if dataset is None and args.prepare:
        raise ValueError("--prepare needs a dataset name (tinystories, owt-sample), not a URL")
    try:
        if dataset is None:
            print(f"wrote {download(args.source, args.dir, **options)}")
            return 0
        texts = fetch(dataset, args.dir, **options)
        for path in texts.values():
            print(f"wrote {path}")
        if args.prepare:
            done = prepare(
                dataset, args.dir, texts, num_threads=args.threads, show_progress=not args.quiet
            )
            config = "tinystories" if dataset.name == "tinystories" else "owt"
            command = f"cs336 train configs/2025/{config}.toml"
            if args.dir != Path("data"):
                command += f" --data.train_path {done.train} --data.val_path {done.valid}"
            print(f"ready: {command}")
    except KeyboardInterrupt:
        print(
            f"interrupted: what was downloaded is kept in {args.dir}; run the same command "
            "again to resume",
            file=sys.stderr,
        )
        return 130
    return 0
