"""``cs336 export-hf --checkpoint CKPT --tokenizer DIR --out DIR``: a LLaMA-shaped model as a
Hugging Face transformers directory (a thin front to :func:`cs336.export.to_hf`)."""

from __future__ import annotations

import argparse

from cs336.cli._common import add_checkpoint_and_tokenizer

HELP = "export a LLaMA-shaped model as a Hugging Face model directory"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_checkpoint_and_tokenizer(parser)
    parser.add_argument(
        "--out", required=True, help="directory to write (must not exist or be empty)"
    )
    parser.add_argument(
        "--dtype",
        choices=["float32", "bfloat16", "float16"],
        default="float32",
        help="dtype of the exported weights (default float32: logits equal cs336's)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing, non-empty --out"
    )


def run(args: argparse.Namespace) -> int:
    from cs336.export import to_hf

    out = to_hf(
        args.checkpoint,
        args.out,
        tokenizer=args.tokenizer,
        dtype=args.dtype,
        overwrite=args.overwrite,
    )
    files = ", ".join(sorted(p.name for p in out.iterdir()))
    print(f"wrote {out} (LlamaForCausalLM, {args.dtype}): {files}")
    print(f"load it with AutoModelForCausalLM.from_pretrained({str(out)!r}) and AutoTokenizer")
    return 0
