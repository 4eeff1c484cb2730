"""Encoding speed, GPT-2 vocabulary: cs336 vs tiktoken vs Hugging Face tokenizers vs tokie.

    PYO3_BUILD_EXTENSION_MODULE=1 cargo build --release --features python
    cp target/release/lib_core.so python/cs336/_core.abi3.so
    PYTHONPATH=python python benchmarks/bench_encode.py [--repeats 5] [--threads 2]
    PYTHONPATH=python python benchmarks/bench_encode.py --rss-mb 200   # streaming memory
    PYTHONPATH=python python benchmarks/bench_encode.py --scripts      # CJK-like, Russian

Texts: TinyStories + web mix valid + the multilingual set from ../shared/data (5.7 MB).
"single" encodes each corpus as one string on one thread; "batched" encodes the documents
(split on <|endoftext|>) with each library's batch API on ``--threads`` threads; "file"
writes token ids of the concatenated corpus to numpy (ours: ``encode_file`` -> .npy;
tokie: ``encode_files``). Prints MB/s medians over ``--repeats`` runs, ratios, and whether
the ids are identical to tiktoken's. ``--rss-mb N`` instead streams an N MB file through
``encode_iterable`` in a subprocess and prints peak RSS as it goes. ``--mode file`` runs only
one mode's cases (the others, run before in the same process, change the results: see
benchmarks/RESULTS.md). ``--scripts`` instead encodes a CJK-like text (generated as in
bench_robustness.py, 10 MB) and the Russian stories, one subprocess per tool and mode, and
prints MB/s, peak RSS, whether the ids equal tiktoken's and, for ``encode_file``, the
number of parallel rounds.
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("CS336_SHARED_DATA", ROOT.parent / "shared" / "data"))
CORPORA = [
    "tinystories/tinystories.txt",
    "web/web_mix_valid.txt",
    "multilingual/multilingual_mix.txt",
]
EOT = "<|endoftext|>"


def read_corpus(relative: str) -> str:
    path = DATA / relative
    if path.exists():
        return path.read_text(encoding="utf-8")
    with gzip.open(path.with_name(path.name + ".gz"), "rt", encoding="utf-8") as f:
        return f.read()


def builders(workdir: Path) -> dict[str, Callable[[], object]]:
    """One function per tool that builds its GPT-2 tokenizer from the same files."""
    import tiktoken
    import tokenizers
    import tokie
    from tokenizers import decoders, models, pre_tokenizers

    from cs336 import GPT2_PATTERN, Tokenizer
    from cs336.tokenizer import gpt2_format

    vocab_path, merges_path = DATA / "gpt2" / "vocab.json", DATA / "gpt2" / "merges.txt"
    ranks = {t: i for i, t in gpt2_format.read_vocab(vocab_path).items() if i != 50256}
    # Hugging Face's standard GPT-2 setup, built from the files (independent of our export).
    hf = tokenizers.Tokenizer(models.BPE.from_file(str(vocab_path), str(merges_path)))
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    hf.add_special_tokens([EOT])
    hf_json = workdir / "tokenizer.json"
    hf.save(str(hf_json))
    return {
        "cs336": lambda: Tokenizer.from_files(vocab_path, merges_path, [EOT]),
        "tiktoken": lambda: tiktoken.Encoding(
            "gpt2", pat_str=GPT2_PATTERN, mergeable_ranks=ranks, special_tokens={EOT: 50256}
        ),
        "huggingface": lambda: tokenizers.Tokenizer.from_file(str(hf_json)),
        "tokie": lambda: tokie.Tokenizer.from_json(str(hf_json)),
    }


def bench(args: argparse.Namespace) -> None:
    texts = [read_corpus(c) for c in CORPORA]
    docs = [d for t in texts for d in t.split(EOT) if d]
    total_mb = sum(len(t.encode("utf-8")) for t in texts) / 1e6
    docs_mb = sum(len(d.encode("utf-8")) for d in docs) / 1e6
    workdir = Path(tempfile.mkdtemp(prefix="bench_encode."))
    # Every tool is rebuilt before each timed case (untimed), so each case encodes text that
    # its tokenizer has not seen: cs336 and Hugging Face keep pretoken caches between calls,
    # which would otherwise turn rounds 2.. into cache look-ups. --warm keeps them.
    build = builders(workdir)
    tools: dict[str, Any] = {name: make() for name, make in build.items()}
    tik = tools["tiktoken"]  # the reference ids (tiktoken keeps no state between calls)
    print(
        f"{total_mb:.2f} MB of text ({len(docs)} documents), {args.repeats} repeats, "
        f"batched on {args.threads} threads, machine: {os.cpu_count()} cores, "
        f"{'warm (tokenizers reused)' if args.warm else 'cold (fresh tokenizers for each case)'}"
    )

    reference = [tik.encode(t, allowed_special="all") for t in texts]
    ref_docs = tik.encode_batch(docs, num_threads=args.threads, allowed_special="all")
    single = {
        "cs336": lambda t: tools["cs336"].encode(t),
        "tiktoken": lambda t: tools["tiktoken"].encode(t, allowed_special="all"),
        "huggingface": lambda t: tools["huggingface"].encode(t).ids,
        "tokie": lambda t: list(tools["tokie"].encode(t).ids),
    }
    batched = {
        "cs336": lambda: tools["cs336"].encode_batch(docs, num_threads=args.threads),
        "tiktoken": lambda: tools["tiktoken"].encode_batch(
            docs, num_threads=args.threads, allowed_special="all"
        ),
        "huggingface": lambda: [e.ids for e in tools["huggingface"].encode_batch(docs)],
        "tokie": lambda: [list(e.ids) for e in tools["tokie"].encode_batch(docs)],
    }
    import numpy as np

    corpus = workdir / "corpus.txt"
    corpus.write_text("".join(texts), encoding="utf-8")
    out = workdir / "ids.npy"
    flat_ref = tik.encode("".join(texts), allowed_special="all")
    cases: dict[tuple[str, str], tuple[float, Callable[[], object], Callable[[object], bool]]] = {}
    for name, fn in single.items():
        cases["single", name] = (
            total_mb,
            lambda fn=fn: [fn(t) for t in texts],
            lambda ids: ids == reference,
        )
    for name, fn in batched.items():
        cases["batched", name] = (docs_mb, fn, lambda ids: ids == ref_docs)
    cases["file", "cs336"] = (
        total_mb,
        lambda: tools["cs336"].encode_file(corpus, out, num_threads=args.threads),
        lambda _: np.load(out, mmap_mode="r").tolist() == flat_ref,
    )
    cases["file", "tokie"] = (
        total_mb,
        lambda: tools["tokie"].encode_files([str(corpus)]),
        lambda result: result[0].tolist() == flat_ref,
    )
    # Rounds over all cases, so that load from other processes hits every library alike; the
    # order rotates each round, and a pause before each case lets the previous library's
    # worker threads go idle (rayon's spin before sleeping) on this 2-core machine.
    times: dict[tuple[str, str], list[float]] = collections.defaultdict(list)
    rows: dict[str, dict[str, float]] = collections.defaultdict(dict)
    same: dict[str, dict[str, bool]] = collections.defaultdict(dict)
    keys = [k for k in cases if not args.mode or k[0] == args.mode]
    for round_ in range(args.repeats):
        for key in keys[round_ % len(keys) :] + keys[: round_ % len(keys)]:
            _mb, fn, check = cases[key]
            if not args.warm:
                tools[key[1]] = build[key[1]]()
            time.sleep(0.1)
            start = time.perf_counter()
            result = fn()
            times[key].append(time.perf_counter() - start)
            if round_ == 0:
                same[key[0]][key[1]] = check(result)
    for mode, name in keys:
        rows[mode][name] = cases[mode, name][0] / statistics.median(times[mode, name])

    print(f"\n{'MB/s (median)':<14}" + "".join(f"{n:>13}" for n in single))
    for mode, row in rows.items():
        cells = "".join(
            f"{row[n]:>11.1f}{'' if same[mode][n] else ' ≠':<2}" if n in row else f"{'-':>13}"
            for n in single
        )
        print(f"{mode:<14}{cells}")
    print("(≠: ids differ from tiktoken's)")
    print("\nratios, cs336 / other:")
    for mode, row in rows.items():
        others = ", ".join(f"{n} {row['cs336'] / v:.2f}x" for n, v in row.items() if n != "cs336")
        print(f"  {mode}: {others}")


RSS_SCRIPT = """
import collections, sys, time
from cs336 import Tokenizer
path, vocab, merges, step = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
tok = Tokenizer.from_files(vocab, merges, ["<|endoftext|>"])

