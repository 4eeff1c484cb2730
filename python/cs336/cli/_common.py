"""Arguments that several subcommands share."""

from __future__ import annotations

import argparse


def add_checkpoint_and_tokenizer(parser: argparse.ArgumentParser) -> None:
    """``--checkpoint`` (a checkpoint or a weights file) and ``--tokenizer`` (a directory)."""
    parser.add_argument(
        "--checkpoint",
        required=True,
        help="checkpoint.pt written by cs336 train, or a model.safetensors weights file",
    )
    parser.add_argument(
        "--tokenizer", required=True, help="tokenizer directory (vocab.json, merges.txt)"
    )
