"""Issue 10's table: streaming, parallelism, memory and Ctrl-C on inputs other than English.

Each row runs in its own subprocess (peak RSS and address-space limits are per process) and
prints what is required next to what was measured:

    PYO3_BUILD_EXTENSION_MODULE=1 cargo build --release --features python
    cp target/release/lib_core.so python/cs336/_core.abi3.so
    PYTHONPATH=python python benchmarks/bench_robustness.py [--rows cjk_stream,acgt]

Inputs are generated (deterministic seeds) into ``--workdir`` and reused:
- ``cjk.txt``: 40 MB of Chinese-like text: "words" of 1-3 CJK ideographs drawn from a Zipf
  distribution, clauses of 2-8 words ended by full-width punctuation, paragraphs of 3-12
  clauses separated by ``\\n\\n``; no spaces.
- ``acgt4.txt`` / ``acgt8.txt``: one pretoken of 4 / 8 MB of random ``acgt``.
- ``repeat.txt``: 50 MB of ``a``.
- ``words.txt``: 30 MB of random lowercase words (mostly distinct), separated by spaces.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("CS336_SHARED_DATA", ROOT.parent / "shared" / "data"))
MB = 1_000_000


# ---- inputs


def make_cjk(path: Path, size: int) -> None:
    rng = random.Random(10)
    chars = [chr(c) for c in range(0x4E00, 0x4E00 + 3000)]
    words = ["".join(rng.choices(chars, k=rng.choice((1, 2, 2, 2, 3)))) for _ in range(20000)]
    cum, total = [], 0.0
    for rank in range(len(words)):
        total += 1 / (rank + 1)
        cum.append(total)
    punct = "，，，。。！？、；：“”"
    with open(path, "w", encoding="utf-8") as f:
        written = 0
        while written < size:
            clauses = []
            for _ in range(rng.randint(3, 12)):
                clause = "".join(rng.choices(words, cum_weights=cum, k=rng.randint(2, 8)))
                clauses.append(clause + rng.choice(punct))
            paragraph = "".join(clauses) + "\n\n"
            f.write(paragraph)
            written += len(paragraph.encode("utf-8"))


def make_inputs(workdir: Path) -> dict[str, Path]:
    workdir.mkdir(parents=True, exist_ok=True)
    paths = {name: workdir / f"{name}.txt" for name in ("cjk", "acgt4", "acgt8", "repeat", "words")}
    if not paths["cjk"].exists():
        make_cjk(paths["cjk"], 40 * MB)
    rng = random.Random(4)
    for name, size in (("acgt4", 4 * MB), ("acgt8", 8 * MB)):
        if not paths[name].exists():
            paths[name].write_text("".join(rng.choices("acgt", k=size)))
    if not paths["repeat"].exists():
        paths["repeat"].write_text("a" * (50 * MB))
    if not paths["words"].exists():
        letters = "abcdefghijklmnopqrstuvwxyz"
        with open(paths["words"], "w") as f:
            written = 0
            while written < 30 * MB:
                line = " ".join(
                    "".join(rng.choices(letters, k=rng.randint(3, 12))) for _ in range(1000)
                )
                f.write(line + "\n")
                written += len(line) + 1
    return paths


# ---- the rows: each is the body of a child process, which prints one JSON object

PRELUDE = """
import json, os, resource, sys, time
sys.setrecursionlimit(10000)
def peak_mb():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmHWM:")) / 1024
def vm_size():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmSize:")) * 1024
def gpt2():
    from cs336 import Tokenizer
    d = os.environ["GPT2_DIR"]
    return Tokenizer.from_files(d + "/vocab.json", d + "/merges.txt", ["<|endoftext|>"])
def cpu():
    t = os.times()
    return t.user + t.system
"""

ROWS: dict[str, tuple[str, str]] = {
    "cjk_stream": (
        "first id after < 2 MB fed; peak RSS < 250 MB",
        """
tok = gpt2()
fed = 0
first = None
def lines():
    global fed
    with open(PATHS["cjk"], encoding="utf-8") as f:
        for line in f:
            fed += len(line.encode("utf-8"))
            yield line
start = time.perf_counter()
n = 0
for _ in tok.encode_iterable(lines()):
    if first is None:
        first = fed
    n += 1
print(json.dumps({"first id after MB fed": round(first / 1e6, 3), "peak RSS MB": round(peak_mb()),
                  "tokens": n, "seconds": round(time.perf_counter() - start, 1)}))
""",
    ),
    "cjk_file": (
        "parallel rounds as on English; peak RSS < 250 MB",
        """
tok = gpt2()
rounds = []
start, cpu0 = time.perf_counter(), cpu()
tok._core.encode_file(PATHS["cjk"], OUT + "/cjk.npy", 2, lambda done: rounds.append(done))
wall = time.perf_counter() - start
print(json.dumps({"rounds": len(rounds), "cpu / wall": round((cpu() - cpu0) / wall, 2),
                  "peak RSS MB": round(peak_mb()), "seconds": round(wall, 1)}))
""",
    ),
    "cjk_train": (
        "parallel counting; peak RSS <= 250 MB (issue 19)",
        """
from cs336 import train_bpe
start, cpu0 = time.perf_counter(), cpu()
vocab, merges = train_bpe(PATHS["cjk"], 2000)
wall = time.perf_counter() - start
print(json.dumps({"cpu / wall": round((cpu() - cpu0) / wall, 2), "peak RSS MB": round(peak_mb()),
                  "merges": len(merges), "seconds": round(wall, 1)}))
""",
    ),
    "sigint_file": (
        "KeyboardInterrupt within ~1 s, no output file",
        """