def hwm_mb():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmHWM:")) / 1024

def chunks(f):
    done, mark = 0, step
    for line in f:
        yield line
        done += len(line)
        if done >= mark:
            print(f"{done / 1e6:8.0f} MB read  peak RSS {hwm_mb():7.1f} MB", flush=True)
            mark += step

start = time.perf_counter()
with open(path, encoding="utf-8") as f:
    n = sum(1 for _ in tok.encode_iterable(chunks(f)))
print(f"{n} tokens in {time.perf_counter() - start:.1f} s, final peak RSS {hwm_mb():.1f} MB")
"""


def rss(args: argparse.Namespace) -> None:
    """Stream a file of at least ``--rss-mb`` MB through encode_iterable in a subprocess."""
    base = read_corpus("web/web_mix_train.txt")
    path = Path(tempfile.mkdtemp(prefix="bench_rss.")) / "big.txt"
    with open(path, "w", encoding="utf-8") as f:
        written = 0
        while written < args.rss_mb * 1e6:
            f.write(base)
            written += len(base.encode("utf-8"))
    print(f"streaming {path} ({written / 1e6:.0f} MB) through encode_iterable")
    subprocess.run(
        [
            sys.executable,
            "-c",
            RSS_SCRIPT,
            str(path),
            str(DATA / "gpt2" / "vocab.json"),
            str(DATA / "gpt2" / "merges.txt"),
            str(int(written // 10)),
        ],
        check=True,
    )
    path.unlink()


WORKER = """
import hashlib, json, sys, time
import numpy as np
sys.path.insert(0, BENCH_DIR)
import bench_encode
tool, mode, path, out = sys.argv[1:5]
text = open(path, encoding="utf-8").read()
tok = bench_encode.builders(__import__("pathlib").Path(out).parent)[tool]()
rounds = []
start = time.perf_counter()
if mode == "single":
    if tool == "cs336":
        ids = tok.encode(text)
    elif tool == "tiktoken":
        ids = tok.encode(text, allowed_special="all")
    elif tool == "huggingface":
        ids = tok.encode(text).ids
    else:
        ids = list(tok.encode(text).ids)
