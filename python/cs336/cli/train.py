"""``cs336 train [CONFIG] [--section.key VALUE ...] [--resume [auto|PATH]]``: a thin front
to :func:`cs336.training.train`.

Every config field is a flag (``--model.d_model 256``, ``--optim.lr 3e-4``,
``--max_steps 1000``; dashes work too: ``--max-steps``), applied over the file. A file
with a ``[sweep]`` table runs once per combination, one after the other; a run of a
sweep that diverges is reported and the sweep goes on.

Exit status: 0 when every run completed, 128 + the signal number after a clean stop on
SIGINT/SIGTERM (a checkpoint was written; continue with ``--resume``), 1 on an error.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
import typing

HELP = "train a Transformer language model"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from cs336.training.config import field_specs
    from cs336.training.fields import type_name

    parser.allow_abbrev = False  # `--optim.l` must not silently mean `--optim.lr`
    parser.add_argument(
        "config", nargs="?", help="TOML or JSON config file (see configs/); flags override it"
    )
    parser.add_argument(
        "--resume",
        nargs="?",
        const="auto",
        metavar="auto|PATH",
        help="continue a run: 'auto' (the default with no value) resumes OUT_DIR/checkpoint.pt "
        "if it exists, else starts fresh; or give a checkpoint path",
    )
    groups: dict[str, argparse._ArgumentGroup] = {}
    for spec in field_specs():
        section = spec.name.split(".")[0] if "." in spec.name else "run"
        if section not in groups:
            groups[section] = parser.add_argument_group(f"{section} settings")
        default = "required" if spec.default is dataclasses.MISSING else f"default {spec.default}"
        help_text = f"{spec.help} ({default})" if spec.help else f"({default})"
        choices = typing.get_origin(spec.type) is typing.Literal  # values are case-sensitive
        dashed = spec.name.replace("_", "-")
        flags = [f"--{spec.name}"] + ([f"--{dashed}"] if dashed != spec.name else [])
        groups[section].add_argument(
            *flags,
            dest=f"set:{spec.name}",
            metavar=type_name(spec.type) if choices else type_name(spec.type).upper(),
            default=argparse.SUPPRESS,
            help=help_text.replace("%", "%%"),
        )


def run(args: argparse.Namespace) -> int:
    from cs336.training import NonFiniteLossError, train
    from cs336.training.budget import process_age
    from cs336.training.config import load_sweep

    started = time.perf_counter() - process_age()  # a time budget counts the imports too

    if args.config is None and str(args.resume).endswith((".toml", ".json")):
        raise ValueError(
            f"--resume took {args.resume} as the checkpoint; put CONFIG first: "
            f"cs336 train {args.resume} --resume"
        )
    overrides = {k[4:]: v for k, v in vars(args).items() if k.startswith("set:")}
    configs = load_sweep(args.config, overrides)
    if len(configs) == 1:
        result = train(configs[0], resume=args.resume, started=started)
        return _exit_code(result.stopped)
    outcomes = []
    stopped = "completed"
    for i, config in enumerate(configs, 1):
        print(f"=== run {i}/{len(configs)}: {config.out_dir}", flush=True)
        try:
            result = train(config, resume=args.resume)
        except NonFiniteLossError as e:
            print(f"diverged: {e}", flush=True)
            outcomes.append((config.out_dir, "diverged"))
            continue
        final = result.val_losses.get(result.step)
        outcome = f"val loss {final:.4f}" if final is not None else f"step {result.step}"
        outcomes.append((config.out_dir, outcome))
        stopped = result.stopped
        if stopped != "completed":
            break
    print("=== sweep summary")
    for out_dir, outcome in outcomes:
        print(f"{out_dir}: {outcome}")
    return _exit_code(stopped)


def _exit_code(stopped: str) -> int:
    import signal

    return 0 if stopped == "completed" else 128 + int(signal.Signals[stopped])
