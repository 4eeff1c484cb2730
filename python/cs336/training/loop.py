"""The training loop: ``train(config)`` (fronted by ``cs336 train``).

It wires the pieces: the token files (:mod:`~cs336.training.data`), the model and
:func:`~cs336.training.step.train_step`, the run's position
(:class:`~cs336.training.state.TrainState`), validation, checkpoints
(:mod:`~cs336.training.checkpoint`), metrics and a progress bar.

Each step draws the *global* batch of window starts from ``TrainState.sampler`` (the
same on every process), so the data order does not depend on the number of processes:
with DDP, process ``r`` of ``W`` takes its slice of each micro-batch, and the averaged
gradient equals the single-process one.

Step results stay on the device; the loop reads them (one host sync) every
``log_interval`` steps and before a validation or a checkpoint. A step whose loss or
gradient norm is not finite changes nothing (decided on the device); at the next read
the run stops with :class:`NonFiniteLossError` naming that step, before any later
checkpoint, so the last checkpoint on disk holds good weights.

Files in ``config.out_dir``: ``config.json``, ``metrics.jsonl`` (see
:mod:`cs336.training.metrics`), ``checkpoint.pt`` (latest; see
:mod:`cs336.training.checkpoint`; with ``checkpoint_format = "safetensors"`` the weights
are in ``model.safetensors`` beside it) and its human-readable ``checkpoint.json``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from cs336._files import atomic_open
from cs336.accounting import mfu, peak_flops
from cs336.optim import AdamW, lr_cosine_schedule
from cs336.training.allocator import keep_freed_memory
from cs336.training.checkpoint import read_checkpoint, save_checkpoint
from cs336.training.config import TrainConfig
from cs336.training.data import batch_at, check_tokens, eval_batches, open_tokens, sample_starts
from cs336.training.distributed import SignalStop, agree_on_signal, processes
from cs336.training.metrics import (
    METRICS_FILE,
    JSONLSink,
    MetricsLogger,
    Sink,
    TensorBoardSink,
    ThroughputMeter,
    WandbSink,
    require,
    truncate_metrics,
)
from cs336.training.state import TrainState
from cs336.training.step import (
    StepStats,
    autocast_for,
    build_model,
    build_optimizer,
    compile_enabled,
    evaluate,
    train_step,
    wrap_model,
)

CHECKPOINT = "checkpoint.pt"
WEIGHTS_FILE = "model.safetensors"  # checkpoint_format = "safetensors": the weights, beside it


class NonFiniteLossError(RuntimeError):
    """The loss or gradient norm became NaN or infinite; that step changed nothing."""


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
    checkpoint path. The checkpoint's model must match ``config.model`` except in the
    fields that do not change its weights (``attention``, ``init``). Run under
    ``torchrun`` for DDP (one process per device).

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
    with processes(config.device) as (rank, world, device):
        return _Run(config, rank, world, device).run(resume)


# ---------------------------------------------------------------------------------------------


def _write_json(path: str, obj: Any) -> None:
    with atomic_open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


@dataclass
class _Pending:
    """A finished step whose results are still on the device."""

    step: int
    lr: float
    tokens: int
    stats: StepStats


class _Run:
    """One call of :func:`train` on one process: setup, then :meth:`run`."""

    def __init__(self, config: TrainConfig, rank: int, world: int, device: torch.device) -> None:
        self.began = time.perf_counter()
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
        if device.type == "cpu":
            keep_freed_memory()  # reuse freed activations without page faults
        if device.type == "cuda" and config.tf32:
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self.autocast = autocast_for(config, device)
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else ""
        self.peak = config.peak_flops or peak_flops(name)
        if config.tensorboard:
            require("tensorboard", "tensorboard = true")
        if config.wandb_project:
            require("wandb", f"wandb_project = {config.wandb_project!r}")
        self.last_ckpt_step: int | None = None

    # -- setup ------------------------------------------------------------------------------

    def _build(self, resume_path: str | None) -> TrainState:
        cfg = self.cfg
        self.model = build_model(cfg, self.device)
        self.compiled = compile_enabled(cfg, self.device)
        self.optimizer = build_optimizer(cfg, self.model, self.device, compiled=self.compiled)
        state = TrainState.start(cfg.seed)
        if cfg.checkpoint_format == "safetensors":
            require("safetensors", "checkpoint_format = 'safetensors'")
        if resume_path is None and cfg.init_from is not None:  # weights only, a fresh run
            payload = read_checkpoint(cfg.init_from)
            self._check_same_model(payload, cfg.init_from, "init_from a checkpoint")
            self.model.load_state_dict(payload["model"])
        if resume_path is not None:
            payload = read_checkpoint(resume_path)
            self._check_same_model(payload, resume_path, "resume")
            if "train_state" not in payload["extra"]:
                raise ValueError(
                    f"{resume_path} holds no training state (step, data position): it was not "
                    "written by cs336 train, so the run cannot resume from it"
                )
            self.model.load_state_dict(payload["model"])
            self.optimizer.load_state_dict(payload["optimizer"])
            state = TrainState.from_state_dict(payload["extra"]["train_state"])
            self.last_ckpt_step = state.step
        self.train_model = wrap_model(
            self.model, self.device, world=self.world, compiled=self.compiled
        )
        self.first_compiled_step = self.compiled  # it compiles, and may fail
        return state

    def _check_same_model(self, payload: dict[str, Any], path: str, action: str) -> None:
        saved = payload["model_config"]
        if saved is not None:
            model = self.cfg.model
            differences = type(model).from_dict(saved).weight_differences(model)
            if differences:
                raise ValueError(
                    f"{path} holds a different model ({', '.join(differences)}); "
                    f"{action} with the same model config"
                )

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

    # -- one step, reading results, validation, checkpoints ------------------------------------

    def _step(self, state: TrainState) -> _Pending:
        cfg = self.cfg
        lr = lr_cosine_schedule(
            state.step, cfg.optim.lr, cfg.optim.min_lr, cfg.optim.warmup_iters,
            cfg.cosine_cycle_iters,
        )  # fmt: skip
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        starts = sample_starts(
            len(self.train_tokens), cfg.data.batch_size, self.ctx, generator=state.sampler
        )
        batches = []
        for k in range(cfg.data.grad_accum_steps):  # micro-batch k: this process's slice
            lo = (k * self.world + self.rank) * self.micro
            window = starts[lo : lo + self.micro]
            batches.append(batch_at(self.train_tokens, window, self.ctx, self.device))
        state.seed_step(self.rank)  # this step's dropout masks, on this process

        def step() -> StepStats:
            return train_step(
                self.train_model, self.optimizer, batches, grad_clip=cfg.optim.grad_clip,
                autocast=self.autocast,
            )  # fmt: skip

        if not self.first_compiled_step:
            return _Pending(state.step + 1, lr, state.tokens_seen, step())
        self.first_compiled_step = False
        try:  # the first step compiles: if that fails, train without compiling
            stats = step()
        except Exception as e:
            warnings.warn(
                f"torch.compile of the training step failed ({type(e).__name__}: "
                f"{str(e).strip().splitlines()[0][:300] if str(e).strip() else ''}); "
                "training without compiling (set compile = false to skip the attempt)",
                RuntimeWarning,
                stacklevel=2,
            )
            self.train_model = wrap_model(self.model, self.device, world=self.world)
            if isinstance(self.optimizer, AdamW):
                self.optimizer.use_eager_update()
            self.optimizer.zero_grad(set_to_none=True)  # a failed backward may have run
            state.seed_step(self.rank)
            stats = step()
        return _Pending(state.step + 1, lr, state.tokens_seen, stats)

    def _read(self, pending: list[_Pending]) -> list[tuple[_Pending, float, float]]:
        """(step, loss, grad norm) of the pending steps, read with one host sync; raise
        NonFiniteLossError at the first step that was not applied."""
        if not pending:
            return []
        columns = [(p.stats.loss, p.stats.grad_norm, p.stats.applied) for p in pending]
        values = torch.stack([torch.stack([x.float() for x in c]) for c in columns]).tolist()
        for p, (loss, norm, applied) in zip(pending, values, strict=True):
            if not applied:
                self._non_finite(p.step, loss, norm)
        return [(p, loss, norm) for p, (loss, norm, _) in zip(pending, values, strict=True)]

    def _non_finite(self, step: int, loss: float, norm: float) -> None:
        what = "loss" if not math.isfinite(loss) else "gradient norm"
        where = (
            f"the last good checkpoint is {self.ckpt_path} (step {self.last_ckpt_step})"
            if self.last_ckpt_step is not None
            else "no checkpoint was written yet"
        )
        raise NonFiniteLossError(
            f"non-finite {what} (loss {loss}, grad norm {norm}) at step {step}: its update was "
            f"skipped and the run stopped before any later checkpoint; {where}. Try a lower "
            f"optim.lr (now {self.cfg.optim.lr})"
        )

    def _validate(self) -> float:
        """Token-weighted mean validation loss over the same windows on any world size,
        in micro-batches the size of the training ones."""
        cfg = self.cfg
        batches = eval_batches(
            self.val_tokens,
            cfg.data.batch_size // cfg.data.grad_accum_steps,
            self.ctx,
            self.device,
            max_batches=cfg.eval_batches,
            part=(self.rank, self.world),
        )
        totals = evaluate(self.model, batches, autocast=self.autocast).to(self.device)
        if self.world > 1:
            dist.all_reduce(totals, op=dist.ReduceOp.SUM)
        total, count = totals.tolist()
        return total / count

    def _save(self, state: TrainState, record: dict[str, Any]) -> None:
        if self.rank == 0:
            extra = {"config": self.cfg.to_dict(), "train_state": state.state_dict()}
            weights = None
            if self.cfg.checkpoint_format == "safetensors":
                weights = os.path.join(self.cfg.out_dir, WEIGHTS_FILE)
            save_checkpoint(
                self.model, self.optimizer, state.step, self.ckpt_path, extra=extra, weights=weights
            )
            meta = {
                "iteration": state.step,
                "tokens_seen": state.tokens_seen,
                "elapsed": state.elapsed,
                "config": extra["config"],
            }
            _write_json(os.path.join(self.cfg.out_dir, "checkpoint.json"), {**meta, **record})
        self.last_ckpt_step = state.step
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
        start = state.step
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
        meter = ThroughputMeter(state.elapsed)
        session_tokens = 0
        pending: list[_Pending] = []

        def log_steps() -> None:
            """Read the pending steps and log every log_interval-th one (and the last)."""
            for p, loss, norm in self._read(pending):
                result.train_losses[p.step] = loss
                if p.step % cfg.log_interval and p.step != cfg.max_steps:
                    continue
                tps = meter.tokens_per_second(session_tokens)
                record = {
                    "step": p.step,
                    "tokens": p.tokens + tokens_per_step,
                    "time": state.elapsed,
                    "train_loss": loss,
                    "lr": p.lr,
                    "grad_norm": norm,
                    "tokens_per_s": tps,
                    "mfu": mfu(tps, flops_cfg, self.peak) if self.peak else None,
                }
                logger.log(record)
                bar.set_postfix(loss=f"{loss:.3f}", lr=f"{p.lr:.2e}")
            pending.clear()

        def validate() -> None:
            with meter.paused():
                loss = self._validate()
            result.val_losses[state.step] = loss
            record = {
                "step": state.step,
                "tokens": state.tokens_seen,
                "time": meter.elapsed,
                "val_loss": loss,
            }
            logger.log(record)
            say(f"step {state.step}: val loss {loss:.4f}")

        with logger, bar, SignalStop() as stop:
            if start == 0 and cfg.eval_interval:
                validate()
            while state.step < cfg.max_steps:
                step_began = time.perf_counter()
                pending.append(self._step(state))
                if state.step == start:  # the first step: how long it took to get here
                    float(pending[0].stats.loss)  # waits for it (once)
                    now = time.perf_counter()
                    total, own = now - self.began, now - step_began
                    say(f"first step done {total:.1f} s after the run began "
                        f"({own:.1f} s of it the step itself: compilation)")  # fmt: skip
                session_tokens += tokens_per_step
                state.advance(tokens_per_step, meter.elapsed)
                bar.update(1)
                step = state.step
                at_log = step % cfg.log_interval == 0
                # one process reads its own flag; several agree on it at log steps only
                signum = (
                    agree_on_signal(stop.signum, self.world, self.device)
                    if at_log or self.world == 1
                    else 0
                )
                done = step == cfg.max_steps or bool(signum)
                evaluate_now = done or bool(cfg.eval_interval and step % cfg.eval_interval == 0)
                checkpoint_now = done or bool(
                    cfg.checkpoint_interval and step % cfg.checkpoint_interval == 0
                )
                if at_log or evaluate_now or checkpoint_now:
                    log_steps()  # raises for a non-finite step, before any checkpoint
                if evaluate_now:
                    validate()
                if checkpoint_now:
                    with meter.paused():
                        record = {
                            "train_loss": result.train_losses[step],
                            "val_loss": result.val_losses.get(step),
                        }
                        self._save(state, record)
                if signum:
                    result.stopped = signal.Signals(signum).name
                    say(f"stopped by {result.stopped} at step {step}; checkpoint {self.ckpt_path}")
                    break
        result.step = state.step
        return result
