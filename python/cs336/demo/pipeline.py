"""The whole pipeline in one call, on a fresh machine with no downloads (``cs336 demo``):

1. a corpus: built-in children's stories (:mod:`cs336.demo.stories`), or a text file you
   give, with documents separated by ``<|endoftext|>``; split into train and validation;
2. a byte-level BPE tokenizer trained on the training split;
3. both splits tokenized into ``.npy`` files;
4. a small Transformer trained on the CPU for a few minutes (the number of steps is
   chosen from the measured speed of a few steps), printing the validation loss;
5. a story sampled from the model, and a PNG of the loss curves.

The output folder is built beside its place and renamed into it at the end: an error or
Ctrl-C leaves nothing, and an existing demo folder is replaced only when asked
(``overwrite``), never one that holds other files or the given corpus.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from cs336._files import atomic_dir, atomic_open, check_output
from cs336.demo.stories import write_corpus
from cs336.generation import EOT, load_model, sample_text
from cs336.nn.model import ModelConfig, TransformerLM
from cs336.tokenizer import Tokenizer
from cs336.training.config import DataConfig, OptimConfig, TrainConfig
from cs336.training.loop import train
from cs336.training.plot import plot_runs
from cs336.training.step import autocast_for, build_optimizer, train_step

# A model that learns the built-in stories in a few CPU minutes (about 1M parameters).
DEMO_MODEL = {"d_model": 128, "num_layers": 4, "num_heads": 4, "d_ff": 512, "context_length": 128}
# What a demo folder holds: overwrite replaces a folder of these names only.
DEMO_FILES = ("train.txt", "val.txt", "tokenizer", "train.npy", "val.npy", "run", "loss.png")


@dataclass
class DemoResult:
    """Where the demo put everything, the validation losses and the sampled story
    (``plot`` is empty when matplotlib is not installed)."""

    out_dir: str
    corpus: tuple[str, str]
    tokenizer: str
    tokens: tuple[str, str]
    run_dir: str
    plot: str
    story: str
    val_losses: dict[int, float] = field(default_factory=dict)


def split_corpus(src: str, train_path: str, val_path: str, val_fraction: float = 0.05) -> None:
    """Copy ``src`` into a training file and a validation file holding roughly its last
    ``val_fraction`` of bytes, cut just after an ``<|endoftext|>`` (streamed, so any size
    works; each output is written atomically).

    Raises:
        FileNotFoundError: ``src`` does not exist.
        ValueError: no ``<|endoftext|>`` after the cut point (too few documents).
    """
    if not os.path.isfile(src):
        raise FileNotFoundError(f"corpus not found: {src}")
    size = os.path.getsize(src)
    marker = EOT.encode()
    with open(src, "rb") as f:
        f.seek(int(size * (1 - val_fraction)))
        # Find the first separator after the cut point, reading in overlapping blocks.
        pos, tail = f.tell(), b""
        while True:
            block = f.read(1 << 20)
            if not block:
                raise ValueError(
                    f"{src} has no {EOT} in its last {val_fraction:.0%}: the demo needs several "
                    f"documents separated by {EOT}"
                )
            found = (tail + block).find(marker)
            if found >= 0:
                cut = pos - len(tail) + found + len(marker)
                break
            pos += len(block)
            tail = block[-len(marker) :]
        f.seek(0)
        with atomic_open(train_path, "wb") as out:
            remaining = cut
            while remaining:
                chunk = f.read(min(remaining, 1 << 24))
                out.write(chunk)
                remaining -= len(chunk)
        with atomic_open(val_path, "wb") as out:
            shutil.copyfileobj(f, out)


def _seconds_per_step(cfg: TrainConfig) -> float:
    """Measured time of one training step of ``cfg`` on the CPU (median of 3, after one
    warm-up): the step that ``train`` runs, on random tokens."""
    device = torch.device("cpu")
    model = TransformerLM.from_config(cfg.model)
    optimizer = build_optimizer(cfg, model, device)
    autocast = autocast_for(cfg.dtype, device)
    x = torch.randint(0, cfg.model.vocab_size, (cfg.data.batch_size, cfg.context_length))
    times = []
    for _ in range(4):
        t = time.perf_counter()
        train_step(model, optimizer, [(x, x)], grad_clip=cfg.optim.grad_clip, autocast=autocast)
        times.append(time.perf_counter() - t)
    return sorted(times[1:])[1]


def run_demo(
    out_dir: str = "demo",
    corpus: str | None = None,
    minutes: float = 3.0,
    *,
    num_stories: int = 20000,
    vocab_size: int = 1000,
    batch_size: int = 16,
    lr: float = 2e-3,
    model: dict[str, Any] | None = None,
    max_steps: int | None = None,
    seed: int = 0,
    overwrite: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> DemoResult:
    """Run the pipeline into ``out_dir`` (see the module docstring) and return where
    everything is. ``max_steps`` fixes the number of training steps instead of fitting
    them into ``minutes``; ``model`` overrides :data:`DEMO_MODEL` fields; ``lr`` is the
    peak learning rate (cosine decay to ``lr / 10``). ``overwrite`` replaces an existing
    demo folder. A signal that stops the training removes the partial folder and is then
    delivered again (SIGINT: ``KeyboardInterrupt``).

    Raises:
        FileNotFoundError: ``corpus`` does not exist.
        FileExistsError: ``out_dir`` exists and is not empty, without ``overwrite``.
        ValueError: bad sizes, a corpus without ``<|endoftext|>`` separators, or an
            ``out_dir`` that is a file, holds the corpus, or (with ``overwrite``) holds
            files a demo does not write.
    """
    from cs336.tokenizer import BPETrainer

    if not minutes > 0:
        raise ValueError(f"minutes must be > 0, got {minutes}")
    if num_stories < 1:
        raise ValueError(f"num_stories must be >= 1, got {num_stories}")
    if corpus is not None:
        if os.path.isdir(corpus):
            raise IsADirectoryError(f"corpus {corpus} is a folder; give a text file")
        if not os.path.isfile(corpus):
            raise FileNotFoundError(f"corpus not found: {corpus}")
    trainer = BPETrainer(vocab_size, special_tokens=[EOT])  # checks vocab_size
    check_output(
        out_dir,
        overwrite=overwrite,
        inputs=[corpus] if corpus else [],
        folder=True,
        replaceable=DEMO_FILES,
        name="the demo folder",
    )
    final = os.path.abspath(out_dir)
    try:
        with atomic_dir(out_dir) as staging:
            story, val_losses, plot = _pipeline(
                str(staging), corpus, minutes, trainer, num_stories, batch_size, lr, model,
                max_steps, seed, progress, log,
            )  # fmt: skip
            _name_final_paths(os.path.join(staging, "run"), str(staging), final)
    except _Stopped as stop:  # the partial folder is gone: now the signal takes effect
        signal.raise_signal(signal.Signals[stop.signal])
        raise KeyboardInterrupt from None  # if the signal is ignored, stop all the same
    tok_dir, run_dir = os.path.join(out_dir, "tokenizer"), os.path.join(out_dir, "run")
    checkpoint = os.path.join(run_dir, "checkpoint.pt")
    log(
        f"\nEverything is in {out_dir}/: corpus train.txt / val.txt, tokenizer/, train.npy / "
        f"val.npy, run/ (checkpoint.pt, metrics.jsonl){', loss.png' if plot else ''}.\n"
        f"Sample more with: cs336 generate --checkpoint {checkpoint} "
        f'--tokenizer {tok_dir} --prompt "Once upon a time"'
    )
    return DemoResult(
        out_dir=out_dir,
        corpus=(os.path.join(out_dir, "train.txt"), os.path.join(out_dir, "val.txt")),
        tokenizer=tok_dir,
        tokens=(os.path.join(out_dir, "train.npy"), os.path.join(out_dir, "val.npy")),
        run_dir=run_dir,
        plot=os.path.join(out_dir, "loss.png") if plot else "",
        story=story,
        val_losses=val_losses,
    )


class _Stopped(Exception):
    """A signal (named by ``signal``) stopped the demo's training."""

    def __init__(self, signal: str) -> None:
        super().__init__(signal)
        self.signal = signal


