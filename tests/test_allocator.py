"""keep_freed_memory: freed large blocks are reused without page faults (Linux, glibc)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = """
import resource, sys
import torch
from cs336.training.allocator import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "keep" else False
x = torch.ones(16 << 20)  # 64 MiB
for _ in range(3):
    x + 1  # a 64 MiB temporary, freed at once
faults = []
for _ in range(7):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    x + 1
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(applied, sorted(faults)[3])  # the median: the kernel may reclaim idle pages now and then
"""


def _faults(mode: str) -> tuple[bool, int]:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, mode],
        env={"PYTHONPATH": str(ROOT / "python"), "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout.split()
    return out[0] == "True", int(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc only")
def test_freed_blocks_are_reused_without_page_faults():
    _, plain = _faults("plain")
    applied, kept = _faults("keep")
    if not applied:
        pytest.skip("not glibc: keep_freed_memory does nothing here")
    assert plain > 10_000  # 64 MiB of fresh pages each time: 16,384 faults
    assert kept < plain // 20
