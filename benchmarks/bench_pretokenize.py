"""Pretokenization speed: the hand-written GPT-2 scanner against fancy-regex (the same
pattern in Rust) and Python's ``regex`` module, single-threaded, on the shared corpora.

Prints MB/s (UTF-8 bytes per second of the calling thread's CPU time, which other
processes on a shared machine disturb far less than wall time; median of ``--repeats``
runs after one warm-up run),
the ratios, and whether the scanner's pretokens are identical to fancy-regex's (and to
``regex``'s) over each whole corpus.

    PYTHONPATH=python python benchmarks/bench_pretokenize.py [--repeats 5] [--data DIR]
"""

from __future__ import annotations

import argparse
import gzip
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import regex

from cs336._core import GPT2_PATTERN, count_pretokens, pretokenize

CORPORA = [
    "tinystories/tinystories.txt",
    "web/web_mix_train.txt",
    "web/web_mix_valid.txt",
    "books/gutenberg.txt",
    "multilingual/multilingual_mix.txt",
    "multilingual/tinystories_ru.txt",
    "samples/corpus.en",
]
CHUNK = 1 << 20  # characters per comparison, to keep the lists of pretokens small


def read_corpus(data: Path, relative: str) -> str:
    path = data / relative
    if path.exists():
        return path.read_text(encoding="utf-8")
    with gzip.open(path.with_name(path.name + ".gz"), "rt", encoding="utf-8") as f:
        return f.read()


def median_seconds(run: Callable[[], object], repeats: int) -> float:
    run()  # warm-up: lazily built tables, the str's cached UTF-8 form
    times = []
    for _ in range(repeats):
        start = time.thread_time()
        run()
        times.append(time.thread_time() - start)
    return statistics.median(times)


def identical(text: str, other: Callable[[str], list[str]]) -> bool:
    return all(
        pretokenize(text[i : i + CHUNK]) == other(text[i : i + CHUNK])
        for i in range(0, len(text), CHUNK)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per engine (5)")
    parser.add_argument(
        "--data",
        type=Path,
        default=Path(os.environ.get("CS336_SHARED_DATA", "/work/shared/data")),
        help="the shared data directory",
    )
    args = parser.parse_args()

    header = (
        "| corpus | MB | scanner MB/s | fancy-regex MB/s | regex MB/s "
        "| scanner/fancy | scanner/regex | = fancy | = regex |"
    )
    pattern = regex.compile(GPT2_PATTERN)
    print(header)
    print("|" + "---|" * header.count(" | ") + "---|")
    for relative in CORPORA:
        text = read_corpus(args.data, relative)
        mb = len(text.encode("utf-8")) / 1e6
        scanner = mb / median_seconds(lambda t=text: count_pretokens(t), args.repeats)
        fancy = mb / median_seconds(lambda t=text: count_pretokens(t, scanner=False), args.repeats)
        # findall builds the list of matches; finditer is slower still.
        python = mb / median_seconds(lambda t=text: pattern.findall(t), args.repeats)
        same_fancy = identical(text, lambda c: pretokenize(c, scanner=False))
        same_regex = identical(text, pattern.findall)
        print(
            f"| {relative} | {mb:.1f} | {scanner:.0f} | {fancy:.1f} | {python:.1f} "
            f"| {scanner / fancy:.1f}x | {scanner / python:.1f}x "
            f"| {'yes' if same_fancy else 'NO'} | {'yes' if same_regex else 'no'} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
