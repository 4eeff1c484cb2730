"""The training loop: ``train(config)`` (fronted by ``cs336 train``).

One step draws the *global* batch of window starts from a seeded generator (the same on
every process), so the data order does not depend on the number of processes: with DDP,
process ``r`` of ``W`` takes its slice of each micro-batch, and the averaged gradient
equals the single-process one. The generator's state is the data position saved in the
checkpoint, which makes a resumed run continue exactly.

Files in ``config.out_dir``: ``config.json``, ``metrics.jsonl`` (see
:mod:`cs336.training.metrics`), ``checkpoint.pt`` (latest; see
:mod:`cs336.training.checkpoint`) and its human-readable ``checkpoint.json``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from cs336._files import atomic_open
from cs336.accounting import mfu
from cs336.nn.functional import cross_entropy
from cs336.nn.model import TransformerLM
from cs336.optim import AdamW, clip_grad_norm, lr_cosine_schedule, param_groups
from cs336.training.checkpoint import read_checkpoint, rng_state, save_checkpoint, set_rng_state
from cs336.training.config import TrainConfig
from cs336.training.data import batch_at, check_tokens, eval_batches, open_tokens, sample_starts
from cs336.training.metrics import (
    METRICS_FILE,
    JSONLSink,
    MetricsLogger,
    Sink,
    TensorBoardSink,
    WandbSink,
    peak_flops,
    require,
    truncate_metrics,
)

CHECKPOINT = "checkpoint.pt"


class NonFiniteLossError(RuntimeError):
    """The loss or gradient norm became NaN or infinite; the step was not applied."""


@dataclass
class TrainResult:
    """What :func:`train` did.

    ``stopped`` is ``"completed"``, ``"SIGINT"`` or ``"SIGTERM"``. ``train_losses`` holds
    the loss of every step this call ran (``{step: loss}``, steps counted from 1);
    ``val_losses`` every validation (step 0 is before training).
    """

    step: int
    stopped: str
    train_losses: dict[int, float] = field(default_factory=dict)
    val_losses: dict[int, float] = field(default_factory=dict)
    checkpoint: str = ""
    metrics: str = ""


def find_resume_path(resume: str | None, out_dir: str) -> str | None:
    """The checkpoint to resume from: None for a fresh run, ``"auto"`` for
    ``out_dir/checkpoint.pt`` if it exists (else a fresh run), otherwise the given path.

    Raises:
        FileNotFoundError: an explicit path does not exist.
    """
    if resume is None:
        return None
    if resume == "auto":
        path = os.path.join(out_dir, CHECKPOINT)
        return path if os.path.isfile(path) else None
    if not os.path.isfile(resume):
        raise FileNotFoundError(f"checkpoint to resume from not found: {resume}")
    return resume


def train(config: TrainConfig, resume: str | None = None) -> TrainResult:
    """Train ``TransformerLM(config.model)`` on ``config.data`` for ``config.max_steps``
    steps, validating, logging and checkpointing as configured.

    ``resume``: ``None`` (fresh run; refuses an ``out_dir`` that already has a
    checkpoint), ``"auto"`` (continue ``out_dir/checkpoint.pt`` if present) or a
    checkpoint path. Run under ``torchrun`` for DDP (one process per device).

    SIGINT / SIGTERM stop the run cleanly after the current step, with a checkpoint. A
    second SIGINT raises ``KeyboardInterrupt`` at once.

    Raises:
        FileNotFoundError: a token file or the resume checkpoint is missing.
        ValueError: bad token files (ids >= vocab_size, too short), a checkpoint of a
            different model, an out_dir that already has a run, a batch size that does
            not split over the processes.
        NonFiniteLossError: the loss or gradient norm became NaN/inf (the message names
            the step and the last good checkpoint, which is left as it was).
        RuntimeError: the wandb/tensorboard package is missing when requested.
    """
    with _distributed(config.device) as (rank, world, device):
        return _Trainer(config, rank, world, device).run(resume)


# ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _distributed(device_name: str) -> Iterator[tuple[int, int, torch.device]]:
    """(rank, world size, device); initializes the process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if device_name == "auto":
        device_name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device_name)  # a bad device string raises torch's own error
    if world <= 1:
        yield 0, 1, device
        return
    local_rank = int(os.environ["LOCAL_RANK"])
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    owner = not dist.is_initialized()
    if owner:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        yield dist.get_rank(), dist.get_world_size(), device
    finally:
        if owner:
            dist.destroy_process_group()


