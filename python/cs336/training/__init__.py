"""Training a language model: the run's configuration (:mod:`~cs336.training.config`),
token files and batches (:mod:`~cs336.training.data`), checkpoints
(:mod:`~cs336.training.checkpoint`), the loop (:mod:`~cs336.training.loop`), metrics sinks
(:mod:`~cs336.training.metrics`) and loss plots (:mod:`~cs336.training.plot`).

``train(config)`` is what ``cs336 train`` runs. The library never imports the CLI.
"""

from cs336.training.checkpoint import find_resume_path, load_checkpoint, save_checkpoint
from cs336.training.config import (
    DataConfig,
    OptimConfig,
    TrainConfig,
    load_config,
    load_sweep,
)
from cs336.training.data import get_batch, open_tokens
from cs336.training.loop import TrainResult, train
from cs336.training.session import NonFiniteLossError

__all__ = [
    "DataConfig",
    "NonFiniteLossError",
    "OptimConfig",
    "TrainConfig",
    "TrainResult",
    "find_resume_path",
    "get_batch",
    "load_checkpoint",
    "load_config",
    "load_sweep",
    "open_tokens",
    "save_checkpoint",
    "train",
]
