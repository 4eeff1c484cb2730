"""``cs336 import-hf DIR --out CKPT``: a Hugging Face LLaMA model directory as a cs336
checkpoint (a thin front to :func:`cs336.export.from_hf`)."""

from __future__ import annotations

import argparse

HELP = "import a Hugging Face LLaMA model directory as a checkpoint"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "directory", help="transformers model directory (config.json, model.safetensors)"
    )
    parser.add_argument(
        "--out",
        required=True,
        help="checkpoint to write: a .pt checkpoint, or a .safetensors weights file (no "
        "pickle); cs336 generate --checkpoint and cs336 train --init_from read either",
    )
    parser.add_argument(
        "--context-length",
        type=int,
        default=None,
        help="the cs336 model's context_length (default: max_position_embeddings)",
    )


def run(args: argparse.Namespace) -> int:
    from cs336.export import from_hf
    from cs336.training.checkpoint import save_checkpoint, save_weights

    model = from_hf(args.directory, context_length=args.context_length)
    if str(args.out).endswith(".safetensors"):
        save_weights(model, args.out)
    else:
        save_checkpoint(model, None, 0, args.out)
    cfg = model.config
    print(
        f"wrote {args.out}: {model.num_parameters():,} parameters, d_model {cfg.d_model}, "
        f"{cfg.num_layers} layers, {cfg.num_heads} heads, d_ff {cfg.d_ff}, vocab "
        f"{cfg.vocab_size}, context {cfg.context_length}, rope_theta {cfg.rope_theta:g}, "
        f"tie_embeddings {str(cfg.tie_embeddings).lower()}"
    )
    print("its [model] table for cs336 train --init_from:")
    for key, value in cfg.to_dict().items():
        print(f"  {key} = {_toml(value)}")
    return 0


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)