class _SignalStop:
    """Records SIGINT/SIGTERM so the loop can stop at a step boundary; a second SIGINT
    raises KeyboardInterrupt. Installed only in the main thread."""

    def __init__(self) -> None:
        self.signum = 0
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: object) -> None:
        if self.signum and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum

    def __enter__(self) -> _SignalStop:
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)


def _write_json(path: str, obj: Any) -> None:
    with atomic_open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


def _model_diff(a: dict[str, Any], b: dict[str, Any]) -> str:
    return ", ".join(
        f"{k}: {a.get(k)!r} vs {b.get(k)!r}" for k in sorted(a) if a.get(k) != b.get(k)
    )


class _Trainer:
    def __init__(self, config: TrainConfig, rank: int, world: int, device: torch.device) -> None:
        self.cfg, self.rank, self.world, self.device = config, rank, world, device
        self.ctx = config.context_length
        per_step = config.data.grad_accum_steps * world
        if config.data.batch_size % per_step:
            raise ValueError(
                f"data.batch_size ({config.data.batch_size}) must be divisible by "
                f"grad_accum_steps x processes ({config.data.grad_accum_steps} x {world})"
            )
        self.micro = config.data.batch_size // per_step
        self.ckpt_path = os.path.join(config.out_dir, CHECKPOINT)
        self.metrics_path = os.path.join(config.out_dir, METRICS_FILE)
        self.train_tokens = open_tokens(config.data.train_path)
        self.val_tokens = open_tokens(config.data.val_path)
        vocab = config.model.vocab_size
        check_tokens(self.train_tokens, self.ctx, vocab, config.data.train_path)
        check_tokens(self.val_tokens, self.ctx, vocab, config.data.val_path)
        cuda = device.type == "cuda"
        if cuda and config.tf32:
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        bf16 = config.dtype == "bfloat16" or (config.dtype == "auto" and cuda)
        self.autocast = (
            (lambda: torch.autocast(device.type, dtype=torch.bfloat16))
            if bf16
            else contextlib.nullcontext
        )
        self.peak = config.peak_flops or peak_flops(device)
        if config.tensorboard:
            require("tensorboard", "tensorboard = true")
        if config.wandb_project:
            require("wandb", f"wandb_project = {config.wandb_project!r}")
        self.last_ckpt_step: int | None = None

    # -- setup ------------------------------------------------------------------------------

    def _build(self, resume_path: str | None) -> dict[str, Any]:
        cfg = self.cfg
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed)
        self.model = TransformerLM.from_config(cfg.model).to(self.device)
        self.optimizer = AdamW(
            param_groups(self.model, cfg.optim.weight_decay),
            lr=cfg.optim.lr,
            betas=cfg.optim.betas,
            eps=cfg.optim.eps,
            foreach=self.device.type == "cuda",
        )
        self.data_rng = torch.Generator().manual_seed(cfg.seed)
        state: dict[str, Any] = {"tokens_seen": 0, "elapsed": 0.0}
        if resume_path is not None:
            payload = read_checkpoint(resume_path)
            saved, now = payload["model_config"] or {}, cfg.model.to_dict()
            if saved != now:
                raise ValueError(
                    f"{resume_path} holds a different model ({_model_diff(saved, now)}); "
                    "resume with the same model config"
                )
            extra = payload["extra"]
            if not {"rng", "data_rng", "tokens_seen", "elapsed"} <= set(extra):
                raise ValueError(
                    f"{resume_path} holds no training state (RNG, data position): it was not "
                    "written by cs336 train, so the run cannot resume from it"
                )
            self.model.load_state_dict(payload["model"])
            self.optimizer.load_state_dict(payload["optimizer"])
            set_rng_state(extra["rng"])
            self.data_rng.set_state(extra["data_rng"])
            state = {
                "step": payload["iteration"],
                "tokens_seen": extra["tokens_seen"],
                "elapsed": extra["elapsed"],
            }
            self.last_ckpt_step = payload["iteration"]
        if self.rank:  # distinct dropout masks per process (the init was broadcast by DDP)
            torch.manual_seed(hash((cfg.seed, self.rank, state.get("step", 0))) & 0xFFFF_FFFF)
        self.train_model: torch.nn.Module = self.model
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.train_model = torch.nn.parallel.DistributedDataParallel(self.model, ids)
        if cfg.compile:
            self.train_model = cast(torch.nn.Module, torch.compile(self.train_model))
        return state

    def _sinks(self) -> list[Sink]:
        cfg = self.cfg
        sinks: list[Sink] = []
        try:
            if cfg.tensorboard:
                sinks.append(TensorBoardSink(os.path.join(cfg.out_dir, "tensorboard")))
            if cfg.wandb_project:
                name = os.path.basename(os.path.normpath(cfg.out_dir))
                sinks.append(WandbSink(cfg.wandb_project, name, cfg.to_dict(), cfg.out_dir))
        except BaseException:
            MetricsLogger(sinks).close()
            raise
        return [JSONLSink(self.metrics_path), *sinks]

    # -- one step and one validation ---------------------------------------------------------

    def _all_reduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        if self.world > 1:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t

    def _step(self, step: int) -> tuple[float, float, float]:
        """One optimizer step; returns (loss, grad norm, lr). Raises before the update
        if either is not finite."""
        cfg = self.cfg
        lr = lr_cosine_schedule(
            step, cfg.optim.lr, cfg.optim.min_lr, cfg.optim.warmup_iters, cfg.cosine_cycle_iters
        )
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        starts = sample_starts(
            len(self.train_tokens), cfg.data.batch_size, self.ctx, generator=self.data_rng
        )
        accum = cfg.data.grad_accum_steps
        loss_sum = torch.zeros((), device=self.device)
        for k in range(accum):
            lo = (k * self.world + self.rank) * self.micro
            x, y = batch_at(self.train_tokens, starts[lo : lo + self.micro], self.ctx, self.device)
            last = k == accum - 1
            no_sync = self.world > 1 and not last
            with self.train_model.no_sync() if no_sync else contextlib.nullcontext():  # type: ignore[operator]
                with self.autocast():
                    logits = self.train_model(x)  # (B, T, V)
                loss = cross_entropy(logits.float(), y)
                (loss / accum).backward()
            loss_sum += loss.detach()
        loss_value = self._all_reduce_sum(loss_sum / accum).item() / self.world
        max_norm = cfg.optim.grad_clip if cfg.optim.grad_clip > 0 else math.inf
        grad_norm = float(clip_grad_norm(self.model.parameters(), max_norm))
        if not (math.isfinite(loss_value) and math.isfinite(grad_norm)):
            self.optimizer.zero_grad(set_to_none=True)
            where = (
                f"the last good checkpoint is {self.ckpt_path} (step {self.last_ckpt_step})"
                if self.last_ckpt_step is not None
                else "no checkpoint was written yet"
            )
            raise NonFiniteLossError(
                f"non-finite {'loss' if not math.isfinite(loss_value) else 'gradient norm'} "
                f"(loss {loss_value}, grad norm {grad_norm}) at step {step + 1}: stopped "
                f"before the optimizer step; {where}. Try a lower optim.lr (now {cfg.optim.lr})"
            )
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss_value, grad_norm, lr

    @torch.no_grad()
    def _evaluate(self) -> float:
        """Token-weighted mean validation loss over the same windows on any world size."""
        cfg = self.cfg
        self.model.eval()
        totals = torch.zeros(2, dtype=torch.float64, device=self.device)
        batches = eval_batches(
            self.val_tokens,
            cfg.data.batch_size // cfg.data.grad_accum_steps,
            self.ctx,
            self.device,
            max_batches=cfg.eval_batches,
        )
        for i, (x, y) in enumerate(batches):
            if i % self.world != self.rank:
                continue
            with self.autocast():
                logits = self.model(x)
            totals[0] += cross_entropy(logits.float(), y).double() * y.numel()
            totals[1] += y.numel()
        self.model.train()
        total, count = self._all_reduce_sum(totals).tolist()
        return total / count

    def _save(self, step: int, state: dict[str, Any], record: dict[str, Any]) -> None:
        if self.rank == 0:
            cfg = self.cfg
            extra = {
                "config": cfg.to_dict(),
                "rng": rng_state(),
                "data_rng": self.data_rng.get_state(),
                "tokens_seen": state["tokens_seen"],
                "elapsed": state["elapsed"],
            }
            save_checkpoint(self.model, self.optimizer, step, self.ckpt_path, extra=extra)
            meta = {
                "iteration": step,
                **{k: v for k, v in extra.items() if k in ("tokens_seen", "elapsed", "config")},
            }
            _write_json(os.path.join(cfg.out_dir, "checkpoint.json"), {**meta, **record})
        self.last_ckpt_step = step
        if self.world > 1:
            dist.barrier()

    # -- the loop ---------------------------------------------------------------------------

    def run(self, resume: str | None) -> TrainResult:
        cfg = self.cfg
        resume_path = find_resume_path(resume, cfg.out_dir)
        if resume_path is None and os.path.isfile(self.ckpt_path):
            raise ValueError(
                f"{cfg.out_dir} already holds a run ({self.ckpt_path}); pass --resume to "
                "continue it, or choose another out_dir"
            )
        state = self._build(resume_path)
        start = state.get("step", 0)
        if start >= cfg.max_steps:
            raise ValueError(
                f"the checkpoint is at step {start}, which is not below max_steps "
                f"({cfg.max_steps}); raise max_steps to train further"
            )
        if self.rank == 0:
            os.makedirs(cfg.out_dir, exist_ok=True)
            _write_json(os.path.join(cfg.out_dir, "config.json"), cfg.to_dict())
            truncate_metrics(self.metrics_path, start if resume_path else -1)
        result = TrainResult(
            start, "completed", checkpoint=self.ckpt_path, metrics=self.metrics_path
        )
        logger = MetricsLogger(self._sinks() if self.rank == 0 else [])
        say = tqdm.write if self.rank == 0 else (lambda _msg: None)
        how = f"resuming from step {start}" if resume_path else "starting"
        say(
            f"{how}: {self.model.num_parameters():,} parameters, {len(self.train_tokens):,} "
            f"training tokens, {self.world} process(es) on {self.device}, out_dir {cfg.out_dir}"
        )
        bar = tqdm(
            total=cfg.max_steps,
            initial=start,
            unit="step",
            disable=not cfg.progress or self.rank != 0,
            dynamic_ncols=True,
        )
        tokens_per_step = cfg.data.batch_size * self.ctx
        flops_cfg = dataclasses.replace(cfg.model, context_length=self.ctx)
        t0 = time.perf_counter()
        elapsed0 = state["elapsed"]
        last_log = (start, elapsed0)

        def clock() -> float:
            return elapsed0 + time.perf_counter() - t0

        def validate(step: int) -> None:
            loss = self._evaluate()
            result.val_losses[step] = loss
            record = {
                "step": step,
                "tokens": state["tokens_seen"],
                "time": clock(),
                "val_loss": loss,
            }
            logger.log(record)
            say(f"step {step}: val loss {loss:.4f}")

        step = start
        with logger, bar, _SignalStop() as stop:
            if start == 0 and cfg.eval_interval:
                validate(0)
            while step < cfg.max_steps:
                loss, grad_norm, lr = self._step(step)
                step += 1
                state["tokens_seen"] += tokens_per_step
                state["elapsed"] = clock()
                result.train_losses[step] = loss
                bar.update(1)
                if step % cfg.log_interval == 0 or step == cfg.max_steps:
                    tps = (
                        (step - last_log[0])
                        * tokens_per_step
                        / max(state["elapsed"] - last_log[1], 1e-9)
                    )
                    last_log = (step, state["elapsed"])
                    record = {
                        "step": step,
                        "tokens": state["tokens_seen"],
                        "time": state["elapsed"],
                        "train_loss": loss,
                        "lr": lr,
                        "grad_norm": grad_norm,
                        "tokens_per_s": tps,
                        "mfu": mfu(tps, flops_cfg, self.peak) if self.peak else None,
                    }
                    logger.log(record)
                    bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.2e}")
                signum = self._signal(stop.signum)
                done = step == cfg.max_steps or signum
                paused = time.perf_counter()  # eval and checkpoints do not count in tokens/s
                if cfg.eval_interval and (step % cfg.eval_interval == 0 or done):
                    validate(step)
                if done or (cfg.checkpoint_interval and step % cfg.checkpoint_interval == 0):
                    self._save(
                        step, state, {"train_loss": loss, "val_loss": result.val_losses.get(step)}
                    )
                last_log = (last_log[0], last_log[1] + time.perf_counter() - paused)
                if signum:
                    result.stopped = signal.Signals(signum).name
                    say(f"stopped by {result.stopped} at step {step}; checkpoint {self.ckpt_path}")
                    break
        result.step = step
        return result

    def _signal(self, signum: int) -> int:
        """The signal number seen by any process (0 if none), the same on every process."""
        if self.world == 1:
            return signum
        t = torch.tensor([signum], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return int(t.item())
