"""Memory: under RLIMIT_AS just above current usage, encoding a large text raises
MemoryError or succeeds and never aborts the process; encode_iterable streams in constant
memory. Both run in a subprocess (limits and peak RSS are per process)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="uses /proc and RLIMIT_AS (Linux)"
)

LIMITED_ENCODE = """
import resource
from cs336 import Tokenizer

def vm_kib(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field))

tok = Tokenizer({i: bytes([i]) for i in range(256)} | {256: b"ab"}, [(b"a", b"b")])
text = "ab cd " * 4_000_000  # 24 MB: 20M ids, 80 MB as u32
limit = vm_kib("VmSize:") * 1024 + EXTRA
resource.setrlimit(resource.RLIMIT_AS, (limit, resource.RLIM_INFINITY))
try:
    ids = tok.encode(text)
    ok = len(ids) == 20_000_000
    del ids
    print("ok" if ok else "wrong")
except MemoryError:
    print("MemoryError")
"""


def run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ,
    )


@pytest.mark.parametrize("extra_mb", [0, 4, 16, 64, 128])
def test_encode_under_rlimit_raises_memory_error_or_succeeds(extra_mb):
    result = run(f"EXTRA = {extra_mb << 20}\n" + LIMITED_ENCODE)
    assert result.returncode == 0, f"process died ({result.returncode}): {result.stderr}"
    assert result.stdout.strip() in {"ok", "MemoryError"}, result.stdout + result.stderr
    if extra_mb <= 16:  # too little room for 80 MB of ids
        assert result.stdout.strip() == "MemoryError"


def test_encode_with_enough_memory_under_rlimit_succeeds():
    result = run(f"EXTRA = {2 << 30}\n" + LIMITED_ENCODE)
    assert (result.returncode, result.stdout.strip()) == (0, "ok"), result.stderr


def test_encode_iterable_peak_memory_stays_flat():
    code = """
    from cs336 import Tokenizer

    def peak_mb():
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) for l in f if l.startswith("VmHWM:")) / 1024

    tok = Tokenizer({i: bytes([i]) for i in range(256)} | {256: b"th"}, [(b"t", b"h")])
    line = "the cat sat on the mat, and then it said: 'hello there' \\n" * 20

    def chunks(n):
        for i in range(n):
            yield f"{i} {line}"

    n = 0
    for count, _ in enumerate(tok.encode_iterable(chunks(2_000))):
        n = count
    before = peak_mb()
    for count, _ in enumerate(tok.encode_iterable(chunks(16_000))):  # ~18 MB of text
        n = count
    print(before, peak_mb(), n)
    """
    result = run(code)
    assert result.returncode == 0, result.stderr
    before, after, _ = result.stdout.split()
    assert float(after) - float(before) < 8, result.stdout


LIMITED_TRAIN = """
import os, resource
from cs336 import train_bpe

def vm_bytes():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmSize:")) * 1024

table = bytes(32 if i % 7 == 0 else 97 + i % 26 for i in range(256))
with open(PATH, "wb") as f:
    f.write(os.urandom(30 << 20).translate(table))  # 30 MB of mostly distinct words
resource.setrlimit(resource.RLIMIT_AS, (vm_bytes() + (64 << 20), resource.RLIM_INFINITY))
try:
    train_bpe(PATH, 1000)
    print("ok")
except MemoryError:
    print("MemoryError")
"""


LIMITED_LONG_WORD = """
import resource
from cs336 import Tokenizer

def vm_bytes():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmSize:")) * 1024

tok = Tokenizer({i: bytes([i]) for i in range(256)} | {256: b"ab"}, [(b"a", b"b")])
word = "ab" * (8 << 20)  # one 16 MB pretoken: the long-pretoken merge needs ~36 bytes a byte
resource.setrlimit(resource.RLIMIT_AS, (vm_bytes() + (16 << 20), resource.RLIM_INFINITY))
try:
    tok.encode(word)
    print("ok")
except MemoryError:
    print("MemoryError")
"""


@pytest.mark.parametrize("script", ["training", "one huge pretoken"])
def test_work_under_an_address_space_limit_raises_memory_error(tmp_path, script):
    """Training, and encoding one 16 MB pretoken, with too little address space left:
    a MemoryError in Python, never an abort."""
    code = {
        "training": f"PATH = {str(tmp_path / 'words.txt')!r}\n" + LIMITED_TRAIN,
        "one huge pretoken": LIMITED_LONG_WORD,
    }[script]
    result = run(code)
    assert result.returncode == 0, f"process died ({result.returncode}): {result.stderr}"
    assert result.stdout.strip() == "MemoryError", result.stdout + result.stderr


def test_encode_iterable_over_text_without_spaces_streams():
    # Chinese-like text (no spaces, full-width punctuation): ids come before the input
    # ends, and the memory stays flat.
    code = """
    import random
    from cs336 import Tokenizer

    def peak_mb():
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) for l in f if l.startswith("VmHWM:")) / 1024

    tok = Tokenizer({i: bytes([i]) for i in range(256)}, [])
    rng = random.Random(0)
    chars = [chr(c) for c in range(0x4E00, 0x4E00 + 2000)]
    lines = ["".join(rng.choices(chars, k=40)) + "，" + "".join(rng.choices(chars, k=30))
             + "。\\n\\n" for _ in range(1000)]

    def chunks(n, fed):
        for i in range(n):
            fed.append(1)
            yield lines[i % len(lines)]

    fed = []
    ids = tok.encode_iterable(chunks(1000, fed))
    next(ids)
    first = len(fed)
    sum(1 for _ in ids)
    before = peak_mb()
    sum(1 for _ in tok.encode_iterable(chunks(60_000, [])))  # ~13 MB
    print(first, before, peak_mb())
    """
    result = run(code)
    assert result.returncode == 0, result.stderr
    first, before, after = result.stdout.split()
    assert int(first) <= 2, result.stdout
    assert float(after) - float(before) < 8, result.stdout
