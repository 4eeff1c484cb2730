"""``cs336 accounting``: parameters, forward FLOPs, training memory and MFU of a model.

Without a model (no ``--preset``, ``--config`` or shape flags) it compares the four
GPT-2 presets; with one it prints that model's tables. ``--edition 2025`` asks the
questions of the 2025 handout's architecture (SwiGLU, RoPE) on the same shapes;
``--edition 2026`` those of the 2026 handout (the same, with d_ff = 8/3 d_model rounded to
a multiple of 64: 4,288 for GPT-2 XL).
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

# flag -> ModelConfig field, for the shape flags that override a preset or config file
_SHAPE_FLAGS = {
    "vocab_size": int,
    "context_length": int,
    "d_model": int,
    "num_layers": int,
    "num_heads": int,
    "d_ff": int,
}
# The variants that change a count (the kernels change none); their choices come
# from cs336.nn.config.VARIANTS.
_OPTION_FLAGS = ("norm", "ffn", "position")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from cs336.accounting import EDITIONS, PRESETS
    from cs336.nn.config import VARIANTS

    model = parser.add_argument_group("model (default: compare the GPT-2 presets)")
    source = model.add_mutually_exclusive_group()
    source.add_argument("--preset", choices=sorted(PRESETS), help="a GPT-2 shape from the handout")
    source.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="model config as .json or .toml: ModelConfig fields, at top level or in a "
        "[model] table (so a training config works too)",
    )
    for name, typ in _SHAPE_FLAGS.items():
        model.add_argument(
            "--" + name.replace("_", "-"), type=typ, help=f"{name} (overrides the preset/config)"
        )
    for name in _OPTION_FLAGS:
        model.add_argument(
            "--" + name, choices=VARIANTS[name], help=f"{name} (default: the config's)"
        )
    model.add_argument(
        "--tie-embeddings", action="store_true", default=None, help="tie lm_head to the embeddings"
    )
    model.add_argument(
        "--edition",
        choices=EDITIONS,
        help="the architecture of that handout on the chosen shape: 2024 GELU FFN and learned "
        "positions; 2025 SwiGLU (three matrices) and RoPE (no position parameters), d_ff "
        "kept; 2026 the same with d_ff = 8/3 d_model rounded to a multiple of 64. Option "
        "flags above override it",
    )
    run = parser.add_argument_group("training (for one model)")
    run.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="sequences per step for memory and step FLOPs (default: a training config's "
        "data.batch_size, else 1)",
    )
    run.add_argument(
        "--bytes", type=int, default=None, help="bytes per number for memory (default: 4, fp32)"
    )
    run.add_argument(
        "--memory-gb", type=float, help="accelerator memory in GB (1e9 bytes): max batch size"
    )
    run.add_argument(
        "--peak-tflops",
        type=float,
        help="accelerator peak, TFLOP/s (needed by --tokens-per-second and --train-steps)",
    )
    run.add_argument(
        "--tokens-per-second",
        type=float,
        help="measured training throughput: its MFU (needs --peak-tflops)",
    )
    run.add_argument(
        "--train-steps",
        type=int,
        help="steps for a training-time estimate (needs --peak-tflops)",
    )
    run.add_argument(
        "--assumed-mfu",
        type=float,
        default=None,
        help="MFU for the --train-steps estimate (default: 0.5)",
    )


def _read_config(path: Path) -> tuple[dict[str, Any], int | None]:
    """The ModelConfig fields of a config file (its ``[model]`` table, or the top level)
    and, for a training config, its ``data.batch_size``."""
    from cs336.training.config import read_config_file

    d = read_config_file(path)
    model = d.get("model", d)
    if not isinstance(model, dict):
        raise ValueError(f"config file {path}: 'model' must be a table/object")
    data = d.get("data")
    batch = data.get("batch_size") if isinstance(data, dict) else None
    if batch is not None and (isinstance(batch, bool) or not isinstance(batch, int)):
        raise ValueError(f"config file {path}: data.batch_size must be an integer, got {batch!r}")
    return model, batch


def _given(args: argparse.Namespace, names: list[str]) -> dict[str, Any]:
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def _model_config(args: argparse.Namespace) -> Any:
    """The shape (preset, file or flags), then ``--edition``, then the option flags."""
    from cs336.accounting import PRESETS, with_edition
    from cs336.nn.config import ModelConfig

    shape = _given(args, list(_SHAPE_FLAGS))
    options = _given(args, [*_OPTION_FLAGS, "tie_embeddings"])
    if args.preset:
        cfg = dataclasses.replace(PRESETS[args.preset], **shape)
    elif args.config:
        model, batch = _read_config(args.config)
        if args.batch_size is None and batch is not None:
            args.batch_size = batch
            print(f"batch size {batch}: data.batch_size of {args.config}")
        cfg = ModelConfig.from_dict({**model, **shape})
    elif not shape and not options:
        return None
    else:
        missing = [f for f in _SHAPE_FLAGS if f not in shape]
        if missing:
            flags = ", ".join("--" + m.replace("_", "-") for m in missing)
            raise ValueError(f"without --preset or --config, also give {flags}")
        cfg = ModelConfig(**shape)
    if args.edition:
        cfg = with_edition(cfg, args.edition)
    return dataclasses.replace(cfg, **options)


# flags that describe a training run of one model: meaningless in the preset comparison
_ONE_MODEL_FLAGS = (
    "batch_size", "bytes", "memory_gb", "peak_tflops", "tokens_per_second", "train_steps",
    "assumed_mfu",
)  # fmt: skip


def _check_flags(args: argparse.Namespace) -> None:
    """Every given flag is used: values in range, and the flags each one needs given."""
    positive = {
        "batch_size": args.batch_size, "bytes": args.bytes, "memory_gb": args.memory_gb,
        "peak_tflops": args.peak_tflops, "tokens_per_second": args.tokens_per_second,
        "train_steps": args.train_steps,
    }  # fmt: skip
    for name, value in positive.items():
        if value is not None and not value > 0:
            raise ValueError(f"--{name.replace('_', '-')} must be positive, got {value}")
    if args.assumed_mfu is not None and not 0 < args.assumed_mfu <= 1:
        raise ValueError(f"--assumed-mfu must be in (0, 1], got {args.assumed_mfu}")
    for flag, needs in (
        ("tokens_per_second", "peak_tflops"),
        ("train_steps", "peak_tflops"),
        ("assumed_mfu", "train_steps"),
    ):
        if getattr(args, flag) is not None and getattr(args, needs) is None:
            raise ValueError(
                f"--{flag.replace('_', '-')} needs --{needs.replace('_', '-')} (without it "
                "nothing would use it)"
            )


def run(args: argparse.Namespace) -> int:
    from cs336.accounting import model_report, presets_report

    _check_flags(args)
    cfg = _model_config(args)
    if cfg is None:
        given = [f for f in _ONE_MODEL_FLAGS if getattr(args, f) is not None]
        if given:
            raise ValueError(
                f"--{given[0].replace('_', '-')} is about one model: give --preset, --config "
                "or the shape flags (without a model, cs336 accounting compares the GPT-2 "
                "presets)"
            )
        print(presets_report(args.edition))
    else:
        print(model_report(
            cfg, batch_size=args.batch_size, bytes_per_number=args.bytes,
            memory_gb=args.memory_gb, peak_tflops=args.peak_tflops,
            tokens_per_second=args.tokens_per_second, train_steps=args.train_steps,
            assumed_mfu=args.assumed_mfu,
        ))  # fmt: skip
    return 0
