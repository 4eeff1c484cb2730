"""``cs336 train [CONFIG] [--section.key VALUE ...] [--resume [auto|PATH]]``: a thin front
to :func:`cs336.training.train`.

Every config field is a flag (``--model.d_model 256``, ``--optim.lr 3e-4``,
``--max_steps 1000``, ``--model.preset cs336-2025``; dashes work too: ``--max-steps``),
applied over the file. A file with a ``[sweep]`` table runs once per combination, one
after the other; a run of a sweep that diverges is reported and the sweep goes on. A run
folder given to ``--resume`` means its checkpoint. Everything is checked (the config, the
device, the token files, a checkpoint to resume or start from) before the run folder is
created.

Exit status: 0 when every run completed, 128 + the signal number after a clean stop on
SIGINT/SIGTERM (a checkpoint was written; continue with ``--resume``) or a stop during
start-up (nothing written), 1 on an error.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
import typing
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from cs336.training.config import field_specs
    from cs336.training.fields import type_name

    parser.usage = "%(prog)s [CONFIG] [--resume [auto|PATH]] [--SECTION.KEY VALUE ...]"
    parser.add_argument(
        "config", nargs="?", help="TOML or JSON config file (see configs/); flags override it"
    )
    parser.add_argument(
        "--resume",
        nargs="?",
        const="auto",
        metavar="auto|PATH",
        help="continue a run: 'auto' (the default with no value) resumes OUT_DIR/checkpoint.pt "
        "if it exists, else starts fresh; or give a checkpoint or a run folder",
    )
    groups: dict[str, argparse._ArgumentGroup] = {}
    for spec in field_specs():
        section = spec.name.split(".")[0] if "." in spec.name else "run"
        if section not in groups:
            groups[section] = parser.add_argument_group(f"{section} settings")
        default = "required" if spec.default is dataclasses.MISSING else f"default {spec.default}"
        help_text = f"{spec.help} ({default})" if spec.help else f"({default})"
        choices = typing.get_origin(spec.type) is typing.Literal  # values are case-sensitive
        groups[section].add_argument(
            f"--{spec.name}",  # --max_steps; --max-steps too (see cs336.cli)
            dest=f"set:{spec.name}",
            metavar=type_name(spec.type) if choices else type_name(spec.type).upper(),
            default=argparse.SUPPRESS,
            help=help_text.replace("%", "%%"),
        )


def run(args: argparse.Namespace) -> int:
    from cs336.cli._common import check_device
    from cs336.training import NonFiniteLossError
    from cs336.training.budget import process_age
    from cs336.training.checkpoint import resolve_checkpoint
    from cs336.training.config import load_sweep

    started = time.perf_counter() - process_age()  # a time budget counts the imports too

    if args.config is None and str(args.resume).endswith((".toml", ".json")):
        raise ValueError(
            f"--resume took {args.resume} as the checkpoint; put CONFIG first: "
            f"cs336 train {args.resume} --resume"
        )
    if args.resume not in (None, "auto"):
        args.resume = resolve_checkpoint(args.resume)
    overrides = {k[4:]: v for k, v in vars(args).items() if k.startswith("set:")}
    if args.config is None and not overrides:
        raise ValueError(
            "give a config file, cs336 train CONFIG (examples in configs/ of the source tree), "
            "or the [model] and [data] fields as flags (--model.vocab_size ...)"
        )
    configs = load_sweep(args.config, overrides)
    for config in configs:
        check_device(config.device)
        _check_run_folder(config.out_dir, args.resume)
    if len(configs) == 1:
        result = _train(configs[0], args.resume, started=started)
        return _exit_code(result.stopped)
    outcomes = []
    stopped = "completed"
    for i, config in enumerate(configs, 1):
        print(f"=== run {i}/{len(configs)}: {config.out_dir}", flush=True)
        try:
            result = _train(config, args.resume)
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


def _train(config: Any, resume: str | None, started: float | None = None) -> Any:
    """:func:`cs336.training.train`; Ctrl-C before its loop stops the process at once, with
    a line that names the run's last checkpoint if there is one (the loop itself stops
    after a step, with a checkpoint)."""
    from cs336.cli import _signals
    from cs336.training import train
    from cs336.training.checkpoint import CHECKPOINT_FILE

    checkpoint = os.path.join(config.out_dir, CHECKPOINT_FILE)

    def line() -> str:
        if os.path.isfile(checkpoint):
            return f"cs336 train: interrupted; the last checkpoint is {checkpoint}"
        return "cs336 train: interrupted; no checkpoint of this run was written"

    _signals.set_message(line)
    return train(config, resume=resume, started=started)


def _run_files() -> set[str]:
    """What a run folder holds (the loop's files): a new run may go into a folder of these
    only, as they are its own."""
    from cs336.training.checkpoint import CHECKPOINT_FILE, WEIGHTS_FILE
    from cs336.training.metrics import METRICS_FILE
    from cs336.training.session import BEST, BEST_WEIGHTS

    names = {CHECKPOINT_FILE, BEST, WEIGHTS_FILE, BEST_WEIGHTS, METRICS_FILE, "config.json"}
    names |= {os.path.splitext(n)[0] + ".json" for n in (CHECKPOINT_FILE, BEST)}
    names |= {n + ".pending" for n in (WEIGHTS_FILE, BEST_WEIGHTS)}
    return names | {"tensorboard", "wandb"}


def _check_run_folder(out_dir: str, resume: str | None) -> None:
    """A run folder is created where ``out_dir`` says, after every check: refuse now a
    place where it cannot be, or where a new run would write over files that are not a
    run's (``--out_dir .`` in a folder holding a config.json of the user's, say)."""
    from pathlib import Path

    from cs336.training.checkpoint import CHECKPOINT_FILE

    path = Path(out_dir)
    if path.exists() and not path.is_dir():
        raise ValueError(f"out_dir {out_dir} is a file; give a folder for the run")
    for parent in path.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(f"out_dir {out_dir}: cannot create it, {parent} is a file")
            break
    resuming = resume is not None and (resume != "auto" or (path / CHECKPOINT_FILE).is_file())
    if path.is_dir() and not resuming:
        known = _run_files()
        others = sorted(
            p.name
            for p in path.iterdir()
            if p.name not in known and not (p.name.startswith(".") and p.suffix == ".tmp")
        )
        if others:
            raise ValueError(
                f"out_dir {out_dir} holds {others[0]!r}, which is not a file of a run: a new "
                "run goes into a new or empty folder (or an earlier run's, to continue it "
                "with --resume)"
            )


def _exit_code(stopped: str) -> int:
    import signal

    return 0 if stopped == "completed" else 128 + int(signal.Signals[stopped])