elif tool == "cs336":
    tok._core.encode_file(path, out, THREADS, rounds.append)
else:
    ids = tok.encode_files([path])[0]
seconds = time.perf_counter() - start
if mode == "file" and tool == "cs336":
    ids = np.load(out, mmap_mode="r")
digest = hashlib.sha1(np.asarray(ids, dtype=np.uint32).tobytes()).hexdigest()
print(json.dumps({"seconds": seconds, "digest": digest, "rounds": len(rounds)}))
"""


def scripts(args: argparse.Namespace) -> None:
    """Text in scripts other than Latin: throughput, peak RSS, rounds, one process each."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_robustness

    workdir = Path(tempfile.mkdtemp(prefix="bench_scripts."))
    cjk = workdir / "cjk.txt"
    bench_robustness.make_cjk(cjk, 10_000_000)
    russian = workdir / "russian.txt"
    russian.write_text(read_corpus("multilingual/tinystories_ru.txt"), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "python")}
    code = f"BENCH_DIR = {str(ROOT / 'benchmarks')!r}\nTHREADS = {args.threads}\n" + WORKER
    print(
        f"load {os.getloadavg()[0]:.2f}; {args.repeats} runs each, median; file mode on "
        f"{args.threads} threads"
    )
    print("| text | mode | tool | MB/s | peak RSS MB | ids = tiktoken's | rounds |")
    print("|---|---|---|---|---|---|---|")
    for path in (cjk, russian):
        mb = path.stat().st_size / 1e6
        reference = None
        for mode, tools in (
            ("single", ["tiktoken", "cs336", "tokie", "huggingface"]),
            ("file", ["cs336", "tokie"]),
        ):
            for tool in tools:
                runs = []
                for _ in range(args.repeats):
                    cmd = [sys.executable, "-c", code, tool, mode, str(path),
                           str(workdir / "ids.npy")]  # fmt: skip
                    proc = subprocess.Popen(
                        cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env
                    )
                    _, status, usage = os.wait4(proc.pid, 0)
                    out = proc.stdout.read() if proc.stdout else b""
                    if os.waitstatus_to_exitcode(status) != 0:
                        break
                    runs.append((json.loads(out), usage.ru_maxrss / 1024))
                if not runs:
                    print(f"| {path.stem} {mb:.1f} MB | {mode} | {tool} | failed (exit "
                          f"{os.waitstatus_to_exitcode(status)}) | | | |", flush=True)  # fmt: skip
                    continue
                result = runs[0][0]
                if tool == "tiktoken":
                    reference = result["digest"]
                seconds = statistics.median(r[0]["seconds"] for r in runs)
                rss = statistics.median(r[1] for r in runs)
                rounds = result["rounds"] if tool == "cs336" and mode == "file" else "-"
                same = "yes" if result["digest"] == reference else "no"
                print(f"| {path.stem} {mb:.1f} MB | {mode} | {tool} | {mb / seconds:.1f} "
                      f"| {rss:.0f} | {same} | {rounds} |", flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--warm", action="store_true", help="reuse the tokenizers across rounds (cached pretokens)"
    )
    parser.add_argument("--rss-mb", type=int, default=0, help="streaming memory run instead")
    parser.add_argument(
        "--mode", choices=["single", "batched", "file"], help="run only this mode's cases"
    )
    parser.add_argument("--scripts", action="store_true", help="CJK-like and Russian text")
    args = parser.parse_args()
    # Thread pools of the peers (rayon in tokenizers / tokie) read this at startup.
    os.environ.setdefault("RAYON_NUM_THREADS", str(args.threads))
    if args.scripts:
        scripts(args)
    elif args.rss_mb:
        rss(args)
    else:
        bench(args)


if __name__ == "__main__":
    main()
