"""One optimizer step and one validation pass: :func:`train_step` and :func:`evaluate`,
the code that ``cs336 train`` (:mod:`cs336.training.loop`), the demo and
``benchmarks/bench_train_step.py`` all run, and the pieces the three build the same way
(:func:`build_optimizer`, :func:`autocast_for`).

Nothing here reads a value back to the host: results stay on the device as tensors, so
a GPU never waits for Python between steps. The non-finite guard is decided on the
device too (``AdamW.step(skip=...)``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, cast

import torch
import torch.distributed as dist
from torch import Tensor, nn

from cs336.nn.compiled import CompiledLM
from cs336.nn.groups import param_groups
from cs336.nn.layers import no_weight_init
from cs336.nn.model import TransformerLM
from cs336.optim import SGD, AdamW, clip_grad_norm
from cs336.training.config import TrainConfig

__all__ = [
    "StepStats",
    "autocast_for",
    "build_model",
    "build_optimizer",
    "compile_backend",
    "compile_enabled",
    "evaluate",
    "train_step",
    "wrap_model",
]

Autocast = Callable[[], AbstractContextManager[object]]


@dataclass
class StepStats:
    """What one :func:`train_step` did, as 0-dim tensors on the model's device. Reading
    one (``float(stats.loss)``) makes the host wait for the device, so a loop reads them
    only when it logs.

    Attributes:
        loss: mean loss over the step's batch (all micro-batches; all processes under DDP).
        grad_norm: global L2 norm of the gradients before clipping.
        applied: False when the loss or the norm was not finite: then the step changed
            no weight and no optimizer moment.
    """

    loss: Tensor
    grad_norm: Tensor
    applied: Tensor


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Sequence[tuple[Tensor, Tensor]],
    *,
    grad_clip: float = 0.0,
    autocast: Autocast = contextlib.nullcontext,
) -> StepStats:
    """One optimizer step on ``batches``, a list of ``(inputs, targets)`` micro-batches whose
    gradients are accumulated (each loss divided by their number).

    ``model(x, targets=y)`` must return the mean loss (as :class:`~cs336.TransformerLM`
    does; ``model`` may be wrapped by ``torch.compile`` or DDP, whose gradients are then
    synchronised once, after the last micro-batch). Gradients are clipped to the global
    norm ``grad_clip`` (0: no clipping), then ``optimizer.step(skip=not finite)`` updates
    the weights unless the loss or the norm is NaN/inf (decided on the device for
    :class:`~cs336.AdamW`, :class:`~cs336.SGD` and torch's fused optimizers; another
    optimizer is stepped only after the host checks), and the gradients are released.

    >>> from cs336 import AdamW, ModelConfig, TransformerLM
    >>> m = TransformerLM.from_config(ModelConfig(50, 8, 16, 1, 2, 32))
    >>> x = torch.randint(0, 50, (2, 8))
    >>> stats = train_step(m, AdamW(m.parameters()), [(x, x)], grad_clip=1.0)
    >>> bool(stats.applied), stats.loss.shape
    (True, torch.Size([]))
    """
    if not batches:
        raise ValueError("train_step needs at least one micro-batch")
    ddp = isinstance(model, nn.parallel.DistributedDataParallel)
    total = None
    for i, (x, y) in enumerate(batches):
        last = i == len(batches) - 1
        with contextlib.nullcontext() if last or not ddp else model.no_sync():  # type: ignore[operator]
            with autocast():
                loss = model(x, targets=y)
            (loss / len(batches)).backward()
        total = loss.detach() if total is None else total + loss.detach()
    assert total is not None
    loss = total / len(batches)
    if ddp and dist.is_initialized():  # the mean over processes, so every process agrees
        dist.all_reduce(loss)
        loss = loss / dist.get_world_size()
    norm = clip_grad_norm(model.parameters(), grad_clip if grad_clip > 0 else math.inf)
    applied = torch.isfinite(loss) & torch.isfinite(norm)
    if isinstance(optimizer, (AdamW, SGD)):
        optimizer.step(skip=~applied)  # decided on the device
    elif optimizer.defaults.get("fused"):  # torch's fused kernels skip on found_inf
        optimizer.found_inf = (~applied).float()  # type: ignore[attr-defined]
        optimizer.step()
        del optimizer.found_inf  # type: ignore[attr-defined]
    elif bool(applied):  # another optimizer: the host checks first
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return StepStats(loss, norm, applied)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batches: Iterable[tuple[Tensor, Tensor]],
    *,
    autocast: Autocast = contextlib.nullcontext,
) -> Tensor:
    """``[sum of per-token losses, number of tokens]`` over ``batches`` (an iterable of
    ``(inputs, targets)``), a float64 tensor on the model's device, in eval mode (no
    dropout; the mode is restored). Divide the two for the mean loss, after summing over
    processes under DDP."""
    was_training = model.training
    model.eval()
    totals = None
    try:
        for x, y in batches:
            if totals is None:
                totals = torch.zeros(2, dtype=torch.float64, device=x.device)
            with autocast():
                loss = model(x, targets=y)
            totals[0] += loss.double() * y.numel()
            totals[1] += y.numel()
    finally:
        model.train(was_training)
    return totals if totals is not None else torch.zeros(2, dtype=torch.float64)


def build_model(
    config: TrainConfig, device: torch.device, *, loaded: bool = False
) -> TransformerLM:
    """``TransformerLM(config.model)`` on ``device``, initialized from ``config.seed`` (the
    same weights on every process); ``loaded=True``: not initialized, for weights that are
    all loaded next (a resumed run, ``init_from``).

    On CUDA the weights are drawn there, by the GPU's generator: the CPU's draws one number
    at a time (3.4 s for GPT-2 small's 135M weights on two cores with torch 2.15, whose
    truncated normal resamples), the GPU's in milliseconds. A CUDA run therefore starts
    from other weights than a CPU run with the same seed (each device's runs are
    reproducible)."""
    torch.manual_seed(config.seed)
    with no_weight_init() if loaded else contextlib.nullcontext():
        if device.type == "cuda":
            return TransformerLM.from_config(config.model, device=device)
        return TransformerLM.from_config(config.model).to(device)


#: On a GPU, models of at most this many blocks are compiled whole, deeper ones block by
#: block. Each compiled region costs host time at every call (about 0.3 ms a block, forward
#: and backward, on an H200's host), which a shallow model's short GPU step cannot hide
#: (TinyStories: 13.8 ms a step block by block, 12.2 whole); compiling whole costs a few
#: seconds more once, growing with depth (45 s to GPT-2 small's first step). On a CPU the
#: step is long, so the blocks always compile once (benchmarks/RESULTS.md).
WHOLE_GRAPH_MAX_LAYERS = 4


def wrap_model(
    model: nn.Module, device: torch.device, *, world: int = 1, compiled: bool = False
) -> nn.Module:
    """The module :func:`train_step` runs: ``model`` compiled when ``compiled``, then in
    DDP when ``world > 1`` (under torchrun). A :class:`~cs336.TransformerLM` is compiled
    block by block with the head and loss (:class:`~cs336.nn.compiled.CompiledLM`), or on
    an accelerator whole when it has at most :data:`WHOLE_GRAPH_MAX_LAYERS` blocks (model
    and loss in one graph); another module whole."""
    if compiled:
        backend = compile_backend(device.type)
        shallow = isinstance(model, TransformerLM) and (
            model.config.num_layers <= WHOLE_GRAPH_MAX_LAYERS and device.type != "cpu"
        )
        if isinstance(model, TransformerLM) and not shallow:
            model = CompiledLM(model, backend)
        else:
            model = cast(nn.Module, torch.compile(model, backend=backend))
    if world > 1:
        ids = [device.index] if device.type == "cuda" else None
        model = nn.parallel.DistributedDataParallel(model, ids)
    return model


# compile="auto" on the CPU: compile when the run would take longer than this uncompiled.
# Compiling costs about a minute on a small CPU and then makes each step ~20% faster
# (benchmarks/RESULTS.md), so it pays for runs of several minutes. The length is
# estimated from the config alone (6 FLOPs per parameter and token, at a conservative CPU
# rate), so the choice is the same every time the run starts or resumes.
CPU_COMPILE_AFTER_SECONDS = 600.0
CPU_FLOPS_ESTIMATE = 5e10


def compile_backend(device_type: str) -> str:
    """The ``torch.compile`` backend for a device type: ``"aot_eager"`` on Apple ``mps``
    (Inductor does not support it; the 2025 handout's low-resource tip), ``"inductor"``
    (torch's default) elsewhere.

    >>> compile_backend("mps"), compile_backend("cuda")
    ('aot_eager', 'inductor')
    """
    return "aot_eager" if device_type == "mps" else "inductor"


def compile_enabled(config: TrainConfig, device: torch.device) -> bool:
    """Whether the run compiles its step: ``config.compile``, where ``"auto"`` means on
    CUDA always, and on the CPU when the whole run (``max_steps``, also when resuming, so
    that a resumed run computes as the straight one) would take more than
    :data:`CPU_COMPILE_AFTER_SECONDS` uncompiled at :data:`CPU_FLOPS_ESTIMATE`."""
    if config.compile != "auto":
        return bool(config.compile)
    if device.type == "cuda":
        return True
    if device.type != "cpu":
        return False
    from cs336.accounting import train_flops_per_token

    ctx = config.context_length
    per_token = train_flops_per_token(dataclasses.replace(config.model, context_length=ctx))
    tokens = config.max_steps * config.data.batch_size * ctx
    return per_token * tokens / CPU_FLOPS_ESTIMATE > CPU_COMPILE_AFTER_SECONDS


def build_optimizer(
    config: TrainConfig, model: nn.Module, device: torch.device, *, compiled: bool = False
) -> torch.optim.Optimizer:
    """The run's AdamW with ``config.optim``'s hyperparameters and no weight decay on
    norms and embeddings (:func:`~cs336.nn.groups.param_groups`).

    ``optim.impl = "cs336"``: :class:`~cs336.AdamW` (the handout's formula). When the step
    is compiled (``compiled``), the update is too, over flat buffers: one fused kernel per
    param group (the model's parameters move into the buffers, so call this before
    :func:`wrap_model`). Otherwise multi-tensor on CUDA, and per tensor on the CPU, where
    each small tensor's update stays in cache (flat and uncompiled, every operation would
    stream all parameters through memory: 40% slower, benchmarks/RESULTS.md).
    ``"torch"``: ``torch.optim.AdamW`` with its fused kernel where torch has one for
    ``device``.
    """
    opt = config.optim
    groups = param_groups(model, opt.weight_decay)
    if opt.impl == "torch":
        kwargs: dict[str, Any] = {"lr": opt.lr, "betas": opt.betas, "eps": opt.eps}
        try:
            return torch.optim.AdamW(groups, fused=True, **kwargs)
        except RuntimeError:  # no fused kernel for this device: torch's default kernel
            return torch.optim.AdamW(groups, **kwargs)
    cuda = device.type == "cuda"
    return AdamW(groups, lr=opt.lr, betas=opt.betas, eps=opt.eps, decay=opt.decay,
                 foreach=cuda, compile=compiled, flat=compiled)  # fmt: skip


def autocast_for(dtype: str, device: torch.device) -> Autocast:
    """A factory of the autocast context for a run's ``dtype`` (``TrainConfig.dtype``):
    bf16 for ``"bfloat16"``, and for ``"auto"`` on CUDA; else none (float32).

    Raises:
        ValueError: ``dtype`` is not auto, float32 or bfloat16.
    """
    if dtype not in ("auto", "float32", "bfloat16"):
        raise ValueError(f"dtype must be one of auto, float32, bfloat16, got {dtype!r}")
    bf16 = dtype == "bfloat16" or (dtype == "auto" and device.type == "cuda")
    if not bf16:
        return contextlib.nullcontext
    return lambda: torch.autocast(device.type, dtype=torch.bfloat16)
