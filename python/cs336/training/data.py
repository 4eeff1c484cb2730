"""Token files and batches: memory-mapped ``.npy`` arrays of token ids, random training
batches (``get_batch``) and sequential validation batches (``eval_batches``).

A token file is a 1-D ``.npy`` array of unsigned integers (``cs336 tokenize`` writes
``uint16`` when the vocabulary fits, else ``uint32``). It is opened with
``np.load(mmap_mode="r")``, so a corpus larger than memory costs only the pages a batch
touches.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import torch

# The id range of a token file is computed in chunks of this many ids (64 MiB of uint32).
_SCAN_CHUNK = 1 << 24


def open_tokens(path: str | os.PathLike[str]) -> np.ndarray:
    """Memory-map a 1-D ``.npy`` file of integer token ids (read-only).

    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "t.npy"); np.save(p, np.arange(5, dtype=np.uint16))
    >>> open_tokens(p)[1:3].tolist()
    [1, 2]

    Raises:
        FileNotFoundError: ``path`` does not exist.
        IsADirectoryError: ``path`` is a folder.
        ValueError: the file is not a ``.npy`` array, or not a 1-D integer array.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path} is a folder, not a token file (.npy)")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"token file not found: {path}")
    with open(path, "rb") as f:
        if f.read(6) != b"\x93NUMPY":
            raise ValueError(
                f"{path} is not a readable .npy token file: it is not a .npy file at all "
                "(make one from text with cs336 tokenize)"
            )
    try:
        tokens = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise ValueError(f"{path} is not a readable .npy token file: {e}") from None
    if tokens.ndim != 1 or not np.issubdtype(tokens.dtype, np.integer):
        raise ValueError(
            f"{path} must hold a 1-D integer array of token ids, "
            f"got shape {tokens.shape} and dtype {tokens.dtype}"
        )
    return tokens


def token_id_range(tokens: np.ndarray) -> tuple[int, int]:
    """``(smallest, largest)`` id in ``tokens``, read in chunks so a memmap is streamed in
    one pass, not loaded.

    >>> token_id_range(np.array([3, 9, 2]))
    (2, 9)

    Raises:
        ValueError: ``tokens`` is empty.
    """
    if len(tokens) == 0:
        raise ValueError("the token array is empty")
    chunks = (tokens[i : i + _SCAN_CHUNK] for i in range(0, len(tokens), _SCAN_CHUNK))
    lows, highs = zip(*((int(c.min()), int(c.max())) for c in chunks), strict=True)
    return min(lows), max(highs)


def check_tokens(tokens: np.ndarray, context_length: int, vocab_size: int, name: str) -> None:
    """Check that ``tokens`` can feed a model: long enough for one ``context_length``
    window plus its shifted target, and every id in ``[0, vocab_size)`` (a file of a
    signed type may hold negative numbers, which are no token ids).

    Raises:
        ValueError: naming ``name`` (usually the file) and the offending number.
    """
    if len(tokens) < context_length + 1:
        raise ValueError(
            f"{name} has {len(tokens)} tokens; a context of {context_length} needs at least "
            f"{context_length + 1}"
        )
    smallest, largest = token_id_range(tokens)
    if smallest < 0:
        raise ValueError(
            f"{name} contains {smallest}, which is no token id (ids are 0 to vocab_size - 1): "
            "it is not a token file cs336 tokenize wrote"
        )
    if largest >= vocab_size:
        raise ValueError(
            f"{name} contains token id {largest}, but the model's vocab_size is {vocab_size}: "
            "the token file was made with a different (larger) tokenizer"
        )


