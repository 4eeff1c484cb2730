"""``cs336 demo [--out DIR] [--corpus PATH] [--minutes N]``: the whole pipeline, from text to
a trained model and a story, on the CPU (a thin front to :func:`cs336.demo.run_demo`)."""

from __future__ import annotations

import argparse

from cs336.cli._common import add_overwrite


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out",
        default="demo",
        metavar="DIR",
        help="folder for every output, new or empty (default demo); built beside it and "
        "renamed into place at the end",
    )
    add_overwrite(parser, "demo folder (one that holds nothing else)")
    parser.add_argument(
        "--corpus",
        default=None,
        help="text file with documents separated by <|endoftext|> (default: built-in stories)",
    )
    parser.add_argument(
        "--minutes", type=float, default=3.0, help="training time budget in minutes (default 3)"
    )
    parser.add_argument(
        "--stories", type=int, default=20000, help="built-in stories to generate (default 20000)"
    )
    parser.add_argument(
        "--vocab-size", type=int, default=1000, help="BPE vocabulary size (default 1000)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of everything (default 0)")


def run(args: argparse.Namespace) -> int:
    from cs336.demo import run_demo

    run_demo(
        args.out,
        args.corpus,
        args.minutes,
        num_stories=args.stories,
        vocab_size=args.vocab_size,
        seed=args.seed,
        overwrite=args.overwrite,
    )
    return 0
