"""``cs336 export-hf --checkpoint CKPT --tokenizer DIR --out DIR``: a LLaMA-shaped model as a
Hugging Face transformers directory (a thin front to :func:`cs336.export.to_hf`)."""

from __future__ import annotations

import argparse

from cs336.cli._common import add_checkpoint_and_tokenizer, add_overwrite


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_checkpoint_and_tokenizer(parser)
    parser.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="folder to write, new or empty (built beside it and renamed into place)",
    )
    parser.add_argument(
        "--dtype",
        choices=["float32", "bfloat16", "float16"],
        default="float32",
        help="dtype of the exported weights (default float32: logits equal cs336's)",
    )
    add_overwrite(parser, "export folder (one that holds nothing else)")


def run(args: argparse.Namespace) -> int:
    from cs336._files import check_output
    from cs336.cli._common import model_and_tokenizer
    from cs336.export import to_hf
    from cs336.export.hf import EXPORT_FILES

    inputs = [args.checkpoint, args.tokenizer]
    check_output(
        args.out, overwrite=args.overwrite, inputs=inputs, folder=True, replaceable=EXPORT_FILES
    )
    model, tokenizer = model_and_tokenizer(args.checkpoint, args.tokenizer)
    out = to_hf(model, args.out, tokenizer=tokenizer, dtype=args.dtype, overwrite=args.overwrite)
    files = ", ".join(sorted(p.name for p in out.iterdir()))
    print(f"wrote {out} (LlamaForCausalLM, {args.dtype}): {files}")
    print(f"load it with AutoModelForCausalLM.from_pretrained({str(out)!r}) and AutoTokenizer")
    return 0