import subprocess, sys
tok = gpt2()
out = OUT + "/interrupted.npy"
# The signal comes from another process, as a terminal's Ctrl-C does (a timer thread of
# this process would need the GIL to send it); it prints when it sent it (CLOCK_MONOTONIC,
# the same clock in both processes).
killer = subprocess.Popen([sys.executable, "-c", (
    "import os, signal, sys, time; time.sleep(float(sys.argv[2])); t = time.monotonic(); "
    "os.kill(int(sys.argv[1]), signal.SIGINT); print(t)"), str(os.getpid()), "0.6"],
    stdout=subprocess.PIPE, text=True)
time.sleep(0.1)  # the killer's interpreter start-up
start = time.monotonic()
try:
    tok.encode_file(PATHS["cjk"], out, num_threads=2)
    outcome = "finished"
except KeyboardInterrupt:
    outcome = "KeyboardInterrupt"
end = time.monotonic()
sent = float(killer.communicate()[0])
print(json.dumps({"outcome": outcome, "SIGINT sent after s": round(sent - start, 2),
                  "seconds after SIGINT": round(end - sent, 2),
                  "output exists": os.path.exists(out)}))
""",
    ),
    "acgt": (
        "< 1.5 s for 4 MB / 2,000 merges",
        """
from cs336 import train_bpe
out = {}
for name, vocab in (("acgt4", 2256), ("acgt8", 4256)):
    start = time.perf_counter()
    train_bpe(PATHS[name], vocab)
    out[name + " seconds"] = round(time.perf_counter() - start, 2)
print(json.dumps(out))
""",
    ),
    "repeat": (
        "peak RSS < 600 MB (the vocabulary alone holds 602 MB of token bytes by the spec's rule)",
        """
from cs336 import train_bpe
start = time.perf_counter()
vocab, merges = train_bpe(PATHS["repeat"], 1000)
print(json.dumps({"merges": len(merges),
                  "longest token MB": round(max(map(len, vocab.values())) / 1e6, 1),
                  "token bytes MB": round(sum(map(len, vocab.values())) / 1e6),
                  "seconds": round(time.perf_counter() - start, 1),
                  "peak RSS MB": round(peak_mb())}))
""",
    ),
    "repeat_max16": (
        "a max_token_length option; peak RSS < 600 MB",
        """
from cs336 import BPETrainer
start = time.perf_counter()
vocab, merges = BPETrainer(1000, max_token_length=16).train_raw(PATHS["repeat"])
print(json.dumps({"merges": len(merges), "longest token": max(map(len, vocab.values())),
                  "seconds": round(time.perf_counter() - start, 1),
                  "peak RSS MB": round(peak_mb())}))
""",
    ),
    "sparse_ids": (
        "memory follows the number of tokens, or a clear ValueError",
        """
from cs336 import Tokenizer
base = peak_mb()
vocab = {i: bytes([i]) for i in range(256)} | {2**24: b"<big>"}
start = time.perf_counter()
try:
    tok = Tokenizer(vocab, [])
    outcome = f"built: tok.vocab_size {tok.vocab_size}, core {tok._core.vocab_size}"
except ValueError as e:
    outcome = f"ValueError: {e}"
print(json.dumps({"outcome": outcome, "seconds": round(time.perf_counter() - start, 2),
                  "RSS growth MB": round(peak_mb() - base)}))
""",
    ),
    "rlimit_train": (
        "MemoryError, process alive",
        """
from cs336 import train_bpe
import cs336._core
resource.setrlimit(resource.RLIMIT_AS, (vm_size() + (64 << 20), resource.RLIM_INFINITY))
try:
    train_bpe(PATHS["words"], 1000)
    outcome = "finished"
except MemoryError as e:
    outcome = f"MemoryError: {e}"
print(json.dumps({"outcome": outcome}))
""",
    ),
    "rlimit_encode": (
        "MemoryError, process alive",
        """
tok = gpt2()
word = "a" * (16 << 20)
resource.setrlimit(resource.RLIMIT_AS, (vm_size() + (16 << 20), resource.RLIM_INFINITY))
try:
    tok.encode(word)
    outcome = "finished"
except MemoryError as e:
    outcome = f"MemoryError: {e}"
print(json.dumps({"outcome": outcome}))
""",
    ),
}


def run_row(name: str, paths: dict[str, Path], timeout: float) -> dict[str, object]:
    outdir = tempfile.mkdtemp(prefix="bench_robustness.")
    code = (
        PRELUDE
        + f"PATHS = {json.dumps({k: str(v) for k, v in paths.items()})}\nOUT = {outdir!r}\n"
        + ROWS[name][1]
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "python"), "GPT2_DIR": str(DATA / "gpt2")}
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return {"outcome": f"timed out after {timeout:.0f} s"}
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        died = (
            f"died by {signal.Signals(-proc.returncode).name}"
            if proc.returncode < 0
            else f"exit {proc.returncode}"
        )
        last = err.decode(errors="replace").strip().splitlines()[-1:] or [""]
        return {"outcome": f"{died}: {last[0][:120]}", "wall s": round(wall, 1)}
    return json.loads(out.decode().strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", default=",".join(ROWS))
    parser.add_argument(
        "--workdir", type=Path, default=Path(tempfile.gettempdir()) / "cs336-issue10"
    )
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args()
    paths = make_inputs(args.workdir)
    print(f"load: {os.getloadavg()[0]:.2f}, {os.cpu_count()} cores")
    print("| row | required | measured |\n|---|---|---|")
    for name in args.rows.split(","):
        result = run_row(name, paths, args.timeout)
        measured = ", ".join(f"{k}: {v}" for k, v in result.items())
        print(f"| {name} | {ROWS[name][0]} | {measured} |", flush=True)


if __name__ == "__main__":
    main()
