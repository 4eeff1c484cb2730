"""Ctrl-C and SIGTERM in the ``cs336`` command: at any moment, one line and exit status
128 + the signal (130 for Ctrl-C), never a traceback, never a half-written file.

While a command starts up (imports of torch and its compilers, reading inputs, building a
model) and works, the signal ends the process at once from its handler: the partial
outputs being built are removed (see :func:`cs336._files.remove_partial_outputs`), the
command's line is printed and the process exits with ``os._exit``. No exception is raised,
so none can surface inside native code that cannot take one (a ``KeyboardInterrupt`` in a
nanobind callback while triton is imported aborts the process). The training loop puts in
its own handler while it trains, to stop after the current step with a checkpoint.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType

from cs336 import _files

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_message: Callable[[], str] = lambda: "cs336: interrupted"  # noqa: E731


_after_progress = False


def set_message(message: str | Callable[[], str]) -> None:
    """What the one line says when a signal stops the command (a callable is asked then)."""
    global _message
    _message = message if callable(message) else (lambda: message)


def progress_on_stderr(shown: bool = True) -> None:
    """A progress bar may leave an unfinished line on stderr from now on: the stop's line
    then starts on a line of its own."""
    global _after_progress
    _after_progress = shown


def message() -> str:
    """The line for a stop now (for a ``KeyboardInterrupt`` caught by the command)."""
    try:
        text = _message()
    except Exception:  # the line must come out whatever the callable does
        text = "cs336: interrupted"
    return "\n" + text if _after_progress else text


def _stop_now(signum: int, _frame: FrameType | None) -> None:
    _files.remove_partial_outputs()
    text = message()
    if signum != signal.SIGINT:
        text = text.replace("interrupted", f"stopped by {signal.Signals(signum).name}", 1)
    with contextlib.suppress(Exception):  # e.g. a reentrant call while stdout was writing
        sys.stdout.flush()
    with contextlib.suppress(OSError):
        os.write(2, (text + "\n").encode("utf-8", "replace"))
    os._exit(128 + signum)


def install() -> Callable[[], None]:
    """Make SIGINT and SIGTERM end the process at once (see the module docs); returns the
    function that puts the previous handlers back. Does nothing outside the main thread."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {s: signal.signal(s, _stop_now) for s in _SIGNALS}

    def restore() -> None:
        for s, handler in previous.items():
            if handler is not None:
                signal.signal(s, handler)

    return restore
