"""Metrics of a training run: a JSONL log (always) plus optional Weights & Biases and
TensorBoard sinks, all behind one small :class:`MetricsLogger` interface.

Each JSONL line is one record, e.g.::

    {"step": 100, "tokens": 409600, "time": 12.5, "train_loss": 3.21, "lr": 0.001,
     "grad_norm": 0.84, "tokens_per_s": 32768.0, "mfu": null}
    {"step": 100, "tokens": 409600, "time": 13.1, "val_loss": 3.30}

``time`` is wall-clock seconds of training since the run began (summed over resumes).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol

from cs336._files import atomic_open

METRICS_FILE = "metrics.jsonl"


class ThroughputMeter:
    """Wall-clock time of a run and its training throughput.

    ``elapsed`` counts every second since the run began (summed over resumes: pass the
    seconds already run). ``tokens_per_second`` is the rate since its previous call,
    leaving out the time spent inside :meth:`paused` (validation, checkpoints).

    >>> meter = ThroughputMeter()
    >>> with meter.paused():
    ...     pass
    >>> meter.tokens_per_second(1000) > 0
    True
    """

    def __init__(self, elapsed: float = 0.0) -> None:
        self._origin = time.perf_counter() - elapsed
        self._mark_time = time.perf_counter()
        self._mark_tokens = 0
        self._paused = 0.0

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self._origin

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Time inside this block does not count towards throughput."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self._paused += time.perf_counter() - start

    def tokens_per_second(self, tokens: int) -> float:
        """Tokens per second since the last call (``tokens``: the total processed so far
        in this session)."""
        now = time.perf_counter()
        seconds = max(now - self._mark_time - self._paused, 1e-9)
        rate = (tokens - self._mark_tokens) / seconds
        self._mark_time, self._mark_tokens, self._paused = now, tokens, 0.0
        return rate


def require(module: str, setting: str) -> None:
    """Raise a clear RuntimeError now if the optional ``module`` that ``setting`` needs is
    not installed (checked before a run writes anything)."""
    import importlib.util

    top = module.split(".")[0]
    if importlib.util.find_spec(top) is None:
        package = module.split(".")[-1]
        raise RuntimeError(f"{setting} needs the {package} package: pip install {package}")


class Sink(Protocol):
    def log(self, record: Mapping[str, Any]) -> None: ...

    def close(self) -> None: ...


class JSONLSink:
    """Appends one JSON object per record to ``path``, flushed at once."""

    def __init__(self, path: str) -> None:
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed by close()

    def log(self, record: Mapping[str, Any]) -> None:
        clean = {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in record.items()
        }
        self._file.write(json.dumps(clean) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class TensorBoardSink:
    """Scalars to ``log_dir`` with ``torch.utils.tensorboard`` (needs ``tensorboard``)."""

    def __init__(self, log_dir: str) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise RuntimeError(
                "tensorboard = true needs the tensorboard package: pip install tensorboard"
            ) from None
        self._writer = SummaryWriter(log_dir)

    def log(self, record: Mapping[str, Any]) -> None:
        for key, value in record.items():
            if key != "step" and isinstance(value, (int, float)):
                self._writer.add_scalar(key, value, record["step"])

    def close(self) -> None:
        self._writer.close()


class WandbSink:
    """Records to a Weights & Biases run (needs ``wandb``; resumes the run of ``out_dir``)."""

    def __init__(self, project: str, name: str, config: Mapping[str, Any], out_dir: str) -> None:
        try:
            import wandb
        except ImportError:
            raise RuntimeError(
                f"wandb_project = {project!r} needs the wandb package: pip install wandb"
            ) from None
        self._run = wandb.init(
            project=project, name=name, config=dict(config), dir=out_dir, resume="allow"
        )

    def log(self, record: Mapping[str, Any]) -> None:
        self._run.log({k: v for k, v in record.items() if k != "step"}, step=record["step"])

    def close(self) -> None:
        self._run.finish()


class MetricsLogger:
    """Sends each record to every sink. Used as a context manager; only rank 0 makes one."""

    def __init__(self, sinks: Sequence[Sink]) -> None:
        self.sinks = list(sinks)

    def log(self, record: Mapping[str, Any]) -> None:
        for sink in self.sinks:
            sink.log(record)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()

    def __enter__(self) -> MetricsLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_metrics(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The records of a metrics JSONL file, in order.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: a line is not a JSON object (the line number is named).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"metrics file not found: {path}")
    records = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{lineno}: not a JSON record: {e}") from None
            if not isinstance(record, dict):
                raise ValueError(f"{path}:{lineno}: expected a JSON object, got {record!r}")
            records.append(record)
    return records


def truncate_metrics(path: str, step: int) -> None:
    """Drop the records after ``step`` (written by a run that later resumed from an
    earlier checkpoint), rewriting ``path`` atomically; no-op if it does not exist."""
    if not os.path.isfile(path):
        return
    keep = [r for r in read_metrics(path) if r.get("step", 0) <= step]
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in keep)