def _pipeline(
    out_dir: str,
    corpus: str | None,
    minutes: float,
    trainer: Any,
    num_stories: int,
    batch_size: int,
    lr: float,
    model: dict[str, Any] | None,
    max_steps: int | None,
    seed: int,
    progress: bool,
    log: Callable[[str], None],
) -> tuple[str, dict[int, float], bool]:
    """The five steps into ``out_dir``: (story, validation losses, whether a plot was
    made).

    Raises:
        _Stopped: a signal stopped the training.
    """
    train_txt, val_txt = _write_texts(out_dir, corpus, num_stories, seed, log)
    tokenizer = _train_tokenizer(trainer, train_txt, out_dir, log)
    train_npy, val_npy = os.path.join(out_dir, "train.npy"), os.path.join(out_dir, "val.npy")
    log("[3/5] tokenizing -> train.npy, val.npy")
    tokenizer.encode_file(train_txt, train_npy)
    tokenizer.encode_file(val_txt, val_npy)
    run_dir = os.path.join(out_dir, "run")
    config = _train_config(
        tokenizer.vocab_size, train_npy, val_npy, run_dir, minutes=minutes,
        batch_size=batch_size, lr=lr, model=model, max_steps=max_steps, seed=seed,
        progress=progress,
    )  # fmt: skip
    log(f"[4/5] training {config.model.num_layers} layers x {config.model.d_model} for "
        f"{config.max_steps} steps")  # fmt: skip
    result = train(config)
    if result.stopped != "completed":
        raise _Stopped(result.stopped)
    log("[5/5] a story from the model:")
    story = sample_text(
        load_model(result.checkpoint), tokenizer, "Once upon a time", temperature=0.8,
        top_p=0.95, generator=torch.Generator().manual_seed(seed),
    )  # fmt: skip
    log("Once upon a time" + story)
    plot = importlib.util.find_spec("matplotlib") is not None
    if plot:
        plot_runs([run_dir], os.path.join(out_dir, "loss.png"), labels=["demo"])
    else:
        log("(no loss.png: matplotlib is not installed; pip install matplotlib)")
    return story, result.val_losses, plot


