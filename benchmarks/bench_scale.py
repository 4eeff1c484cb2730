"""Every stage at the sizes users have: BPE training (10K and 32K) and tokenizing a corpus
of TinyStories' size (2.1 GB) whose distinct words keep growing as real text's do
(benchmarks/heaps_corpus.py), with rustbpe and Hugging Face tokenizers side by side, and
what that says about the 11 GB OpenWebText sample.

Each run is the command a user types (``python -m cs336 train-bpe ...``, ``python -m cs336
tokenize ...``) in its own process: wall time from spawn to exit, peak RSS and CPU time
from ``wait4``, the load average before each run. The peers train in a worker process of
this script on the documents, streamed from the file as a Python iterator (so they never
hold the corpus), with the GPT-2 pattern and the same number of merges; a peer run is
stopped after ``--peer-timeout`` seconds. Corpora are written once into ``--workdir``
(smaller sizes are prefixes of the largest: the same documents, in the same order).

    PYO3_BUILD_EXTENSION_MODULE=1 cargo build --release --features python
    cp target/release/lib_core.so python/cs336/_core.abi3.so
    pip install rustbpe tokenizers
    python benchmarks/bench_scale.py --sizes-mb 339,2100 --repeat 3
    python benchmarks/bench_scale.py --sizes-mb 2100 --recipe   # download + --prepare
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EOT = "<|endoftext|>"
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
MB = 1_000_000
# The handout's limits for the 32K OpenWebText tokenizer (2025 handout, train_bpe_expts_owt).
OWT_MB, LIMIT_HOURS, LIMIT_GB = 11_100, 12, 100


@dataclass
class Run:
    wall: float
    cpu: float
    rss_mb: float
    load: float
    out: str


def measure(cmd: list[str], timeout: float | None = None) -> Run | None:
    """Run ``cmd``; None when it ran past ``timeout`` seconds (then it is killed)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "python")}
    load = os.getloadavg()[0]
    start = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        deadline = None if timeout is None else start + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if deadline is not None and time.perf_counter() > deadline:
                proc.send_signal(signal.SIGKILL)
                os.wait4(proc.pid, 0)
                return None
            time.sleep(0.05)
        wall = time.perf_counter() - start
        out.seek(0)
        text = out.read().decode(errors="replace")
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{text[-3000:]}")
    return Run(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, load, text)


def corpus(workdir: Path, size_mb: int) -> Path:
    """The corpus of ``size_mb`` MB, written by a child process: on Linux a child's peak
    RSS counts the parent's at fork time, so the parent stays small."""
    path = workdir / f"heaps_{size_mb}mb.txt"
    if not path.exists():
        print(f"writing {path} ...", file=sys.stderr, flush=True)
        script = str(ROOT / "benchmarks" / "heaps_corpus.py")
        cmd = [sys.executable, script, "--size-mb", str(size_mb), "--out", str(path)]
        subprocess.run(cmd, check=True)
    return path


# ---- the whole recipe: cs336 download tinystories --prepare, from a local server

RECIPE = """
import sys
from cs336.datasets import Dataset, fetch, prepare
urls = {"train": sys.argv[1], "valid": sys.argv[2]}
dataset = Dataset("tinystories", "served locally", urls, 10_000, "tinystories")
texts = fetch(dataset, sys.argv[3], show_progress=False)
if sys.argv[4] == "prepare":
    prepare(dataset, sys.argv[3], texts, show_progress=False)
"""


def recipe(workdir: Path, size_mb: int) -> None:
    """Time what ``cs336 download tinystories --prepare`` does (the library calls it
    makes, with the dataset's URLs pointed at a local ``http.server``): the download of a
    ``size_mb`` MB training file and a 22 MB validation file, then the tokenizer and the
    two token files. Not the network: the server reads from the page cache."""
    train, valid = corpus(workdir, size_mb), corpus(workdir, 22)
    port = 8000 + os.getpid() % 1000
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
         "--directory", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        time.sleep(1)
        urls = [f"http://127.0.0.1:{port}/{p.name}" for p in (train, valid)]
        print("| step | wall s | peak RSS MB | CPU s | load |")
        print("|---|---|---|---|---|")
        with tempfile.TemporaryDirectory(dir=workdir) as out:
            for step in ("download", "prepare"):
                run = measure([sys.executable, "-c", RECIPE, *urls, out, step])
                assert run is not None
                print(f"| {step} | {run.wall:.1f} | {run.rss_mb:.0f} | {run.cpu:.1f} | "
                      f"{run.load:.1f} |", flush=True)  # fmt: skip
    finally:
        server.terminate()
        server.wait()


# ---- the peers, in a worker process: python bench_scale.py --worker PEER PATH VOCAB


def documents(path: str):
    """The documents of the file, streamed (8 MB reads, split on the separator)."""
    rest = ""
    with open(path, encoding="utf-8") as f:
        while block := f.read(8 << 20):
            parts = (rest + block).split(EOT)
            rest = parts.pop()
            yield from (p for p in parts if p)
    if rest:
        yield rest


def work(peer: str, path: str, vocab_size: int) -> int:
    merges = vocab_size - 256 - 1  # one special token, as ours
    if peer == "rustbpe":
        import rustbpe  # type: ignore[import-untyped]

        tok = rustbpe.Tokenizer()
        tok.train_from_iterator(documents(path), 256 + merges, pattern=GPT2_PATTERN)
        return tok.vocab_size - 256
    if peer == "hf":
        from tokenizers import Tokenizer, models, pre_tokenizers, trainers

        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=[EOT],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tok.train_from_iterator(documents(path), trainer=trainer)
        return tok.get_vocab_size() - 256 - 1
    raise ValueError(f"unknown peer {peer!r}")


