"""Training configuration: dataclasses that check themselves, loaded from TOML or JSON,
with ``section.key=value`` overrides for every field.

A config file has the run settings at the top and one table per section::

    max_steps = 5000              # top-level keys are TrainConfig's run settings
    out_dir = "runs/tinystories"
    [model]                       # cs336.nn.model.ModelConfig
    vocab_size = 10000            # (preset = "cs336-2025" here: the 2025 handout's model,
    ...                           #  fields below it override the preset's)
    [optim]                       # OptimConfig
    lr = 1e-3
    [data]                        # DataConfig
    train_path = "data/tinystories/train.npy"

An optional ``[sweep]`` table maps dotted keys to lists of values; :func:`load_sweep`
expands it into one config per combination (see ``configs/2024/lr_sweep.toml``).

>>> cfg = TrainConfig.from_dict({
...     "model": dict(vocab_size=100, context_length=16, d_model=32, num_layers=1,
...                   num_heads=2, d_ff=64),
...     "data": dict(train_path="t.npy", val_path="v.npy")})
>>> apply_overrides(cfg.to_dict(), {"optim.lr": "3e-4"})["optim"]["lr"]
0.0003
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from cs336.nn.config import MODEL_PRESETS, ModelConfig, expand_preset
from cs336.training.budget import parse_duration
from cs336.training.fields import FieldSpec, build, convert, dataclass_fields, unknown_key

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

__all__ = [
    "DataConfig",
    "ModelConfig",
    "OptimConfig",
    "TrainConfig",
    "apply_overrides",
    "field_specs",
    "read_config_file",
    "load_config",
    "load_sweep",
]


def _help(text: str) -> dict[str, str]:
    return {"help": text}


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


@dataclass
class OptimConfig:
    """AdamW and its learning-rate schedule (linear warmup, cosine decay, then ``min_lr``).

    Raises:
        ValueError: naming the bad field and value.
    """

    lr: float = field(default=1e-3, metadata=_help("peak learning rate, after warmup"))
    min_lr: float = field(default=1e-4, metadata=_help("learning rate at the end of the cosine"))
    warmup_iters: int = field(default=100, metadata=_help("steps of linear warmup from 0 to lr"))
    cosine_cycle_iters: int | None = field(
        default=None,
        metadata=_help("step at which the cosine reaches min_lr (default: max_steps)"),
    )
    betas: tuple[float, float] = field(
        default=(0.9, 0.95), metadata=_help("AdamW beta1,beta2 (e.g. 0.9,0.95)")
    )
    eps: float = field(default=1e-8, metadata=_help("AdamW epsilon"))
    weight_decay: float = field(
        default=0.1, metadata=_help("decoupled weight decay (not applied to norms, embeddings)")
    )
    grad_clip: float = field(
        default=1.0, metadata=_help("max global L2 norm of the gradients; 0 disables clipping")
    )
    impl: Literal["cs336", "torch"] = field(
        default="cs336",
        metadata=_help(
            "AdamW implementation: cs336 (the handout's formula; compiled with the step, one "
            "flat update) or torch (torch.optim.AdamW, fused kernel; decays before the step)"
        ),
    )
    decay: Literal["after", "before"] = field(
        default="after",
        metadata=_help(
            "AdamW's weight decay after the Adam step (2024, 2025 handouts) or before the "
            "moment updates (2026 handout)"
        ),
    )
    schedule: Literal["cosine", "wsd"] = field(
        default="cosine",
        metadata=_help(
            "learning rate after warmup: cosine down to min_lr, or wsd (warmup-stable-decay: "
            "lr, then a linear decay to min_lr over the last `cooldown` of the run)"
        ),
    )
    cooldown: float = field(
        default=0.2, metadata=_help("wsd: fraction of the run after warmup spent decaying")
    )

    def __post_init__(self) -> None:
        self.betas = tuple(self.betas)  # type: ignore[assignment]  # TOML/JSON give a list
        _check(self.lr > 0 and math.isfinite(self.lr), f"optim.lr must be > 0, got {self.lr}")
        _check(
            0 <= self.min_lr <= self.lr,
            f"optim.min_lr ({self.min_lr}) must be in [0, lr ({self.lr})]",
        )
        _check(self.warmup_iters >= 0, f"optim.warmup_iters must be >= 0, got {self.warmup_iters}")
        if self.cosine_cycle_iters is not None:
            _check(
                self.cosine_cycle_iters > self.warmup_iters,
                f"optim.warmup_iters ({self.warmup_iters}) must be < cosine_cycle_iters "
                f"({self.cosine_cycle_iters})",
            )
        _check(
            len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas),
            f"optim.betas must be two numbers in [0, 1), got {self.betas}",
        )
        _check(self.eps > 0, f"optim.eps must be > 0, got {self.eps}")
        _check(self.weight_decay >= 0, f"optim.weight_decay must be >= 0, got {self.weight_decay}")
        _check(self.grad_clip >= 0, f"optim.grad_clip must be >= 0, got {self.grad_clip}")
        _check(
            self.impl in ("cs336", "torch"), f"optim.impl must be cs336 or torch, got {self.impl!r}"
        )
        _check(
            self.decay in ("after", "before"),
            f"optim.decay must be after or before, got {self.decay!r}",
        )
        _check(
            0.0 <= self.cooldown <= 1.0, f"optim.cooldown must be in [0, 1], got {self.cooldown}"
        )


@dataclass
class DataConfig:
    """Token files and batch shape.

    Raises:
        ValueError: naming the bad field and value.
    """

    train_path: str = field(metadata=_help("training tokens (.npy from `cs336 tokenize`)"))
    val_path: str = field(metadata=_help("validation tokens (.npy)"))
    batch_size: int = field(
        default=32, metadata=_help("sequences per optimizer step, over all processes")
    )
    grad_accum_steps: int = field(
        default=1, metadata=_help("micro-batches per step (batch_size must divide evenly)")
    )
    context_length: int | None = field(
        default=None, metadata=_help("tokens per training sequence (default: the model's)")
    )
    tokenizer: str | None = field(
        default=None,
        metadata=_help("tokenizer folder, for samples (default: `tokenizer` beside train_path)"),
    )

    def __post_init__(self) -> None:
        for name in ("train_path", "val_path"):
            value = getattr(self, name)
            _check(isinstance(value, str) and value != "", f"data.{name} must be a file path")
        _check(self.batch_size >= 1, f"data.batch_size must be >= 1, got {self.batch_size}")
        _check(
            self.grad_accum_steps >= 1,
            f"data.grad_accum_steps must be >= 1, got {self.grad_accum_steps}",
        )
        _check(
            self.batch_size % self.grad_accum_steps == 0,
            f"data.batch_size ({self.batch_size}) must be divisible by grad_accum_steps "
            f"({self.grad_accum_steps})",
        )
        if self.context_length is not None:
            _check(
                self.context_length >= 1,
                f"data.context_length must be >= 1, got {self.context_length}",
            )


@dataclass
class TrainConfig:
    """Everything a training run needs: the model, the optimizer, the data, and the run
    settings below. ``cs336 train CONFIG --section.key value`` builds one.

    Raises:
        ValueError: naming the bad field and value.
    """

    model: ModelConfig
    data: DataConfig
    optim: OptimConfig = field(default_factory=OptimConfig)
    max_steps: int = field(default=5000, metadata=_help("optimizer steps in the whole run"))
    eval_interval: int = field(
        default=500, metadata=_help("steps between validations (0: only at the end)")
    )
    eval_batches: int | None = field(
        default=50, metadata=_help("validation batches per evaluation (none: the whole file)")
    )
    log_interval: int = field(default=10, metadata=_help("steps between metrics records"))
    checkpoint_interval: int = field(
        default=1000, metadata=_help("steps between checkpoints (0: only at the end)")
    )
    out_dir: str = field(
        default="runs/default",
        metadata=_help(
            "the run folder: checkpoint.pt, metrics.jsonl, config.json (a new run: a new or "
            "empty folder)"
        ),
    )
    checkpoint_format: Literal["torch", "safetensors"] = field(
        default="torch",
        metadata=_help(
            "torch: the weights inside checkpoint.pt; safetensors: in OUT_DIR/model.safetensors "
            "beside it (loads without pickle; needs safetensors)"
        ),
    )
    init_from: str | None = field(
        default=None,
        metadata=_help(
            "start a new run from the weights of this checkpoint, weights file or run folder "
            "(e.g. from cs336 import-hf); optimizer and schedule start fresh; unused with "
            "--resume"
        ),
    )
    seed: int = field(default=0, metadata=_help("seed of the init, dropout and data order"))
    device: str = field(default="auto", metadata=_help("auto (cuda if present), cpu, cuda, ..."))
    dtype: Literal["auto", "float32", "bfloat16"] = field(
        default="auto", metadata=_help("autocast dtype; auto: bfloat16 on CUDA, else float32")
    )
    compile: bool | Literal["auto"] = field(
        default="auto",
        metadata=_help(
            "torch.compile the training step (model, loss and AdamW update); auto: on CUDA, "
            "and on the CPU when the run would take over 10 minutes uncompiled"
        ),
    )
    tf32: bool = field(default=True, metadata=_help("allow TF32 matmuls on CUDA"))
    peak_flops: float | None = field(
        default=None,
        metadata=_help("accelerator peak FLOP/s for MFU (default: known GPUs; none on CPU)"),
    )
    wandb_project: str | None = field(
        default=None, metadata=_help("log to this Weights & Biases project (needs wandb)")
    )
    tensorboard: bool = field(
        default=False, metadata=_help("also log to OUT_DIR/tensorboard (needs tensorboard)")
    )
    progress: bool = field(default=True, metadata=_help("show a progress bar"))
    time_budget: float | str | None = field(
        default=None,
        metadata=_help(
            "end the run within this wall-clock time (e.g. 45m, 2h, 600 seconds), start-up, "
            "validations and the last checkpoint included; the learning-rate schedule then "
            "follows the time, and max_steps is only an upper bound"
        ),
    )
    sample_interval: int = field(
        default=0, metadata=_help("steps between text samples printed and logged (0: none)")
    )
    sample_prompt: str = field(default="The", metadata=_help("the samples' prompt"))
    keep_best: bool = field(
        default=False,
        metadata=_help("also keep the checkpoint of the lowest validation loss (best.pt)"),
    )

    def __post_init__(self) -> None:
        if isinstance(self.model, Mapping):
            self.model = ModelConfig.from_dict(self.model)
        if isinstance(self.data, Mapping):
            self.data = _build(DataConfig, self.data, "data")
        if isinstance(self.optim, Mapping):
            self.optim = _build(OptimConfig, self.optim, "optim")
        _check(self.max_steps >= 1, f"max_steps must be >= 1, got {self.max_steps}")
        for name in ("eval_interval", "checkpoint_interval"):
            _check(getattr(self, name) >= 0, f"{name} must be >= 0, got {getattr(self, name)}")
        _check(self.log_interval >= 1, f"log_interval must be >= 1, got {self.log_interval}")
        if self.eval_batches is not None:
            _check(self.eval_batches >= 1, f"eval_batches must be >= 1, got {self.eval_batches}")
        _check(self.out_dir != "", "out_dir must not be empty")
        _check(
            self.checkpoint_format in ("torch", "safetensors"),
            f"checkpoint_format must be torch or safetensors, got {self.checkpoint_format!r}",
        )
        _check(self.init_from != "", "init_from must be a checkpoint path (or unset)")
        _check(
            self.dtype in ("auto", "float32", "bfloat16"),
            f"dtype must be auto, float32 or bfloat16, got {self.dtype!r}",
        )
        _check(
            self.compile in (True, False, "auto"),
            f"compile must be true, false or auto, got {self.compile!r}",
        )
        if self.peak_flops is not None:
            _check(self.peak_flops > 0, f"peak_flops must be > 0, got {self.peak_flops}")
        if self.time_budget is not None:
            parse_duration(self.time_budget)  # raises, naming the value
        _check(
            self.sample_interval >= 0, f"sample_interval must be >= 0, got {self.sample_interval}"
        )
        ctx = self.context_length
        _check(
            ctx <= self.model.context_length,
            f"data.context_length ({ctx}) is longer than the model's context_length "
            f"({self.model.context_length})",
        )
        _check(
            self.optim.warmup_iters < self.cosine_cycle_iters,
            f"optim.warmup_iters ({self.optim.warmup_iters}) must be < the cosine cycle "
            f"({self.cosine_cycle_iters} steps)",
        )

    @property
    def context_length(self) -> int:
        """Tokens per training sequence: ``data.context_length`` or the model's."""
        return self.data.context_length or self.model.context_length

    @property
    def time_budget_seconds(self) -> float | None:
        """``time_budget`` in seconds (None: no budget)."""
        return None if self.time_budget is None else parse_duration(self.time_budget)

    @property
    def cosine_cycle_iters(self) -> int:
        """``optim.cosine_cycle_iters``, defaulting to ``max_steps``."""
        return self.optim.cosine_cycle_iters or self.max_steps

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe nested dict (``TrainConfig.from_dict`` inverts it)."""
        d = dataclasses.asdict(self)
        d["model"] = self.model.to_dict()
        d["optim"]["betas"] = list(self.optim.betas)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, source: str = "config") -> TrainConfig:
        """Build from a nested dict (a parsed TOML/JSON file).

        Raises:
            ValueError: for an unknown or missing key (named, with a suggestion) or a bad
                value.
        """
        return _build(cls, d, "", source=source)


# ---------------------------------------------------------------------------------------------
# Fields and overrides

_SECTIONS: dict[str, type] = {"model": ModelConfig, "data": DataConfig, "optim": OptimConfig}


def _build(cls: type, d: Mapping[str, Any], prefix: str, *, source: str = "config") -> Any:
    sections = _SECTIONS if cls is TrainConfig else None
    if cls is TrainConfig and isinstance(d.get("model"), Mapping):  # [model] preset = "..."
        d = {**d, "model": expand_preset(d["model"])}
    return build(cls, d, prefix, sections=sections, source=source)


# `preset` in the [model] table is not a ModelConfig field: it stands for the fields of a
# handout's model (expand_preset), which the fields given beside it override.
_PRESET = FieldSpec(
    "model.preset",
    Literal[tuple(MODEL_PRESETS)],
    None,
    "a handout's model: cs336-2024 (GELU, learned positions) or cs336-2025 (SwiGLU, RoPE); "
    "the model fields given beside it override its choices",
)


def field_specs() -> list[FieldSpec]:
    """Every field a config file or a ``--section.key`` flag can set, run settings first."""
    specs = list(dataclass_fields(TrainConfig, skip=list(_SECTIONS)).values())
    specs.append(_PRESET)
    for section, cls in _SECTIONS.items():
        specs += [
            dataclasses.replace(s, name=f"{section}.{s.name}")
            for s in dataclass_fields(cls).values()
        ]
    return specs


def apply_overrides(d: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Set ``{"section.key": value}`` (or ``{"key": value}`` for run settings) in the nested
    dict ``d``, converting each value (a command-line string, or a typed value) to the
    field's type. Returns ``d``.

    Raises:
        ValueError: for an unknown key (with a suggestion) or a value of the wrong type.
    """
    specs = {s.name: s for s in field_specs()}
    for key, value in overrides.items():
        if key not in specs:
            raise unknown_key(key, list(specs), "the overrides")
        section, _, name = key.rpartition(".")
        target = d.setdefault(section, {}) if section else d
        target[name] = convert(value, specs[key].type, key)
    return d


