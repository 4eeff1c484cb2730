"""Arguments and checks that several subcommands share."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cs336.nn.model import TransformerLM
    from cs336.tokenizer import Tokenizer


def add_checkpoint(parser: argparse.ArgumentParser) -> None:
    """``--checkpoint``: a checkpoint, a weights file or a run folder."""
    parser.add_argument(
        "--checkpoint",
        required=True,
        metavar="PATH",
        help="checkpoint.pt written by cs336 train or import-hf, a model.safetensors weights "
        "file, or a run folder (its checkpoint.pt)",
    )


def add_checkpoint_and_tokenizer(parser: argparse.ArgumentParser) -> None:
    """``--checkpoint`` (:func:`add_checkpoint`) and ``--tokenizer`` (a folder)."""
    add_checkpoint(parser)
    parser.add_argument(
        "--tokenizer",
        required=True,
        metavar="DIR",
        help="the model's tokenizer folder (vocab.json, merges.txt), as cs336 train-bpe writes",
    )


def add_overwrite(parser: argparse.ArgumentParser, what: str) -> None:
    """``--overwrite``: replace an existing output (never one of the command's inputs)."""
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help=f"replace an existing {what}; without it an existing one is an error. Never "
        "replaces one of this command's inputs",
    )


def add_device(parser: argparse.ArgumentParser, what: str) -> None:
    """``--device``, ``auto`` by default as in ``cs336 train``."""
    parser.add_argument(
        "--device",
        default="auto",
        help=f"torch device to {what} on: auto (cuda if present, else cpu), cpu, cuda, "
        "cuda:1, mps (default auto)",
    )


def check_device(name: str) -> str:
    """The torch device ``name`` means (``auto``: cuda if present, else cpu), after checking
    that this machine has it.

    Raises:
        ValueError: not a device name, or a device this machine lacks.
    """
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"device {name!r} is not a torch device ({e})") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"device {name!r}: this machine has no CUDA device torch can use")
        if device.index is not None and device.index >= count:
            raise ValueError(f"device {name!r}: this machine has {count} CUDA device(s)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {name!r}: MPS is not available on this machine")
    return name


def model_and_tokenizer(
    checkpoint: str, tokenizer_dir: str, device: str = "cpu"
) -> tuple[TransformerLM, Tokenizer]:
    """The model in ``checkpoint`` (a run folder means its checkpoint) on ``device`` and the
    tokenizer in ``tokenizer_dir``, after checking that they belong together: the same
    vocabulary size.

    Raises:
        FileNotFoundError, ValueError: a missing or unreadable input (named), or a tokenizer
            that is not the model's.
    """
    from cs336.generation import load_model
    from cs336.tokenizer import Tokenizer
    from cs336.training.checkpoint import resolve_checkpoint

    tokenizer = Tokenizer.from_dir(tokenizer_dir)
    path = resolve_checkpoint(checkpoint)
    model = load_model(path, device=device)
    vocab_size = model.config.vocab_size
    if vocab_size != tokenizer.vocab_size:
        raise ValueError(
            f"the tokenizer {tokenizer_dir} does not belong to the model {path}: it has "
            f"{tokenizer.vocab_size:,} tokens, the model a vocabulary of {vocab_size:,}; give "
            "the tokenizer the model's token files were made with"
        )
    return model, tokenizer
