"""``cs336 import-hf DIR --out CKPT``: a Hugging Face LLaMA model directory as a cs336
checkpoint (a thin front to :func:`cs336.export.from_hf`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from cs336.cli._common import add_overwrite

# --out suffix -> what is written
_KINDS = {".pt": "checkpoint", ".pth": "checkpoint", ".safetensors": "weights file"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "directory",
        metavar="DIR",
        help="transformers model folder (config.json, model.safetensors or its shards)",
    )
    parser.add_argument(
        "--out",
        required=True,
        metavar="FILE",
        help="file to write, as its name ends: a .pt checkpoint, or a .safetensors weights "
        "file (no pickle); cs336 generate --checkpoint and cs336 train --init_from read either",
    )
    add_overwrite(parser, "--out file")
    parser.add_argument(
        "--context-length",
        type=int,
        default=None,
        help="the cs336 model's context_length (default: max_position_embeddings)",
    )


def run(args: argparse.Namespace) -> int:
    from cs336._files import check_output
    from cs336.export import from_hf
    from cs336.training.checkpoint import save_checkpoint, save_weights

    directory, out = Path(args.directory), Path(args.out)
    kind = _KINDS.get(out.suffix.lower())
    if kind is None:
        raise ValueError(
            f"--out {out} must end in .pt (a checkpoint) or .safetensors (a weights file)"
        )
    if directory.is_file():
        raise NotADirectoryError(
            f"{directory} is a file: give the transformers model folder (config.json, "
            "model.safetensors)"
        )
    inputs = list(directory.iterdir()) if directory.is_dir() else []
    check_output(out, overwrite=args.overwrite, inputs=inputs)
    model = from_hf(directory, context_length=args.context_length)
    if kind == "weights file":
        save_weights(model, out)
    else:
        save_checkpoint(model, None, 0, out)
    cfg = model.config
    print(
        f"wrote {out}: {model.num_parameters():,} parameters, d_model {cfg.d_model}, "
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
