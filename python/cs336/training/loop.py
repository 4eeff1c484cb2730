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

With ``time_budget`` the run ends when its clock (every second since the process started,
over resumes) reaches the budget less what the last validation and checkpoint need, and
the learning rate follows the clock after warmup (:mod:`~cs336.training.budget`), so it
is annealed at the end. ``sample_interval`` prints and logs a text sample every so many
steps (:mod:`~cs336.training.samples`); ``keep_best`` keeps the checkpoint of the lowest
validation loss.

Files in ``config.out_dir``: ``config.json``, ``metrics.jsonl`` (see
:mod:`cs336.training.metrics`), ``checkpoint.pt`` (latest; see
:mod:`cs336.training.checkpoint`; with ``checkpoint_format = "safetensors"`` the weights
are in ``model.safetensors`` beside it) and its human-readable ``checkpoint.json``; with
``keep_best``, ``best.pt`` and ``best.json`` (``best.safetensors``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from tqdm.auto import tqdm

from cs336.accounting import mfu
from cs336.optim.schedule import lr_schedule
from cs336.training.budget import TimeBudget
from cs336.training.checkpoint import find_resume_path
from cs336.training.config import TrainConfig
from cs336.training.distributed import SignalStop, agree_on_signal, processes
from cs336.training.metrics import (
    JSONLSink,
    MetricsLogger,
    Sink,
    TensorBoardSink,
    ThroughputMeter,
    WandbSink,
    truncate_metrics,
)
from cs336.training.samples import TEMPERATURE, TOP_P, draw_sample
from cs336.training.session import BEST, Pending, Session, write_json
from cs336.training.state import TrainState, step_seed


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


def train(
    config: TrainConfig, resume: str | None = None, *, started: float | None = None
) -> TrainResult:
    """Train ``TransformerLM(config.model)`` on ``config.data`` for ``config.max_steps``
    steps, validating, logging and checkpointing as configured.

    ``resume``: ``None`` (fresh run; refuses an ``out_dir`` that already has a
    checkpoint), ``"auto"`` (continue ``out_dir/checkpoint.pt`` if present) or a
    checkpoint path. The checkpoint's model must match ``config.model`` except in the
    fields that do not change its weights (``kernels``, ``init``). Run under
    ``torchrun`` for DDP (one process per device).

    SIGINT / SIGTERM stop the run cleanly after the current step, with a checkpoint. A
    second SIGINT raises ``KeyboardInterrupt`` at once.

    ``started``: the ``time.perf_counter()`` reading at which the run's clock starts
    (``cs336 train`` passes its process's start, so a ``time_budget`` counts the imports
    too); by default the moment of this call.

    Raises:
        FileNotFoundError: a token file or the resume checkpoint is missing.
        ValueError: bad token files (ids >= vocab_size, too short), a checkpoint of a
            different model, an out_dir that already has a run, a batch size that does
            not split over the processes.
        NonFiniteLossError: the loss or gradient norm became NaN/inf (the message names
            the step and the last good checkpoint, which is left as it was).
        RuntimeError: the wandb/tensorboard package is missing when requested.
    """
    began = time.perf_counter() if started is None else started
    with processes(config.device) as (rank, world, device):
        return _Run(config, rank, world, device, began).run(resume)


# ---------------------------------------------------------------------------------------------


class _Run(Session):
    """The loop around a :class:`~cs336.training.session.Session`: :meth:`run`."""

    last_lr: float  # a timed run's learning rate never goes back up

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

    def _lr(self, state: TrainState) -> float:
        """The learning rate of the next step: by steps, or with a time budget by the run's
        clock after a warmup of ``warmup_iters`` steps, annealed by the time training must
        end (:class:`~cs336.training.budget.TimeBudget`)."""
        o = self.cfg.optim

        def at(t: float, warmup: float, total: float) -> float:
            return lr_schedule(t, max_lr=o.lr, min_lr=o.min_lr, warmup=warmup, total=total,
                               kind=o.schedule, cooldown=o.cooldown)  # fmt: skip

        if self.budget is None:
            return at(state.step, o.warmup_iters, self.cfg.cosine_cycle_iters)
        if state.step < o.warmup_iters:
            return state.step / o.warmup_iters * o.lr
        clock = self.meter.elapsed
        if state.warmup_end is None:
            state.warmup_end = clock
        end = max(self.budget.training_end(), state.warmup_end)
        # the end moves a little as the budget learns how long things take: never back up
        self.last_lr = min(self.last_lr, at(min(clock, end), state.warmup_end, end))
        return self.last_lr

    def run(self, resume: str | None) -> TrainResult:
        """Train until ``max_steps``, the time budget, or a stop signal; each step is
        followed by the decisions :meth:`_after_step` makes (log, validate, sample, save)."""
        state = self._start(resume)
        with self._reporting(state), SignalStop() as stop:
            if state.step == 0 and self.cfg.eval_interval:
                self._evaluate(state)
            while state.step < self.cfg.max_steps:
                self._train_one(state)
                # one process reads its own flag; several agree on it at log steps only
                at_log = state.step % self.cfg.log_interval == 0
                signum = agree_on_signal(stop.signum, self.world, self.device) if (
                    at_log or self.world == 1) else 0  # fmt: skip
                out_of_time = self.budget is not None and self.budget.spent(self.meter.elapsed)
                done = state.step == self.cfg.max_steps or bool(signum) or out_of_time
                if out_of_time and self.budget is not None:
                    state.out_of_time = self.budget.seconds
                self._after_step(state, at_log=at_log, done=done)
                if signum:
                    self.result.stopped = signal.Signals(signum).name
                    self.say(f"stopped by {self.result.stopped} at step {state.step}; "
                             f"checkpoint {self.ckpt_path}")  # fmt: skip
                if done:
                    if out_of_time and not signum:
                        self.say(f"time budget: stopped at step {state.step} after "
                                 f"{self.meter.elapsed:.0f} s")  # fmt: skip
                    elif not signum:
                        self.say(f"done: step {state.step:,} ({state.tokens_seen:,} tokens), "
                                 f"{self.meter.elapsed:.1f} s after the run began")  # fmt: skip
                    break
        self.result.step = state.step
        return self.result

    def _start(self, resume: str | None) -> TrainState:
        """Resolve ``resume``, build the model and optimizer, check that there is training
        left, and write the run folder's config."""
        cfg = self.cfg
        resume_path = find_resume_path(resume, cfg.out_dir)
        if resume_path is None and os.path.isfile(self.ckpt_path):
            raise ValueError(
                f"{cfg.out_dir} already holds a run ({self.ckpt_path}); pass --resume to "
                "continue it, or choose another out_dir"
            )
        state = self._build(resume_path)
        if state.step >= cfg.max_steps:
            raise ValueError(
                f"the checkpoint is at step {state.step}, which is not below max_steps "
                f"({cfg.max_steps}); raise max_steps to train further"
            )
        budget = cfg.time_budget_seconds
        self.budget = None
        if budget is not None:
            # before the first checkpoint: weights and moments (12 bytes a parameter) at 100 MB/s
            checkpoint_guess = 0.2 + 12 * self.model.num_parameters() / 100e6
            # a validation batch is a forward pass of a micro-batch: a third of its step's
            # arithmetic, but its own host overhead; count it as a whole step until measured
            batches = cfg.eval_batches or len(self.val_tokens) // (self.micro * self.ctx) + 1
            steps = batches / cfg.data.grad_accum_steps
            self.budget = TimeBudget(budget, checkpoint_guess=checkpoint_guess,
                                     validation_steps=steps)  # fmt: skip
            if (state.out_of_time or 0.0) >= budget or state.elapsed >= budget:
                raise ValueError(
                    f"the run has used its time budget ({cfg.time_budget}: {state.elapsed:.0f} "
                    "s so far); raise time_budget to train further"
                )
        if self.rank == 0:
            os.makedirs(cfg.out_dir, exist_ok=True)
            write_json(os.path.join(cfg.out_dir, "config.json"), cfg.to_dict())
            truncate_metrics(self.metrics_path, state.step if resume_path else -1)
        self.resumed = resume_path is not None
        return state

    @contextlib.contextmanager
    def _reporting(self, state: TrainState) -> Iterator[None]:
        """The metrics logger, the progress bar and the run's clock, for one call."""
        cfg = self.cfg
        self.result = TrainResult(
            state.step, "completed", checkpoint=self.ckpt_path, metrics=self.metrics_path
        )
        self.say = tqdm.write if self.rank == 0 else (lambda _msg: None)
        how = f"resuming from step {state.step}" if self.resumed else "starting"
        self.say(
            f"{how}: {self.model.num_parameters():,} parameters, {len(self.train_tokens):,} "
            f"training tokens, {self.world} process(es) on {self.device}, out_dir {cfg.out_dir}"
            + (f", time budget {cfg.time_budget}" if cfg.time_budget is not None else "")
            + f"; set up {time.perf_counter() - self.began:.1f} s after the run began"
        )
        # the clock counts from `started` (cs336 train: the process's start), over resumes
        self.meter = ThroughputMeter(state.elapsed + time.perf_counter() - self.began)
        self.session_tokens, self.first = 0, state.step
        self.last_lr = math.inf
        self.pending: list[Pending] = []
        with (
            MetricsLogger(self._sinks() if self.rank == 0 else []) as self.logger,
            tqdm(
                total=cfg.max_steps, initial=state.step, unit="step", dynamic_ncols=True,
                disable=not cfg.progress or self.rank != 0,
            ) as self.bar,
        ):  # fmt: skip
            yield

    def _train_one(self, state: TrainState) -> None:
        """One training step (left running on the device) and the state after it."""
        began = time.perf_counter()
        self.pending.append(self._step(state, self._lr(state)))
        if state.step == self.first:  # the first step: how long it took to get here
            float(self.pending[0].stats.loss)  # waits for it (once)
            now = time.perf_counter()
            total, own = now - self.began, now - began
            if self.budget is not None:
                self.budget.note("first step", own)
            compiling = f" ({own:.1f} s of it compiling the step)" if self.compiled else ""
            self.say(f"first step done {total:.1f} s after the run began{compiling}")
        tokens = self.cfg.data.batch_size * self.ctx
        self.session_tokens += tokens
        state.advance(tokens, self.meter.elapsed)
        self.bar.update(1)

    def _after_step(self, state: TrainState, *, at_log: bool, done: bool) -> None:
        """Log, validate, sample and save as the intervals (or the end) ask."""
        cfg, step = self.cfg, state.step
        evaluate_now = done or bool(cfg.eval_interval and step % cfg.eval_interval == 0)
        checkpoint_now = done or bool(
            cfg.checkpoint_interval and step % cfg.checkpoint_interval == 0
        )
        if at_log or evaluate_now or checkpoint_now:
            self._log_steps(state)  # raises for a non-finite step, before any checkpoint
        if evaluate_now:
            self._evaluate(state)
        if self.tokenizer is not None and step % cfg.sample_interval == 0:
            self._sample(state)
        if checkpoint_now:
            record = {
                "train_loss": self.result.train_losses[step],
                "val_loss": self.result.val_losses.get(step),
            }
            self._timed("checkpoint", lambda: self._save(state, record))

    def _timed(self, what: str, work: Callable[[], object]) -> None:
        """``work()`` outside the throughput count, its duration noted by the budget."""
        began = time.perf_counter()
        with self.meter.paused():
            work()
        if self.budget is not None:
            self.budget.note(what, time.perf_counter() - began)

    def _log_steps(self, state: TrainState) -> None:
        """Read the pending steps and log every log_interval-th one (and the last)."""
        cfg, tokens_per_step = self.cfg, self.cfg.data.batch_size * self.ctx
        flops_cfg = dataclasses.replace(cfg.model, context_length=self.ctx)
        read = self._read(self.pending)
        for p, loss, norm in read:
            self.result.train_losses[p.step] = loss
            if p.step % cfg.log_interval and p.step != state.step:
                continue
            tps = self.meter.tokens_per_second(self.session_tokens)
            if self.budget is not None and read[0][0].step > self.first + 1:  # not compiling
                self.budget.note("step", tokens_per_step / tps)
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
            self.logger.log(record)
            self.bar.set_postfix(loss=f"{loss:.3f}", lr=f"{p.lr:.2e}")
        self.pending.clear()

    def _evaluate(self, state: TrainState) -> None:
        """Validate, log it, and keep the best checkpoint when asked."""
        losses: list[float] = []
        self._timed("validation", lambda: losses.append(self._validate()))
        loss = losses[0]
        self.result.val_losses[state.step] = loss
        record = {
            "step": state.step, "tokens": state.tokens_seen, "time": self.meter.elapsed,
            "val_loss": loss,
        }  # fmt: skip
        self.logger.log(record)
        self.say(f"step {state.step}: val loss {loss:.4f}")
        if self.cfg.keep_best and state.step > 0 and loss < (state.best_val or math.inf):
            state.best_val = loss
            best = {"train_loss": self.result.train_losses.get(state.step), "val_loss": loss}
            self._timed("checkpoint", lambda: self._save(state, best, name=BEST))

    def _sample(self, state: TrainState) -> None:
        """Draw, print and log a text sample (process 0 only)."""
        tokenizer = self.tokenizer
        if self.rank != 0 or tokenizer is None:
            return
        texts: list[str] = []
        seed = step_seed(state.seed, 0, state.step)
        self._timed("validation", lambda: texts.append(draw_sample(
            self.model, tokenizer, self.cfg.sample_prompt, seed, self.autocast)))  # fmt: skip
        self.logger.log({"step": state.step, "time": self.meter.elapsed, "sample": texts[0]})
        indented = "\n".join("    " + line for line in texts[0].splitlines())
        self.say(f"step {state.step}: sample (temperature {TEMPERATURE}, top-p {TOP_P}):\n"
                 f"{indented}")  # fmt: skip