# ---------------------------------------------------------------------------------------------
# Files


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Parse a ``.toml`` or ``.json`` config file into a dict.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file is not valid TOML / JSON, or has another extension.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"config file not found: {path}")
    ext = os.path.splitext(path)[1].lower()
    try:
        if ext == ".toml":
            with open(path, "rb") as f:
                return tomllib.load(f)
        if ext == ".json":
            with open(path, encoding="utf-8") as f:
                d = json.load(f)
            if not isinstance(d, dict):
                raise ValueError("the top level must be an object")
            return d
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, ValueError) as e:
        raise ValueError(f"cannot parse config file {path}: {e}") from None
    raise ValueError(f"config file {path} must end in .toml or .json")


def load_config(
    path: str | os.PathLike[str] | None, overrides: Mapping[str, Any] | None = None
) -> TrainConfig:
    """One :class:`TrainConfig` from a TOML/JSON file (or none) plus ``overrides``.

    Raises:
        FileNotFoundError, ValueError: see :func:`read_config_file` and
            :func:`apply_overrides`; a file with a ``[sweep]`` table needs
            :func:`load_sweep`.
    """
    configs = load_sweep(path, overrides)
    if len(configs) != 1:
        raise ValueError(f"{path} defines a sweep of {len(configs)} runs; use load_sweep")
    return configs[0]


