"""cs336: train GPT-style language models from raw text.

A byte-level BPE tokenizer (training and encoding in a Rust extension) and a compact
pure-PyTorch model, optimizer, training loop and generation stack, following the
Stanford CS336 assignment 1: the Spring 2024 handout's model by default, the Spring 2025
handout's as the ``"cs336-2025"`` preset.

The package is organised by concern:

- :mod:`cs336.tokenizer`: BPE training and the Tokenizer (Rust extension ``cs336._core``);
- :mod:`cs336.nn`: the model (functional math, layers, ``ModelConfig``, ``TransformerLM``);
- :mod:`cs336.optim`: SGD, AdamW, gradient clipping, the cosine schedule;
- :mod:`cs336.training`: config, data, checkpoints, the training loop, metrics, plots;
- :mod:`cs336.datasets`: downloading and preparing the handouts' corpora;
- :mod:`cs336.generation`, :mod:`cs336.evaluation`, :mod:`cs336.accounting`;
- :mod:`cs336.cli` (the ``cs336`` command) and :mod:`cs336.demo`.

The tokenizer names are imported eagerly; everything that needs torch is imported on
first use (PEP 562), so ``from cs336 import Tokenizer`` never imports torch.
"""

from __future__ import annotations

import os
import sys


def _stop_at_once(signum: int, _frame: object) -> None:
    command = next((a for a in sys.argv[1:] if not a.startswith("-")), "")
    os.write(2, f"cs336 {command}: interrupted; nothing was written\n".encode())
    os._exit(128 + signum)


def _is_the_command() -> bool:
    """Whether this process is the ``cs336`` command (or ``python -m cs336``)."""
    return os.path.basename(sys.argv[0]) == "cs336" or sys.orig_argv[1:3] == ["-m", "cs336"]


# The `cs336` command stops on Ctrl-C or SIGTERM from its first moment with one line, never
# a traceback: this handler is in before anything else is imported, until the command puts
# in its own (cs336.cli._signals). Importing cs336 as a library changes nothing.
if _is_the_command():
    import signal

    signal.signal(signal.SIGINT, _stop_at_once)
    signal.signal(signal.SIGTERM, _stop_at_once)

import importlib  # noqa: E402
from typing import Any  # noqa: E402

from cs336.tokenizer import GPT2_PATTERN, BPETrainer, Tokenizer, train_bpe  # noqa: E402

# name -> module that defines it; imported lazily because these modules import torch.
_LAZY = {
    **dict.fromkeys(
        [
            "softmax",
            "gelu",
            "silu",
            "scaled_dot_product_attention",
            "cross_entropy",
            "perplexity",
        ],
        "cs336.nn.functional",
    ),
    **dict.fromkeys(["Linear", "Embedding", "RMSNorm", "FeedForward", "SwiGLU"], "cs336.nn.layers"),
    **dict.fromkeys(
        ["RotaryPositionalEmbedding", "RotaryEmbedding", "MultiHeadSelfAttention"],
        "cs336.nn.attention",
    ),
    "TransformerBlock": "cs336.nn.block",
    "ModelConfig": "cs336.nn.config",
    "TransformerLM": "cs336.nn.model",
    **dict.fromkeys(["SGD", "AdamW", "clip_grad_norm", "lr_cosine_schedule"], "cs336.optim"),
    "param_groups": "cs336.nn.groups",
    **dict.fromkeys(["get_batch", "open_tokens"], "cs336.training.data"),
    **dict.fromkeys(["save_checkpoint", "load_checkpoint"], "cs336.training.checkpoint"),
    **dict.fromkeys(["TrainConfig", "OptimConfig", "DataConfig"], "cs336.training.config"),
    "train": "cs336.training.loop",
    "generate": "cs336.generation",
    "evaluate_file": "cs336.evaluation",
}

__all__ = ["GPT2_PATTERN", "BPETrainer", "Tokenizer", "train_bpe", "__version__", *_LAZY]


def _version() -> str:
    # importlib.metadata costs ~0.1 s to import: only pay it when __version__ is read.
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("cs336")
    except PackageNotFoundError:  # a source tree that was never installed: the crate's
        import re
        from pathlib import Path

        cargo = Path(__file__).resolve().parents[2] / "Cargo.toml"
        found = (
            re.search(r'^version = "([^"]+)"', cargo.read_text(), re.M) if cargo.is_file() else None
        )
        return found.group(1) if found else "0+unknown"


def __getattr__(name: str) -> Any:
    if name == "__version__":
        globals()[name] = value = _version()
        return value
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'cs336' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
