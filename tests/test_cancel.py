"""Ctrl-C works in every long entry point of the core: SIGINT (sent to the child process by
another one, as a terminal's Ctrl-C is) stops encode, encode_iterable, encode_batch (many
texts, or one long text on one pool thread), encode_file (threaded or not), and training
from a file or an iterator within about a second, with the exception the signal handler
raised (KeyboardInterrupt, or SystemExit from a custom handler) and no output file. Each
case runs in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

CHILD = """
import json, os, signal, subprocess, sys, time
from cs336 import BPETrainer, Tokenizer, train_bpe

TABLE = bytes(32 if i % 7 == 0 else 97 + i % 26 for i in range(256))

def words(n):
    # n bytes of random lowercase words: mostly distinct pretokens, slow to encode and count.
    return os.urandom(n).translate(TABLE).decode()

vocab = {i: bytes([i]) for i in range(256)}
merges = [(bytes([a]), bytes([b])) for a in range(97, 123) for b in range(97, 123)]
for a, b in merges:
    vocab[len(vocab)] = a + b
tok = Tokenizer(vocab, merges)
out = os.path.join(sys.argv[1], "ids.npy")
path = os.path.join(sys.argv[1], "corpus.txt")
if CASE in ("file", "file_threads", "train", "exit_train", "exit_file"):
    with open(path, "w") as f:
        f.write(words(40 << 20))
big = words(40 << 20) if CASE in ("encode", "iterable", "batch") else ""
if CASE in ("batch_one", "iterator_one"):
    big = words(60 << 20)  # one text: seconds to encode or count here
if CASE.startswith("exit"):
    signal.signal(signal.SIGINT, lambda *_: sys.exit(7))
work = {
    "encode": lambda: tok.encode(big),
    "iterable": lambda: sum(1 for _ in tok.encode_iterable([big])),
    "batch": lambda: tok.encode_batch([big[i : i + 250_000] for i in range(0, len(big), 250_000)]),
    "batch_one": lambda: tok.encode_batch([big]),
    "file": lambda: tok.encode_file(path, out),
    "file_threads": lambda: tok.encode_file(path, out, num_threads=2),
    "exit_file": lambda: tok.encode_file(path, out, num_threads=2),
    "train": lambda: train_bpe(path, 20000),
    "iterator": lambda: BPETrainer(20000).train_from_iterator(words(1 << 20) for _ in range(60)),
    "iterator_one": lambda: BPETrainer(20000).train_from_iterator([big]),
    "exit_train": lambda: train_bpe(path, 20000),
}[CASE]
# SIGINT comes from another process, as a terminal's Ctrl-C does (a timer thread here
# would need the GIL to send it); it prints when it sent it, on the system-wide clock.
killer = subprocess.Popen([sys.executable, "-c", (
    "import os, signal, sys, time; time.sleep(float(sys.argv[2])); t = time.monotonic(); "
    "os.kill(int(sys.argv[1]), signal.SIGINT); print(t)"), str(os.getpid()), str(DELAY)],
    stdout=subprocess.PIPE, text=True)
try:
    work()
    outcome = "finished"
except BaseException as e:
    outcome = type(e).__name__ + (f"({e.code})" if isinstance(e, SystemExit) else "")
end = time.monotonic()
latency = end - float(killer.communicate()[0])
print(json.dumps({"outcome": outcome, "latency": latency, "output": os.path.exists(out)}))
"""


def run(case: str, tmp_path, delay: float = 0.5) -> dict:
    """The child's report; when its work finished before the signal came (a fast or idle
    machine), once more with the signal sent sooner, so the case measures a stop."""
    result = _run(case, tmp_path, delay)
    if result["outcome"] == "finished":
        (tmp_path / "ids.npy").unlink(missing_ok=True)  # the finished run's output
        result = _run(case, tmp_path, delay / 10)
    return result


def _run(case: str, tmp_path, delay: float) -> dict:
    code = f"CASE = {case!r}\nDELAY = {delay}\n" + textwrap.dedent(CHILD)
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize(
    "case",
    [
        "encode",
        "iterable",
        "batch",
        "batch_one",
        "file",
        "file_threads",
        "train",
        "iterator",
        "iterator_one",
    ],
)
def test_ctrl_c_stops_every_entry_point_within_a_second(case, tmp_path):
    result = run(case, tmp_path)
    assert result["outcome"] == "KeyboardInterrupt", result
    # About a second at most (generous: the machine may be loaded).
    assert result["latency"] < 3, result
    assert not result["output"], "a partial output file was left"


@pytest.mark.slow
@pytest.mark.parametrize("case", ["exit_file", "exit_train"])
def test_the_handlers_own_exception_comes_out_unchanged(case, tmp_path):
    result = run(case, tmp_path)
    assert result["outcome"] == "SystemExit(7)", result
    assert result["latency"] < 3, result
    assert not result["output"]
