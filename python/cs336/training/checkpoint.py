"""Checkpoints: model + optimizer state and the iteration, in one ``torch.save`` file.

``save_checkpoint(model, optimizer, iteration, out)`` writes a dict::

    {"format": "cs336-checkpoint", "version": 1, "iteration": int,
     "model": unwrapped model state_dict, "optimizer": optimizer state_dict,
     "model_config": model.config.to_dict() (when the model has one),
     "extra": {...}}   # cs336 train: the config and the TrainState

A path is written atomically (a temporary file in the same directory, then a rename), so
a crash never leaves a truncated checkpoint behind. The model is saved as it was before
``torch.compile`` or ``DistributedDataParallel`` wrapped it, so parameter names carry no
``_orig_mod.`` / ``module.`` prefixes. Files load with ``weights_only=True``: every value
in ``extra`` must be a tensor, number, string, bool, None, or a list/tuple/dict of those.
"""

from __future__ import annotations

import os
from typing import IO, Any

import torch

from cs336._files import atomic_open

FORMAT = "cs336-checkpoint"
VERSION = 1

Target = str | os.PathLike[str] | IO[bytes]


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside ``torch.compile`` (``_orig_mod``) and DDP (``module``) wrappers."""
    while True:
        if isinstance(model, torch.nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, torch.nn.Module):
            model = model._orig_mod
        else:
            return model


def atomic_torch_save(obj: Any, path: str | os.PathLike[str]) -> None:
    """``torch.save(obj, path)`` through a temporary file and ``os.replace``: readers see
    the old file or the complete new one, never a partial write."""
    with atomic_open(path, "wb") as f:
        torch.save(obj, f)


def save_checkpoint(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None,
    iteration: int,
    out: Target,
    *,
    extra: dict[str, Any] | None = None,
) -> None:
    """Save the model, the optimizer and the iteration to ``out`` (a path or a binary
    file object). Paths are written atomically.

    >>> import io
    >>> m = torch.nn.Linear(2, 2); buf = io.BytesIO()
    >>> save_checkpoint(m, torch.optim.SGD(m.parameters(), lr=0.1), 7, buf)
    >>> _ = buf.seek(0); load_checkpoint(buf, m, None)
    7
    """
    if not isinstance(iteration, int) or iteration < 0:
        raise ValueError(f"iteration must be a non-negative int, got {iteration!r}")
    model = unwrap_model(model)
    payload: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "iteration": iteration,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "model_config": config.to_dict() if (config := getattr(model, "config", None)) else None,
        "extra": extra or {},
    }
    if isinstance(out, (str, os.PathLike)):
        atomic_torch_save(payload, out)
    else:
        torch.save(payload, out)


def read_checkpoint(src: Target) -> dict[str, Any]:
    """The raw checkpoint dict (tensors on the CPU), after checking its format.

    Raises:
        FileNotFoundError: ``src`` is a path that does not exist.
        ValueError: the file is corrupt, truncated, or not a cs336 checkpoint.
    """
    name = os.fspath(src) if isinstance(src, (str, os.PathLike)) else "checkpoint stream"
    if isinstance(src, (str, os.PathLike)) and not os.path.isfile(src):
        raise FileNotFoundError(f"checkpoint not found: {name}")
    try:
        payload = torch.load(src, map_location="cpu", weights_only=True)
    except Exception as e:  # torch reports corruption as RuntimeError, UnpicklingError, EOFError...
        raise ValueError(f"{name} is corrupt or truncated (cannot be loaded): {e}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{name} is not a cs336 checkpoint (no {FORMAT!r} marker)")
    if payload.get("version") != VERSION:
        raise ValueError(
            f"{name} has checkpoint format version {payload.get('version')}, expected {VERSION}"
        )
    return payload


def load_checkpoint(
    src: Target,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None,
) -> int:
    """Restore ``model`` (and ``optimizer`` unless None) from ``src`` (a path or binary file
    object); return the saved iteration. Wrapped models (compile, DDP) are unwrapped.

    Raises:
        FileNotFoundError: ``src`` is a path that does not exist.
        ValueError: the file is corrupt, truncated, not a cs336 checkpoint, or was saved
            without an optimizer state while ``optimizer`` is given.
        RuntimeError: the parameter names or shapes do not match ``model`` (torch's message).
    """
    payload = read_checkpoint(src)
    unwrap_model(model).load_state_dict(payload["model"])
    if optimizer is not None:
        if payload["optimizer"] is None:
            raise ValueError("the checkpoint holds no optimizer state")
        optimizer.load_state_dict(payload["optimizer"])
    return int(payload["iteration"])
