"""``cs336 plot RUN_DIR_OR_JSONL... --out FILE``: loss curves against steps and wall-clock,
as a PNG, PDF or SVG file as the name ends (a thin front to
:func:`cs336.training.plot.plot_runs`)."""

from __future__ import annotations

import argparse

from cs336.cli._common import add_overwrite


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "runs",
        nargs="+",
        metavar="RUN",
        help="run directories (with metrics.jsonl) or .jsonl files",
    )
    parser.add_argument(
        "--out",
        required=True,
        metavar="FILE",
        help="file to write: .png, .pdf or .svg, as its name ends (its folder is created "
        "when missing)",
    )
    add_overwrite(parser, "--out file")
    parser.add_argument(
        "--labels", nargs="+", default=None, help="legend names, one per run (default: dir names)"
    )
    parser.add_argument("--log-y", action="store_true", help="logarithmic loss axis")


def run(args: argparse.Namespace) -> int:
    from cs336._files import check_output
    from cs336.training.plot import metrics_path, plot_runs

    inputs = [metrics_path(r) for r in args.runs]
    check_output(args.out, overwrite=args.overwrite, inputs=inputs)
    out = plot_runs(args.runs, args.out, labels=args.labels, log_y=args.log_y)
    print(f"wrote {out}")
    return 0
