"""One call of :func:`~cs336.training.loop.train` on one process, as machinery:
:class:`Session` opens and checks the token files, builds the model and optimizer (from a
checkpoint when resuming), runs one step on the next batch (falling back to eager if
compiling fails), reads step results back, validates and saves checkpoints. When to do
each is the loop's decision (:mod:`cs336.training.loop`).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import warnings
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from cs336._files import atomic_open
from cs336.accounting import peak_flops
from cs336.optim import AdamW
from cs336.training.allocator import keep_freed_memory
from cs336.training.budget import TimeBudget
from cs336.training.checkpoint import (
    CHECKPOINT_FILE,
    WEIGHTS_FILE,
    read_checkpoint,
    save_checkpoint,
)
from cs336.training.config import TrainConfig
from cs336.training.data import batch_at, check_tokens, eval_batches, open_tokens, sample_starts
from cs336.training.metrics import METRICS_FILE, require
from cs336.training.samples import find_tokenizer
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

CHECKPOINT = CHECKPOINT_FILE
BEST, BEST_WEIGHTS = "best.pt", "best.safetensors"  # keep_best: the lowest validation loss


class NonFiniteLossError(RuntimeError):
    """The loss or gradient norm became NaN or infinite; that step changed nothing."""


def write_json(path: str, obj: Any) -> None:
    with atomic_open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


@dataclass
class Pending:
    """A finished step whose results are still on the device."""

    step: int
    lr: float
    tokens: int
    stats: StepStats


class Session:
    """What one process of a run works with, and the operations on it."""

    def __init__(
        self,
        config: TrainConfig,
        rank: int,
        world: int,
        device: torch.device,
        began: float,
    ) -> None:
        self.began = began  # the time.perf_counter() reading at which the run's clock is 0
        self.cfg, self.rank, self.world, self.device = config, rank, world, device
        self.ctx = config.context_length
        per_step = config.data.grad_accum_steps * world
        if config.data.batch_size % per_step:
            raise ValueError(
                f"data.batch_size ({config.data.batch_size}) must be divisible by "
                f"grad_accum_steps x processes ({config.data.grad_accum_steps} x {world})"
            )
        self.micro = config.data.batch_size // per_step
        # the only randomness of a step; without it, seeding every step is host time for nothing
        self.dropout = config.model.attn_pdrop > 0 or config.model.residual_pdrop > 0
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
        self.autocast = autocast_for(config.dtype, device)
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else ""
        # the peak of the units the matmuls run on: bf16, or TF32 for float32 on CUDA
        bf16 = self.autocast is not contextlib.nullcontext
        precision = "bf16" if bf16 else ("tf32" if config.tf32 and name else None)
        self.peak = config.peak_flops or (peak_flops(name, precision) if precision else None)
        if config.tensorboard:
            require("tensorboard", "tensorboard = true")
        if config.wandb_project:
            require("wandb", f"wandb_project = {config.wandb_project!r}")
        self.tokenizer = find_tokenizer(config)  # for samples; checked before any work
        self.last_ckpt_step: int | None = None
        self.budget: TimeBudget | None = None

    # -- setup ------------------------------------------------------------------------------

    def _build(self, resume_path: str | None) -> TrainState:
        cfg = self.cfg
        loaded = resume_path is not None or cfg.init_from is not None
        self.model = build_model(cfg, self.device, loaded=loaded)
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

    # -- one step, reading results, validation, checkpoints ------------------------------------

    def _step(self, state: TrainState, lr: float) -> Pending:
        cfg = self.cfg
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
        if self.dropout:
            state.seed_step(self.rank)  # this step's dropout masks, on this process

        def step() -> StepStats:
            return train_step(
                self.train_model, self.optimizer, batches, grad_clip=cfg.optim.grad_clip,
                autocast=self.autocast,
            )  # fmt: skip

        if not self.first_compiled_step:
            return Pending(state.step + 1, lr, state.tokens_seen, step())
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
            if self.dropout:
                state.seed_step(self.rank)
            stats = step()
        return Pending(state.step + 1, lr, state.tokens_seen, stats)

    def _read(self, pending: list[Pending]) -> list[tuple[Pending, float, float]]:
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

    def _save(self, state: TrainState, record: dict[str, Any], name: str = CHECKPOINT) -> None:
        """Write checkpoint ``name`` (``checkpoint.pt``, or ``best.pt``) and its ``.json``;
        with ``checkpoint_format = "safetensors"`` the weights go beside it."""
        out = self.cfg.out_dir
        if self.rank == 0:
            extra = {"config": self.cfg.to_dict(), "train_state": state.state_dict()}
            weights = None
            if self.cfg.checkpoint_format == "safetensors":
                weights = os.path.join(out, WEIGHTS_FILE if name == CHECKPOINT else BEST_WEIGHTS)
            path = os.path.join(out, name)
            save_checkpoint(self.model, self.optimizer, state.step, path, extra=extra,
                            weights=weights)  # fmt: skip
            meta = {
                "iteration": state.step,
                "tokens_seen": state.tokens_seen,
                "elapsed": state.elapsed,
                "config": extra["config"],
            }
            write_json(os.path.splitext(path)[0] + ".json", {**meta, **record})
        if name == CHECKPOINT:
            self.last_ckpt_step = state.step
        if self.world > 1:
            dist.barrier()
