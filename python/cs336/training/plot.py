"""Loss curves of one or more training runs: loss against steps and against wall-clock
time, side by side, in one PNG, PDF or SVG file, as its name says (``cs336 plot``). Train
loss is a solid line and validation loss dashed with markers, one colour per run.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from cs336._files import atomic_open
from cs336.training.metrics import METRICS_FILE as METRICS
from cs336.training.metrics import read_metrics

# file name suffix -> matplotlib format
FORMATS = {".png": "png", ".pdf": "pdf", ".svg": "svg"}


def metrics_path(run: str | os.PathLike[str]) -> str:
    """``run`` itself if it is a file, else ``run/metrics.jsonl``.

    Raises:
        FileNotFoundError: neither exists.
    """
    run = os.fspath(run)
    path = os.path.join(run, METRICS) if os.path.isdir(run) else run
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no metrics file: {path} (give a run directory or a .jsonl)")
    return path


def _series(records: list[dict[str, Any]], key: str, x: str) -> tuple[list[float], list[float]]:
    points = [(r[x], r[key]) for r in records if r.get(key) is not None and x in r]
    return [p[0] for p in points], [p[1] for p in points]


def plot_runs(
    runs: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    labels: Sequence[str] | None = None,
    log_y: bool = False,
) -> str:
    """Plot every run's train and validation loss against steps (left) and wall-clock
    seconds (right) into ``out`` (written atomically), a PNG, PDF or SVG file as its name
    ends; returns its path.

    ``labels`` default to each run's directory name. Runs that diverged show their
    curve up to the last finite loss.

    Raises:
        FileNotFoundError: a run has no metrics file.
        ValueError: no runs, labels of the wrong length, a run without any loss, or a file
            name that ends in none of .png, .pdf, .svg.
        RuntimeError: matplotlib is not installed.
    """
    out = os.fspath(out)
    suffix = os.path.splitext(out)[1].lower()
    if suffix not in FORMATS:
        raise ValueError(
            f"{out}: plots are written as .png, .pdf or .svg, and the file name says which "
            f"(not {suffix or 'no extension'!r})"
        )
    if not runs:
        raise ValueError("give at least one run directory or metrics file")
    if labels is not None and len(labels) != len(runs):
        raise ValueError(f"got {len(labels)} labels for {len(runs)} runs")
    paths = [metrics_path(r) for r in runs]
    if labels is None:
        labels = [
            os.path.basename(os.path.dirname(os.path.abspath(p))) if p.endswith(METRICS) else p
            for p in paths
        ]
    data = []
    for path in paths:
        records = read_metrics(path)
        if not any("train_loss" in r or "val_loss" in r for r in records):
            raise ValueError(f"{path} has no train_loss or val_loss records")
        data.append(records)

    try:
        import matplotlib
    except ImportError:
        raise RuntimeError("plotting needs matplotlib: pip install matplotlib") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for i, (records, label) in enumerate(zip(data, labels, strict=True)):
        color = f"C{i % 10}"
        for ax, x in zip(axes, ("step", "time"), strict=True):
            xs, ys = _series(records, "train_loss", x)
            ax.plot(xs, ys, color=color, label=f"{label} train")
            xs, ys = _series(records, "val_loss", x)
            ax.plot(
                xs, ys, color=color, linestyle="--", marker="o", markersize=3, label=f"{label} val"
            )
    for ax, xlabel in zip(axes, ("step", "wall-clock (s)"), strict=True):
        ax.set_xlabel(xlabel)
        ax.set_ylabel("loss")
        if log_y:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="small")
    fig.tight_layout()

    try:
        with atomic_open(out, "wb") as f:
            fig.savefig(f, format=FORMATS[suffix], dpi=120)
    finally:
        plt.close(fig)
    return out