def sample_starts(
    num_tokens: int,
    batch_size: int,
    context_length: int,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``batch_size`` window starts drawn uniformly from ``[0, num_tokens - context_length - 1]``
    (int64, on the CPU), so each window and its target shifted by one fit in the array."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if context_length < 1:
        raise ValueError(f"context_length must be >= 1, got {context_length}")
    if num_tokens < context_length + 1:
        raise ValueError(
            f"need at least context_length + 1 = {context_length + 1} tokens, got {num_tokens}"
        )
    high = num_tokens - context_length  # exclusive bound: the last start is len - ctx - 1
    return torch.randint(0, high, (batch_size,), generator=generator)


def batch_at(
    tokens: np.ndarray,
    starts: torch.Tensor | np.ndarray,
    context_length: int,
    device: str | torch.device,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs ``x = tokens[s : s + context_length]`` and targets ``y = x`` shifted by one, for
    each start ``s``; both int64 of shape ``(len(starts), context_length)`` on ``device``.

    One ``(B, T + 1)`` array in the file's own dtype (2 bytes a token for ``uint16``) is
    sent to the device and widened there. On CUDA the host copy is pinned and sent with
    ``non_blocking=True``, so it overlaps with the previous step's compute.
    """
    starts = np.asarray(starts, dtype=np.int64)
    windows = starts[:, None] + np.arange(context_length + 1)  # (B, T + 1)
    chunk, mask = _compact(np.asarray(tokens[windows]))
    device = torch.device(device)  # an unusable device string raises torch's own error
    if device.type == "cuda":
        chunk = chunk.pin_memory().to(device, non_blocking=True)
    else:
        chunk = chunk.to(device)
    ids = chunk.long()
    if mask is not None:  # undo the signed view of unsigned ids
        ids &= mask
    return ids[:, :-1].contiguous(), ids[:, 1:].contiguous()  # (B, T) each


def _compact(chunk: np.ndarray) -> tuple[torch.Tensor, int | None]:
    """``chunk`` as a tensor without widening it: unsigned 16/32-bit ids are viewed as the
    signed type of their width (torch widens those everywhere), with the mask that
    restores them after widening; other integer types are taken as they are."""
    if chunk.dtype == np.uint16:
        return torch.from_numpy(chunk.view(np.int16)), 0xFFFF
    if chunk.dtype == np.uint32:
        return torch.from_numpy(chunk.view(np.int32)), 0xFFFF_FFFF
    return torch.from_numpy(chunk.astype(np.int64, copy=False)), None


def get_batch(
    tokens: np.ndarray,
    batch_size: int,
    context_length: int,
    device: str | torch.device,
    *,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample a random training batch from a 1-D array (or ``np.memmap``) of token ids.

    Starts are uniform in ``[0, len(tokens) - context_length - 1]``; ``y`` is ``x`` shifted
    by one token. Both are int64 tensors of shape ``(batch_size, context_length)`` on
    ``device`` (pinned and non-blocking on CUDA). Pass a seeded ``torch.Generator`` for
    reproducible batches; by default torch's global generator is used.

    >>> x, y = get_batch(np.arange(100), 4, 8, "cpu")
    >>> x.shape, x.dtype, bool((y[:, :-1] == x[:, 1:]).all())
    (torch.Size([4, 8]), torch.int64, True)

    Raises:
        ValueError: ``batch_size`` or ``context_length`` below 1, or fewer than
            ``context_length + 1`` tokens.
        RuntimeError: ``device`` is unusable (torch's own error, unchanged).
    """
    starts = sample_starts(len(tokens), batch_size, context_length, generator=generator)
    return batch_at(tokens, starts, context_length, device)


def eval_batches(
    tokens: np.ndarray,
    batch_size: int,
    context_length: int,
    device: str | torch.device,
    *,
    max_batches: int | None = None,
    part: tuple[int, int] = (0, 1),
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Sequential, non-overlapping validation batches from the start of ``tokens``: window
    ``i`` starts at ``i * context_length``. The same windows every time, so validation
    losses of different steps (and runs) are comparable. Stops after ``max_batches``
    batches, or when the windows run out (the last batch may be smaller).

    ``part=(r, n)`` yields only the ``r``-th of ``n`` equal consecutive slices of each
    batch (empty slices are skipped): process ``r`` of ``n`` evaluates its share of the
    same windows, in batches the size of its training micro-batch.

    >>> [x[:, 0].tolist() for x, _ in eval_batches(np.arange(20), 2, 4, "cpu")]
    [[0, 4], [8, 12]]
    >>> [x[:, 0].tolist() for x, _ in eval_batches(np.arange(20), 2, 4, "cpu", part=(1, 2))]
    [[4], [12]]
    """
    rank, parts = part
    if not 0 <= rank < parts:
        raise ValueError(f"part must be (r, n) with 0 <= r < n, got {part}")
    num_windows = (len(tokens) - 1) // context_length
    if max_batches is not None:
        num_windows = min(num_windows, max_batches * batch_size)
    share = -(-batch_size // parts)  # ceil: every window goes to exactly one part
    for first in range(0, num_windows, batch_size):
        lo = first + rank * share
        hi = min(lo + share, first + batch_size, num_windows)
        if lo < hi:
            yield batch_at(tokens, np.arange(lo, hi) * context_length, context_length, device)
