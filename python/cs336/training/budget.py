"""Training to a wall-clock budget (``time_budget = "45m"``): :func:`parse_duration`, the
run's clock (:func:`process_age`) and :class:`TimeBudget`, which says when training must
stop so that the last validation and checkpoint still fit.

A run's clock counts every second since the run began (for ``cs336 train``, since its
process started: imports, data checks, building and compiling the model; then validations,
samples and checkpoints), summed over resumes.
Training stops at the budget minus a reserve for what must follow the last step (a
validation and a checkpoint, each as long as the longest one so far, with a margin), and the
learning-rate schedule (:func:`~cs336.optim.schedule.lr_schedule`) runs from the end of
warmup to that moment, so the rate is fully annealed when the run ends. Nothing here imports
torch.
"""

from __future__ import annotations

import os
import re

__all__ = ["TimeBudget", "parse_duration", "process_age"]

#: Steps whose durations :class:`TimeBudget` keeps (the slowest of them sizes the reserve).
STEPS_KEPT = 5

_DURATION = re.compile(r"^(?:(\d+(?:\.\d*)?)h)?(?:(\d+(?:\.\d*)?)m)?(?:(\d+(?:\.\d*)?)s?)?$")


def parse_duration(value: float | str) -> float:
    """Seconds in ``value``: a number of seconds, or a string of hours, minutes and seconds
    such as ``"45m"``, ``"2h"``, ``"1h30m"``, ``"90s"`` or ``"90"``.

    >>> parse_duration("45m"), parse_duration("1h30m"), parse_duration(90)
    (2700.0, 5400.0, 90.0)

    Raises:
        ValueError: not a positive duration (naming the value).
    """
    if isinstance(value, bool):
        raise ValueError(f"time_budget must be a duration such as 45m or 2h, got {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value).strip().replace(" ", ""))
        if not match or not any(match.groups()):
            raise ValueError(
                f"time_budget must be a duration such as 45m, 2h, 1h30m or 600 (seconds), "
                f"got {value!r}"
            )
        hours, minutes, secs = (float(g) if g else 0.0 for g in match.groups())
        seconds = hours * 3600 + minutes * 60 + secs
    if not seconds > 0 or seconds == float("inf"):
        raise ValueError(f"time_budget must be a positive duration, got {value!r}")
    return seconds


def process_age() -> float:
    """Seconds since this process started (Linux: from ``/proc``), or 0.0 where that
    cannot be read, so a run's clock starts before its imports."""
    try:
        with open("/proc/self/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open("/proc/uptime", encoding="ascii") as f:
            uptime = float(f.read().split()[0])
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22: starttime
    except (OSError, ValueError, IndexError):
        return 0.0
    return max(0.0, uptime - started)


class TimeBudget:
    """When a run of ``seconds`` must stop training.

    Call :meth:`note` with the duration of every validation and checkpoint, and of a
    recent step, as they happen; :meth:`training_end` is then the budget minus a reserve:
    1.25 x (the longest validation + the longest checkpoint; before the first of each,
    ``validation_steps`` training steps and ``checkpoint_guess`` seconds) plus three times
    the slowest of the latest :data:`STEPS_KEPT` steps (a loaded machine's steps vary).

    >>> budget = TimeBudget(600.0, checkpoint_guess=2.0)
    >>> budget.note("validation", 4.0); budget.note("step", 0.1)
    >>> round(budget.training_end(), 2), budget.spent(592.0)
    (592.2, False)
    """

    def __init__(
        self, seconds: float, *, checkpoint_guess: float, validation_steps: float = 0.0
    ) -> None:
        self.seconds = seconds
        self._longest = {"validation": 0.0, "checkpoint": 0.0}
        self._steps: list[float] = []  # the latest few
        self._first_step = 0.0
        self._checkpoint_guess = checkpoint_guess
        self._validation_steps = validation_steps

    def note(self, what: str, seconds: float) -> None:
        """Record one ``validation``, ``checkpoint``, ``step`` or ``first step`` (which
        stands for the steps until one is noted) of ``seconds``."""
        if what == "step":
            self._steps = [*self._steps[-(STEPS_KEPT - 1) :], seconds]
        elif what == "first step":  # it compiles: a stand-in until other steps are noted
            self._first_step = seconds
        else:
            self._longest[what] = max(self._longest[what], seconds)

    def reserve(self) -> float:
        """Seconds kept for what follows the last training step."""
        step = max(self._steps, default=self._first_step)
        checkpoint = self._longest["checkpoint"] or self._checkpoint_guess
        validation = self._longest["validation"] or self._validation_steps * step
        return 1.25 * (validation + checkpoint) + 3 * step

    def training_end(self) -> float:
        """The clock reading at which training stops, as :meth:`note` knows it now."""
        return self.seconds - self.reserve()

    def spent(self, clock: float) -> bool:
        """Whether training must stop at ``clock`` seconds."""
        return clock >= self.training_end()
