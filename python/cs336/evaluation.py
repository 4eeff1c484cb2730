"""A trained model's loss on a whole file: :func:`evaluate_file` (what ``cs336 eval`` runs)
and :func:`evaluate_tokens`.

The file is cut into non-overlapping windows of ``context_length`` tokens, the windows the
training loop validates on (:func:`cs336.training.data.eval_batches`), and the losses are
summed by the loop's own :func:`cs336.training.step.evaluate`: on the same windows, the
two agree. Every token is predicted exactly once:

- a file of ``N`` tokens has ``N - 1`` predictions (the first token has nothing before
  it to be predicted from: the models here have no beginning-of-sequence token);
- window ``i`` reads tokens ``[i T, (i + 1) T)`` and predicts ``[i T + 1, (i + 1) T]``,
  for ``i < (N - 1) // T`` (the loop's windows);
- the ``r = (N - 1) % T`` tokens left after them are predicted by one shorter window,
  tokens ``[N - 1 - r, N - 1)``, which, like every other window, starts from no context.

So the tail is counted as one more non-overlapping window, just shorter; a file shorter
than one window is that tail alone. The file is memory-mapped (a ``.npy`` of token ids)
or, for text, encoded to a temporary ``.npy`` by the streaming
:meth:`~cs336.tokenizer.Tokenizer.encode_file` first: memory never holds the file.

This module imports torch; it never imports the CLI.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from cs336._files import scratch_dir
from cs336.nn.model import TransformerLM
from cs336.training.data import batch_at, eval_batches, open_tokens, token_id_range
from cs336.training.step import autocast_for, evaluate

__all__ = ["EvalResult", "evaluate_file", "evaluate_tokens"]


@dataclass(frozen=True)
class EvalResult:
    """What :func:`evaluate_tokens` measured.

    Attributes:
        loss: mean cross-entropy per predicted token, in nats.
        perplexity: ``exp(loss)``.
        tokens: predicted tokens: the file's tokens minus one.
        windows: forward windows, the shorter last one included.
        context_length: tokens per window.
    """

    loss: float
    perplexity: float
    tokens: int
    windows: int
    context_length: int


def _counting(
    batches: Iterable[tuple[Tensor, Tensor]], bar: tqdm | None
) -> Iterator[tuple[Tensor, Tensor]]:
    """``batches``, advancing ``bar`` by each batch's predicted tokens."""
    for x, y in batches:
        yield x, y
        if bar is not None:
            bar.update(y.numel())


def evaluate_tokens(
    model: TransformerLM,
    tokens: np.ndarray,
    *,
    context_length: int | None = None,
    batch_size: int = 32,
    dtype: str = "auto",
    progress: bool = False,
) -> EvalResult:
    """Mean loss and perplexity of ``model`` over every token of the 1-D id array
    ``tokens`` (an ``np.memmap`` is read a batch at a time), in non-overlapping windows
    of ``context_length`` tokens (default: the model's), ``batch_size`` windows per
    forward pass, the last ``(len(tokens) - 1) % context_length`` predictions in one
    shorter window (see the module docs). Runs on the model's device, in eval mode;
    ``dtype`` ``"auto"`` is bf16 autocast on CUDA (as in training), float32 elsewhere.

    >>> from cs336.nn.model import ModelConfig
    >>> m = TransformerLM.from_config(ModelConfig(50, 8, 16, 1, 2, 32))
    >>> r = evaluate_tokens(m, np.arange(20) % 50, context_length=8)
    >>> r.tokens, r.windows
    (19, 3)

    Raises:
        ValueError: fewer than 2 tokens, an id outside the model's vocabulary,
            ``context_length`` outside ``[1, model context_length]``, ``batch_size < 1``,
            or an unknown ``dtype``.
    """
    cfg = model.config
    ctx = cfg.context_length if context_length is None else context_length
    if not 1 <= ctx <= cfg.context_length:
        raise ValueError(
            f"context_length ({ctx}) must be in [1, the model's context_length "
            f"({cfg.context_length})]"
        )
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if len(tokens) < 2:
        raise ValueError(f"need at least 2 tokens to predict one, got {len(tokens)}")
    smallest, largest = token_id_range(tokens)
    if smallest < 0:
        raise ValueError(f"token ids must be >= 0, got {smallest}")
    if largest >= cfg.vocab_size:
        raise ValueError(
            f"token id {largest} is outside the model's vocabulary (vocab_size "
            f"{cfg.vocab_size}): the tokens were made with a different tokenizer"
        )
    device = next(model.parameters()).device
    predicted = len(tokens) - 1
    full = predicted // ctx
    tail = predicted - full * ctx
    batches: Iterable[tuple[Tensor, Tensor]] = eval_batches(tokens, batch_size, ctx, device)
    if tail:  # one shorter window, starting where the last full one ended
        batches = itertools.chain(batches, [batch_at(tokens, np.array([full * ctx]), tail, device)])
    bar = tqdm(total=predicted, unit="tok", unit_scale=True, desc="eval") if progress else None
    try:
        totals = evaluate(model, _counting(batches, bar), autocast=autocast_for(dtype, device))
    finally:
        if bar is not None:
            bar.close()
    total, count = totals.tolist()
    assert int(count) == predicted, (count, predicted)
    loss = total / count
    return EvalResult(
        loss=loss,
        perplexity=math.exp(loss),
        tokens=predicted,
        windows=full + (1 if tail else 0),
        context_length=ctx,
    )


