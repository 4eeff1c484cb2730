"""The processes of a run: torchrun's process group (:func:`processes`), and the stop
signals every process must agree on (:class:`SignalStop`, :func:`agree_on_signal`)."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["SignalStop", "agree_on_signal", "processes"]


@contextlib.contextmanager
def processes(device_name: str) -> Iterator[tuple[int, int, torch.device]]:
    """(rank, world size, device); initializes the process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if device_name == "auto":
        device_name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device_name)  # a bad device string raises torch's own error
    if world <= 1:
        yield 0, 1, device
        return
    local_rank = int(os.environ["LOCAL_RANK"])
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    owner = not dist.is_initialized()
    if owner:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        yield dist.get_rank(), dist.get_world_size(), device
    finally:
        if owner:
            dist.destroy_process_group()


class SignalStop:
    """Records SIGINT/SIGTERM so the loop can stop at a step boundary; a second SIGINT
    raises KeyboardInterrupt. Installed only in the main thread."""

    def __init__(self) -> None:
        self.signum = 0
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: object) -> None:
        if self.signum and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum

    def __enter__(self) -> SignalStop:
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)


def agree_on_signal(signum: int, world: int, device: torch.device) -> int:
    """The signal number seen by any process (0 if none), the same on every process (a
    collective: every process calls it at the same step)."""
    if world == 1:
        return signum
    t = torch.tensor([signum], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t.item())
