"""Where a training run is: :class:`TrainState`, saved in every checkpoint so that a
resumed run continues exactly as if it had never stopped.

Randomness has two sources, both reproducible on any number of processes:

- the data order: ``TrainState.sampler`` draws each step's *global* batch of window
  starts; every process holds the same generator and takes its slice of the batch;
- dropout (torch's global generators): not stored but derived. Before each step,
  :meth:`TrainState.seed_step` seeds them with :func:`step_seed` of (run seed, process
  rank, step), so step ``s`` on process ``r`` draws the same masks in a straight run and
  in a resumed one, whichever process saved the checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = ["TrainState", "step_seed"]


def step_seed(seed: int, rank: int, step: int) -> int:
    """A 64-bit seed for step ``step`` on process ``rank`` of a run seeded ``seed``
    (NumPy's ``SeedSequence``: well mixed, and the same on every platform and version).

    >>> step_seed(0, 0, 1) != step_seed(0, 1, 1) != step_seed(0, 0, 2)
    True
    """
    entropy = [seed % 2**64, rank, step]
    return int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0])


@dataclass
class TrainState:
    """The position of a run.

    Attributes:
        seed: the run's seed (``TrainConfig.seed``).
        step: optimizer steps done.
        tokens_seen: training tokens in those steps (global batches, counted once).
        elapsed: wall-clock seconds of the run since its process started (start-up,
            validations and checkpoints included), summed over resumes: the clock of
            ``time_budget``.
        sampler: the generator of the data order (seeded with ``seed``).
        warmup_end: the clock when warmup ended (a timed run's schedule starts there).
        best_val: the lowest validation loss so far (``keep_best``).
        out_of_time: the time budget (seconds) at which the run stopped, if it did.
    """

    seed: int
    sampler: torch.Generator
    step: int = 0
    tokens_seen: int = 0
    elapsed: float = 0.0
    warmup_end: float | None = None
    best_val: float | None = None
    out_of_time: float | None = None

    @classmethod
    def start(cls, seed: int) -> TrainState:
        """The state of a new run: step 0, the sampler seeded with ``seed``."""
        return cls(seed, torch.Generator().manual_seed(seed))

    def seed_step(self, rank: int) -> None:
        """Seed torch's generators (CPU and CUDA) for the next step on process ``rank``."""
        torch.manual_seed(step_seed(self.seed, rank, self.step))

    def advance(self, tokens: int, elapsed: float) -> None:
        """Count one finished step of ``tokens`` training tokens, at ``elapsed`` seconds."""
        self.step += 1
        self.tokens_seen += tokens
        self.elapsed = elapsed

    def state_dict(self) -> dict[str, Any]:
        """Plain values and a tensor (``torch.load(weights_only=True)`` reads them)."""
        return {
            "seed": self.seed,
            "step": self.step,
            "tokens_seen": self.tokens_seen,
            "elapsed": self.elapsed,
            "sampler": self.sampler.get_state(),
            "warmup_end": self.warmup_end,
            "best_val": self.best_val,
            "out_of_time": self.out_of_time,
        }

    @classmethod
    def from_state_dict(cls, d: dict[str, Any]) -> TrainState:
        """The state that :meth:`state_dict` returned.

        Raises:
            ValueError: a key is missing.
        """
        missing = {"seed", "step", "tokens_seen", "elapsed", "sampler"} - set(d)
        if missing:
            raise ValueError(f"training state lacks {', '.join(sorted(missing))}")
        sampler = torch.Generator()
        sampler.set_state(d["sampler"])
        return cls(
            d["seed"], sampler, d["step"], d["tokens_seen"], d["elapsed"],
            d.get("warmup_end"), d.get("best_val"), d.get("out_of_time"),  # absent before
        )  # fmt: skip
