"""``cs336 eval --checkpoint CKPT --data valid.npy|valid.txt``: a model's mean loss and
perplexity over a whole file (a thin front to :func:`cs336.evaluation.evaluate_file`)."""

from __future__ import annotations

import argparse

from cs336.cli._common import add_checkpoint, add_device


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_checkpoint(parser)
    parser.add_argument(
        "--data",
        required=True,
        help="token ids as .npy (from cs336 tokenize; memory-mapped), or a UTF-8 text file "
        "(encoded with --tokenizer to a temporary .npy first)",
    )
    parser.add_argument(
        "--tokenizer", help="tokenizer directory (vocab.json, merges.txt): needed for text"
    )
    parser.add_argument(
        "--context-length",
        type=int,
        help="tokens per window, at most the model's (default: the model's context_length)",
    )
    parser.add_argument(
        "--batch-size", type=int, default=32, help="windows per forward pass (default 32)"
    )
    add_device(parser, "evaluate")
    parser.add_argument(
        "--dtype",
        choices=("auto", "float32", "bfloat16"),
        default="auto",
        help="autocast dtype; auto: bfloat16 on CUDA (as cs336 train), else float32",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from cs336.cli import _signals
    from cs336.cli._common import check_device
    from cs336.evaluation import evaluate_file

    check_device(args.device)
    _signals.progress_on_stderr(not args.quiet)
    result = evaluate_file(
        args.checkpoint,
        args.data,
        tokenizer=args.tokenizer,
        context_length=args.context_length,
        batch_size=args.batch_size,
        device=args.device,
        dtype=args.dtype,
        progress=not args.quiet,
    )
    ctx = result.context_length
    tail = result.tokens % ctx
    windows = f"{result.windows:,} windows of {ctx}" + (
        f", the last {tail} in a shorter one" if tail else ""
    )
    print(f"loss        {result.loss:.6f} (nats per token)")
    print(f"perplexity  {result.perplexity:.4f}")
    print(f"tokens      {result.tokens:,} predicted in {windows}")
    return 0
