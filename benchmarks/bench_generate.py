"""Decoding speed of :func:`cs336.generation.generate_samples`: tokens per second inside the
context (KV cache), past it (the window re-encoded every step), and several samples decoded
as one batch against the same samples one after the other.

    PYTHONPATH=python python benchmarks/bench_generate.py --threads 1 --repeats 3

The model is the 2025/2026 TinyStories shape (untrained weights: only the arithmetic
matters), greedy decoding from a 16-token prompt; each figure is the median of
``--repeats`` runs. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from cs336.generation import generate_samples
from cs336.nn.model import ModelConfig, TransformerLM


def seconds(model: TransformerLM, new_tokens: int, num_samples: int, repeats: int) -> float:
    prompt = list(range(1, 17))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = generate_samples(model, prompt, new_tokens, num_samples, temperature=0)
        times.append(time.perf_counter() - start)
        assert all(len(s) == new_tokens for s in out)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per row (default 3)")
    parser.add_argument("--samples", type=int, default=4, help="batch of samples (default 4)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = ModelConfig.preset(
        "cs336-2025", vocab_size=10000, context_length=256, d_model=512, num_layers=4,
        num_heads=16,
    )  # fmt: skip
    model = TransformerLM.from_config(cfg).eval()
    inside = 256 + 1 - 16  # fills the context exactly: every step uses the KV cache
    rows = [
        ("1 sample, 241 new tokens (inside the context)", 1, inside),
        ("1 sample, 241 + 240 new tokens (240 past the context)", 1, inside + 240),
        (f"{args.samples} samples as one batch, 241 new tokens each", args.samples, inside),
    ]
    results = {}
    print("| decoding | seconds | tokens/s |")
    print("|---|---:|---:|")
    for label, n, new in rows:
        s = seconds(model, new, n, args.repeats)
        results[label] = (s, n * new)
        print(f"| {label} | {s:.2f} | {n * new / s:,.0f} |")
    single = rows[0][0]
    past_only = results[rows[1][0]][0] - results[single][0]
    print(f"\npast the context alone: {240 / past_only:,.1f} tokens/s")
    batched = results[rows[2][0]]
    gain = (batched[1] / batched[0]) / (results[single][1] / results[single][0])
    print(f"{args.samples} samples as one batch: {gain:.2f}x the tokens/s of one")


if __name__ == "__main__":
    main()