def _device(name: str) -> torch.device:
    """``"auto"``: CUDA when present, else the CPU (as ``cs336 train``); any other name is
    torch's (an unusable one raises torch's own error)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def evaluate_file(
    checkpoint: str | os.PathLike[str],
    data: str | os.PathLike[str],
    *,
    tokenizer: str | os.PathLike[str] | None = None,
    context_length: int | None = None,
    batch_size: int = 32,
    device: str = "auto",
    dtype: str = "auto",
    progress: bool = False,
) -> EvalResult:
    """Mean loss and perplexity of the model in ``checkpoint`` over the whole of ``data``:
    a ``.npy`` file of token ids (memory-mapped), or a UTF-8 text file, which is first
    encoded with ``tokenizer`` (a tokenizer directory) into a temporary ``.npy`` that is
    removed afterwards. See :func:`evaluate_tokens` for the windows and the other
    arguments; ``device="auto"`` is CUDA when present, else the CPU.

    >>> evaluate_file("runs/ts/checkpoint.pt", "data/ts/valid.npy")  # doctest: +SKIP
    EvalResult(loss=1.38, perplexity=3.97, tokens=5461209, windows=21333, context_length=256)

    Raises:
        FileNotFoundError: ``checkpoint``, ``data`` or ``tokenizer`` does not exist.
        ValueError: a text file without ``tokenizer``, a tokenizer with more ids than the
            model, a corrupt file, or a bad argument (see :func:`evaluate_tokens`).
        UnicodeError: a text file that is not UTF-8.
    """
    from cs336.generation import load_model

    data = Path(data)
    if not data.is_file():
        raise FileNotFoundError(f"data file not found: {data}")
    model = load_model(checkpoint, device=_device(device))
    if data.suffix == ".npy":
        return evaluate_tokens(
            model, open_tokens(data), context_length=context_length, batch_size=batch_size,
            dtype=dtype, progress=progress,
        )  # fmt: skip
    if tokenizer is None:
        raise ValueError(
            f"{data} is not a .npy token file: to evaluate it as text, give the tokenizer "
            "directory the model was trained with"
        )
    from cs336.tokenizer import Tokenizer

    tok = Tokenizer.from_dir(tokenizer)
    if tok.vocab_size != model.config.vocab_size:
        raise ValueError(
            f"the tokenizer {tokenizer} does not belong to the model {checkpoint}: it has "
            f"{tok.vocab_size:,} tokens, the model a vocabulary of {model.config.vocab_size:,}"
        )
    with scratch_dir() as tmp:  # removed also when Ctrl-C ends the cs336 command at once
        path = tmp / "tokens.npy"
        tok.encode_file(data, path, show_progress=progress)
        tokens = open_tokens(path)
        try:
            return evaluate_tokens(
                model, tokens, context_length=context_length, batch_size=batch_size,
                dtype=dtype, progress=progress,
            )  # fmt: skip
        finally:
            del tokens  # unmap before the directory is removed
