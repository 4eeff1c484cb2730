"""Memory of BPE training on text with many distinct pretokens (issue 19): text without
spaces makes every clause one pretoken, so nearly every pretoken is distinct. The trainer
must hold them compactly (u16 words, varint block lists, untracked one-off pairs). Runs in
a subprocess: peak RSS is per process, and it does not depend on what else the machine
runs."""

from __future__ import annotations

import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads VmRSS / VmHWM from /proc (Linux)"
)


def write_chinese_like(path: Path, size: int) -> None:
    """Clauses of Zipf-distributed 'words' of 1-3 CJK ideographs, no spaces (as
    benchmarks/bench_robustness.py's 40 MB text, smaller)."""
    rng = random.Random(10)
    chars = [chr(c) for c in range(0x4E00, 0x4E00 + 3000)]
    words = ["".join(rng.choices(chars, k=rng.choice((1, 2, 2, 2, 3)))) for _ in range(20000)]
    cum, total = [], 0.0
    for rank in range(len(words)):
        total += 1 / (rank + 1)
        cum.append(total)
    parts, written = [], 0
    while written < size:
        clauses = "".join(
            "".join(rng.choices(words, cum_weights=cum, k=rng.randint(2, 8))) + rng.choice("，。！")
            for _ in range(rng.randint(3, 12))
        )
        parts.append(clauses + "\n\n")
        written += len(clauses.encode("utf-8")) + 2
    path.write_text("".join(parts), encoding="utf-8")


TRAIN = """
import sys
from cs336 import train_bpe

def mb(field):
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith(field)) / 1024

before = mb("VmRSS:")
vocab, merges = train_bpe(sys.argv[1], 2000)
print(len(merges), round(mb("VmHWM:") - before))
"""


def test_training_on_text_without_spaces_stays_compact(tmp_path):
    corpus = tmp_path / "chinese_like.txt"
    write_chinese_like(corpus, 6_000_000)
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(TRAIN), str(corpus)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    merges, growth_mb = map(int, result.stdout.split())
    assert merges == 1744
    # 6 MB, ~170,000 distinct pretokens of ~35 bytes. Measured: 46 MB (92 MB before the
    # compact words and lists, 67 MB with them but every pair tracked).
    assert growth_mb <= 60, f"training grew the process by {growth_mb} MB"