def _write_texts(
    out_dir: str, corpus: str | None, num_stories: int, seed: int, log: Callable[[str], None]
) -> tuple[str, str]:
    """Step 1: ``train.txt`` and ``val.txt`` in ``out_dir``, from the built-in story
    generator or split from ``corpus``."""
    train_txt, val_txt = os.path.join(out_dir, "train.txt"), os.path.join(out_dir, "val.txt")
    if corpus is None:
        n_val = max(num_stories // 20, 1)
        log(f"[1/5] writing {num_stories} + {n_val} stories to train.txt and val.txt")
        write_corpus(train_txt, num_stories, seed=seed)
        write_corpus(val_txt, n_val, seed=seed + 1)
    else:
        log(f"[1/5] splitting {corpus} into train.txt and val.txt")
        split_corpus(corpus, train_txt, val_txt)
    return train_txt, val_txt


def _train_tokenizer(
    trainer: Any, train_txt: str, out_dir: str, log: Callable[[str], None]
) -> Tokenizer:
    """Step 2: a BPE tokenizer trained on ``train_txt``, saved to ``out_dir/tokenizer``."""
    log(f"[2/5] training a BPE tokenizer with {trainer.vocab_size} tokens -> tokenizer/")
    began = time.perf_counter()
    tokenizer: Tokenizer = trainer.train([train_txt])
    tokenizer.save_dir(os.path.join(out_dir, "tokenizer"))
    log(f"      done in {time.perf_counter() - began:.1f} s")
    return tokenizer


def _train_config(
    vocab_size: int,
    train_npy: str,
    val_npy: str,
    run_dir: str,
    *,
    minutes: float,
    batch_size: int,
    lr: float,
    model: dict[str, Any] | None,
    max_steps: int | None,
    seed: int,
    progress: bool,
) -> TrainConfig:
    """Step 4's run: the demo model on the CPU, for ``max_steps`` or as many steps as fit
    in ``minutes`` (measured), with warmup, validations and logging scaled to the steps."""
    config = TrainConfig(
        model=ModelConfig(vocab_size=vocab_size, **{**DEMO_MODEL, **(model or {})}),
        data=DataConfig(train_npy, val_npy, batch_size=batch_size),
        optim=OptimConfig(lr=lr, min_lr=lr / 10, warmup_iters=0, weight_decay=0.1),
        out_dir=run_dir,
        seed=seed,
        device="cpu",
        progress=progress,
    )
    if max_steps is None:  # 9 validations of 10 forward-only batches cost ~30 steps
        max_steps = max(int(minutes * 60 * 0.95 / _seconds_per_step(config)) - 30, 10)
    d = config.to_dict()
    return TrainConfig.from_dict({
        **d, "max_steps": max_steps, "eval_interval": max(max_steps // 8, 1),
        "optim": {**d["optim"], "warmup_iters": min(max_steps // 10, 100)},
        "eval_batches": 10, "log_interval": max(max_steps // 50, 1), "checkpoint_interval": 0,
    })  # fmt: skip


def _name_final_paths(run_dir: str, staging: str, final: str) -> None:
    """Rewrite the paths in the run's config.json and checkpoint.json (out_dir, token
    files), which name the folder the demo was built in, to name ``final``, where it is
    renamed."""
    for name in ("config.json", "checkpoint.json"):
        path = os.path.join(run_dir, name)
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
        config = record.get("config", record)
        for section, key in ((None, "out_dir"), ("data", "train_path"), ("data", "val_path")):
            table = config[section] if section else config
            table[key] = os.path.join(final, os.path.relpath(table[key], staging))
        with atomic_open(path, "w", encoding="utf-8") as f:
            json.dump(record, f, indent=2)
            f.write("\n")