def load_sweep(
    path: str | os.PathLike[str] | None, overrides: Mapping[str, Any] | None = None
) -> list[TrainConfig]:
    """The runs of a config file: one per combination of the values in its ``[sweep]``
    table (a single run without one). Each run's ``out_dir`` gets a ``key=value``
    subdirectory per swept key. An override of a swept key replaces the sweep over it.

    Raises:
        FileNotFoundError, ValueError: as :func:`load_config`; also for a sweep key that
            is unknown or whose value is not a non-empty list.
    """
    overrides = dict(overrides or {})
    base = read_config_file(path) if path is not None else {}
    source = os.fspath(path) if path is not None else "the command line"
    sweep = base.pop("sweep", {})
    if not isinstance(sweep, Mapping):
        raise ValueError(f"[sweep] in {source} must be a table of key = [values]")
    known = {s.name for s in field_specs()}
    axes: list[tuple[str, list[Any]]] = []
    for key, values in sweep.items():
        if key not in known:
            raise unknown_key(key, sorted(known), f"[sweep] of {source}")
        if not isinstance(values, list) or not values:
            raise ValueError(f"sweep key {key!r} in {source} needs a non-empty list of values")
        if key not in overrides:
            axes.append((key, values))
    configs = []
    for point in itertools.product(*(values for _, values in axes)):
        d = json.loads(json.dumps(base))  # a deep copy of plain data
        apply_overrides(d, overrides)
        apply_overrides(d, dict(zip([k for k, _ in axes], point, strict=True)))
        if axes:
            run = ",".join(f"{k}={v}" for (k, _), v in zip(axes, point, strict=True))
            d["out_dir"] = os.path.join(d.get("out_dir", TrainConfig.out_dir), run)
        configs.append(TrainConfig.from_dict(d, source=source))
    return configs
