"""Host memory for CPU training: keep freed blocks for reuse instead of returning them to
the operating system.

glibc's ``malloc`` serves every block above a threshold (128 KiB to 32 MiB, adjusted as
it goes) with its own ``mmap`` and unmaps it on ``free``. A training step allocates and
frees the same large activations and gradients every time, so each step touches fresh
pages: on the 2-core development VM a 32 MiB temporary costs 8,193 page faults (about
30 ms) every time it is made, and a CPU training step spent half its time so (see
benchmarks/RESULTS.md). Raising the mmap threshold and the trim threshold keeps those
blocks in the heap, where the next step reuses them with no fault. The process keeps its
peak heap until it exits, which a training run does anyway.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

__all__ = ["keep_freed_memory"]

# mallopt(3) parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_applied = False


def keep_freed_memory() -> bool:
    """Make glibc keep freed blocks of every size for reuse (``mallopt`` of the mmap and
    trim thresholds), once per process. Returns whether it applied: False off Linux or
    with another C library, where nothing changes.
    """
    global _applied
    if _applied:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl has no mallopt)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _applied = bool(mallopt(_M_MMAP_THRESHOLD, 1 << 30) and mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
    return _applied