# ---- the table


def median_run(runs: list[Run]) -> Run:
    return Run(
        statistics.median(r.wall for r in runs),
        statistics.median(r.cpu for r in runs),
        statistics.median(r.rss_mb for r in runs),
        statistics.median(r.load for r in runs),
        runs[0].out,
    )


def row(stage: str, size_mb: int, runs: list[Run], note: str = "") -> str:
    m = median_run(runs)
    walls = "/".join(f"{r.wall:.1f}" for r in runs)
    return (
        f"| {stage} | {size_mb:,} | {m.wall:.1f} ({walls}) | {size_mb / m.wall:.0f} | "
        f"{m.rss_mb:,.0f} | {m.cpu:.1f} | {m.load:.1f} | {note} |"
    )


def distinct(out: str) -> int:
    found = re.search(r"counted (\d+) distinct pretokens", out)
    return int(found.group(1)) if found else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes-mb", default="339,2100")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--peers", default="rustbpe,hf")
    parser.add_argument("--peer-sizes-mb", default=None, help="sizes the peers run on (all)")
    parser.add_argument("--peer-timeout", type=float, default=1800)
    parser.add_argument("--workdir", type=Path, default=Path.home() / ".cache/cs336/scale")
    parser.add_argument(
        "--recipe", action="store_true", help="time download + --prepare (largest size) only"
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes_mb.split(",")]
    peer_sizes = sizes if args.peer_sizes_mb is None else [
        int(s) for s in args.peer_sizes_mb.split(",")
    ]  # fmt: skip
    peers = [p for p in args.peers.split(",") if p]
    args.workdir.mkdir(parents=True, exist_ok=True)
    if args.recipe:
        recipe(args.workdir, sizes[-1])
        return
    cs336 = [sys.executable, "-m", "cs336"]
    print(f"{os.cpu_count()} cores; corpora in {args.workdir}; median of {args.repeat}\n")
    print("| stage | MB | wall s (runs) | MB/s | peak RSS MB | CPU s | load | notes |")
    print("|---|---|---|---|---|---|---|---|")
    results: dict[tuple[str, int], Run] = {}
    for size in sizes:
        path = corpus(args.workdir, size)
        with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
            for vocab in (10_000, 32_000):
                runs = []
                for i in range(args.repeat):
                    out = Path(tmp) / f"tok{vocab}_{i}"
                    cmd = [*cs336, "train-bpe", str(path), "--vocab-size", str(vocab)]
                    run = measure([*cmd, "--special-token", EOT, "--out", str(out)])
                    assert run is not None
                    runs.append(run)
                results[(f"train {vocab}", size)] = median_run(runs)
                note = f"{distinct(runs[0].out):,} distinct pretokens"
                print(row(f"cs336 train-bpe @{vocab // 1000}K", size, runs, note), flush=True)
            runs = []
            for i in range(args.repeat):
                npy = Path(tmp) / f"tokens_{i}.npy"
                cmd = [*cs336, "tokenize", str(path), "--tokenizer", str(Path(tmp) / "tok10000_0")]
                run = measure([*cmd, "--out", str(npy), "--quiet"])
                assert run is not None
                runs.append(run)
                npy.unlink()
            results[("tokenize", size)] = median_run(runs)
            print(row("cs336 tokenize @10K", size, runs), flush=True)
            shutil.rmtree(tmp, ignore_errors=True)
        for peer in peers if size in peer_sizes else []:
            for vocab in (10_000, 32_000):
                cmd = [sys.executable, __file__, "--worker", peer, str(path), str(vocab)]
                run = measure(cmd, args.peer_timeout)
                stage = f"{peer} train @{vocab // 1000}K"
                if run is None:
                    print(f"| {stage} | {size:,} | > {args.peer_timeout:.0f} (stopped) | | | | | |")
                else:
                    results[(f"{peer} {vocab}", size)] = run
                    print(row(stage, size, [run], "one run"), flush=True)
    if len(sizes) >= 2:
        extrapolate(results, sizes[-2], sizes[-1])


def extrapolate(results: dict[tuple[str, int], Run], small: int, large: int) -> None:
    """Time and memory at the OWT sample's size from the growth between two sizes: time as
    a power of the size, memory as a line through the two peaks (it follows the distinct
    pretokens, which grow slower than the size)."""
    print(f"\nExtrapolated to the OWT sample ({OWT_MB:,} MB) from {small:,} -> {large:,} MB:\n")
    print("| stage | time exponent | time | peak RSS | handout's limit |")
    print("|---|---|---|---|---|")
    for stage in ("train 32000", "train 10000", "tokenize", "rustbpe 32000", "hf 32000"):
        a, b = results.get((stage, small)), results.get((stage, large))
        if a is None or b is None:
            continue
        exponent = math.log(b.wall / a.wall) / math.log(large / small)
        wall = b.wall * (OWT_MB / large) ** exponent
        rss = b.rss_mb + (b.rss_mb - a.rss_mb) / (large - small) * (OWT_MB - large)
        limit = f"{LIMIT_HOURS} h, {LIMIT_GB} GB" if stage.endswith("32000") else "-"
        print(f"| {stage} | {exponent:.2f} | {wall / 60:.1f} min | {rss / 1000:.2f} GB | {limit} |")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:  # python bench_scale.py --worker PEER PATH VOCAB
        print(work(sys.argv[2], sys.argv[3], int(sys.argv[4])))
    else:
        main()
