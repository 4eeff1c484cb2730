"""The ``cs336`` command line: one subcommand per module in ``cs336.cli``.

Each subcommand module is a thin argparse front to a typed library function and defines
``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``. Modules are
imported only when needed, so ``cs336 train-bpe --help`` never imports torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# subcommand -> (module in cs336.cli, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "download": (
        "download",
        "download TinyStories or the OWT sample (or any URL), resumably; --prepare tokenizes",
    ),
    "train-bpe": ("train_bpe", "train a byte-level BPE tokenizer on text files"),
    "tokenize": ("tokenize", "encode a text file into a .npy array of token ids"),
    "train": ("train", "train a Transformer language model"),
    "generate": ("generate", "sample text from a trained checkpoint"),
    "export-hf": ("export_hf", "export a LLaMA-shaped model as a Hugging Face model directory"),
    "import-hf": ("import_hf", "import a Hugging Face LLaMA model directory as a checkpoint"),
    "accounting": ("accounting", "parameters, FLOPs, memory and MFU of a model config"),
    "plot": ("plot", "plot loss curves of training runs (PNG)"),
    "demo": ("demo", "the whole pipeline on a built-in or given corpus"),
}


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cs336", description="Train GPT-style language models from raw text."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    # Only the chosen subcommand's module is imported (the others get a stub parser).
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            module = importlib.import_module(f"cs336.cli.{module_name}")
            module.add_arguments(p)
            p.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(argv).parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (OSError, ValueError, RuntimeError) as e:
        print(f"cs336 {args.command}: error: {e}", file=sys.stderr)
        return 1
