"""BPE training: ours against Hugging Face tokenizers, rustbpe and bpeasy.

Each run is its own process (``python bench_train_bpe.py --worker ...``), timed from spawn
to exit, so the wall time includes interpreter start and imports; peak RSS comes from
``wait4``. Every trainer gets the same corpus and the same number of merges: the file's
documents (split on ``<|endoftext|>``, the one special token) with the GPT-2 pattern.
Peers take an iterator of strings, so their runs include reading and splitting the file
in Python; ours reads the file from Rust.

Build the release extension first (``make build-release`` or
``PYO3_BUILD_EXTENSION_MODULE=1 cargo build --release --features python`` and copy
``target/release/lib_core.so`` to ``python/cs336/_core.abi3.so``), then:

    python benchmarks/bench_train_bpe.py --data ~/.cache/cs336/data --repeat 3

(``/work/shared/data/materialize DIR`` writes the plain corpora into DIR.)
"""

from __future__ import annotations

# The worker path imports nothing else: every run pays for these imports.
import os
import sys

EOT = "<|endoftext|>"
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (name, file under the data dir, vocab size)
CORPORA = [
    ("tinystories", "tinystories/tinystories.txt", 10_000),
    ("web", "web/web_mix_train.txt", 10_000),
    ("web", "web/web_mix_train.txt", 32_000),
    ("russian", "multilingual/tinystories_ru.txt", 10_000),
    # Generated (bench_robustness.make_cjk, 10 MB) into the data dir when missing.
    ("cjk", "generated/cjk_10mb.txt", 5_000),
]
TRAINERS = ["ours", "rustbpe", "bpeasy", "hf"]


def documents(path: str) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return [d for d in f.read().split(EOT) if d]


def work(trainer: str, path: str, vocab_size: int) -> int:
    """Train once in this process; return the number of merges learned."""
    if trainer == "ours":
        from cs336 import train_bpe

        return len(train_bpe(path, vocab_size, [EOT])[1])
    merges_wanted = vocab_size - 256 - 1  # one special token, as ours
    if trainer == "rustbpe":
        import rustbpe  # type: ignore[import-untyped]

        tok = rustbpe.Tokenizer()
        tok.train_from_iterator(iter(documents(path)), 256 + merges_wanted, pattern=GPT2_PATTERN)
        return tok.vocab_size - 256
    if trainer == "bpeasy":
        import bpeasy  # type: ignore[import-untyped]

        vocab = bpeasy.train_bpe(iter(documents(path)), GPT2_PATTERN, 256, 256 + merges_wanted)
        return len(vocab) - 256
    if trainer == "hf":
        from tokenizers import Tokenizer, models, pre_tokenizers, trainers

        tok = Tokenizer(models.BPE())
        # ByteLevel with use_regex splits with the GPT-2 pattern, then maps bytes to chars.
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        hf_trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=[EOT],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tok.train_from_iterator(documents(path), trainer=hf_trainer)
        return tok.get_vocab_size() - 256 - 1
    raise ValueError(f"unknown trainer {trainer!r}")


def measure(trainer: str, path: str, vocab_size: int) -> tuple[float, float, int]:
    """(wall seconds incl. interpreter start, peak RSS in MB, merges) of one worker run."""
    import subprocess
    import time

    env = {**os.environ, "PYTHONPATH": os.path.join(ROOT, "python")}
    cmd = [sys.executable, __file__, "--worker", trainer, str(path), str(vocab_size)]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    out = proc.stdout.read() if proc.stdout else b""
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{trainer} failed on {path}")
    return wall, usage.ru_maxrss / 1024, int(out)


def main() -> None:
    import argparse
    import statistics
    from pathlib import Path

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path.home() / ".cache/cs336/data")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--trainers", default=",".join(TRAINERS))
    parser.add_argument("--corpora", default="tinystories,web,russian,cjk")
    args = parser.parse_args()
    trainers = args.trainers.split(",")
    wanted = args.corpora.split(",")
    print(
        f"| corpus | vocab | trainer | merges | wall s (median of {args.repeat}) "
        "| peak RSS MB | wall / ours |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, relative, vocab_size in CORPORA:
        if name not in wanted:
            continue
        path = str(args.data / relative)
        if name == "cjk" and not os.path.exists(path):
            sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
            import bench_robustness

            os.makedirs(os.path.dirname(path), exist_ok=True)
            bench_robustness.make_cjk(Path(path), 10_000_000)
        ours_wall = None
        for trainer in trainers:
            runs = [measure(trainer, path, vocab_size) for _ in range(args.repeat)]
            wall = statistics.median(r[0] for r in runs)
            rss = statistics.median(r[1] for r in runs)
            if trainer == "ours":
                ours_wall = wall
            ratio = f"{wall / ours_wall:.2f}" if ours_wall else "-"
            print(
                f"| {name} | {vocab_size} | {trainer} | {runs[0][2]} | {wall:.2f} | {rss:.0f} "
                f"| {ratio} |",
                flush=True,
            )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:  # python bench_train_bpe.py --worker TRAINER PATH VOCAB
        print(work(sys.argv[2], sys.argv[3], int(sys.argv[4])))
    else:
        main()
