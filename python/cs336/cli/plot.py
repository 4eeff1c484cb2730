"""``cs336 plot RUN_DIR_OR_JSONL... --out PNG``: loss curves against steps and wall-clock
(a thin front to :func:`cs336.training.plot.plot_runs`)."""

from __future__ import annotations

import argparse

HELP = "plot loss curves of training runs (PNG)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "runs",
        nargs="+",
        metavar="RUN",
        help="run directories (with metrics.jsonl) or .jsonl files",
    )
    parser.add_argument("--out", required=True, help="PNG file to write")
    parser.add_argument(
        "--labels", nargs="+", default=None, help="legend names, one per run (default: dir names)"
    )
    parser.add_argument("--log-y", action="store_true", help="logarithmic loss axis")


def run(args: argparse.Namespace) -> int:
    from cs336.training.plot import plot_runs

    out = plot_runs(args.runs, args.out, labels=args.labels, log_y=args.log_y)
    print(f"wrote {out}")
    return 0
