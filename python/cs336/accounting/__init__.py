"""Resource accounting of a model config: the numbers (:mod:`~cs336.accounting.costs`:
parameters, FLOPs, memory, MFU, the peak FLOP/s table) and the reports ``cs336
accounting`` prints (:mod:`~cs336.accounting.report`)."""

from cs336.accounting.costs import (
    EDITION_MODELS,
    EDITIONS,
    PEAK_FLOPS,
    PRECISIONS,
    PRESETS,
    adamw_step_flops,
    count_parameters,
    forward_flops,
    max_batch_size,
    mfu,
    peak_flops,
    train_flops_per_token,
    training_memory,
    with_edition,
)
from cs336.accounting.report import model_report, presets_report

__all__ = [
    "EDITIONS",
    "EDITION_MODELS",
    "PEAK_FLOPS",
    "PRECISIONS",
    "PRESETS",
    "adamw_step_flops",
    "count_parameters",
    "forward_flops",
    "max_batch_size",
    "mfu",
    "model_report",
    "peak_flops",
    "presets_report",
    "train_flops_per_token",
    "training_memory",
    "with_edition",
]
