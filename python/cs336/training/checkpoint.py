"""Checkpoints: model + optimizer state and the iteration, in one ``torch.save`` file, or
with the model's weights in a ``safetensors`` file beside it.

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

With ``weights=PATH`` (``cs336 train --checkpoint_format safetensors``) the model's
weights go to a cs336 *weights file* at ``PATH`` instead (``"model": None``, ``"version":
2`` and ``"weights": {"file": name relative to the checkpoint, "id": ...}``); the
checkpoint keeps the optimizer, RNG and training state. A weights file is a
``safetensors`` file of the model's state dict under cs336's names, with the model config
in its metadata, so it is a complete model that loads without pickle:
:func:`read_checkpoint` and ``cs336 generate --checkpoint model.safetensors`` read it
alone. The two files are committed in an order that survives a crash between them: the
new weights are written to ``PATH.pending``, then the checkpoint (which names their id)
replaces the old one, then the weights are renamed to ``PATH``; a reader that finds
``PATH`` older than the checkpoint reads ``PATH.pending``.

``safetensors`` is optional (``pip install 'cs336[hf]'``) and imported only when a
weights file is written or read.
"""

from __future__ import annotations

import json
import os
import uuid
from typing import IO, Any

import torch

from cs336._files import atomic_open

FORMAT = "cs336-checkpoint"
VERSION = 1
VERSION_SPLIT = 2  # the weights are in a weights file beside the checkpoint
WEIGHTS_FORMAT = "cs336-weights"
WEIGHTS_VERSION = "1"

Target = str | os.PathLike[str] | IO[bytes]
"""Where a checkpoint goes or comes from: a path or a binary file object."""


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
    weights: str | os.PathLike[str] | None = None,
) -> None:
    """Save the model, the optimizer and the iteration to ``out`` (a path or a binary
    file object). Paths are written atomically. ``weights``: a path for the model's
    weights as a cs336 weights file (``safetensors``; see the module docs), which needs
    ``out`` to be a path; by default they are inside the checkpoint.

    >>> import io
    >>> m = torch.nn.Linear(2, 2); buf = io.BytesIO()
    >>> save_checkpoint(m, torch.optim.SGD(m.parameters(), lr=0.1), 7, buf)
    >>> _ = buf.seek(0); load_checkpoint(buf, m, None)
    7

    Raises:
        ValueError: a negative or non-int ``iteration``; ``weights`` with a file object.
        RuntimeError: ``weights`` is given and safetensors is not installed.
    """
    if not isinstance(iteration, int) or iteration < 0:
        raise ValueError(f"iteration must be a non-negative int, got {iteration!r}")
    model = unwrap_model(model)
    is_path = isinstance(out, (str, os.PathLike))
    if weights is not None and not is_path:
        raise ValueError("a checkpoint with a separate weights file must be saved to a path")
    payload: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "iteration": iteration,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "model_config": config.to_dict() if (config := getattr(model, "config", None)) else None,
        "extra": extra or {},
    }
    if weights is None:
        if is_path:
            atomic_torch_save(payload, out)  # type: ignore[arg-type]
        else:
            torch.save(payload, out)
        return
    weights, out = os.fspath(weights), os.fspath(out)  # type: ignore[arg-type]
    checkpoint_id = uuid.uuid4().hex
    pending = weights + ".pending"
    save_weights(model, pending, iteration=iteration, checkpoint_id=checkpoint_id)
    relative = os.path.relpath(os.path.abspath(weights), os.path.dirname(os.path.abspath(out)))
    payload.update(
        model=None, version=VERSION_SPLIT, weights={"file": relative, "id": checkpoint_id}
    )
    atomic_torch_save(payload, out)  # the commit point
    os.replace(pending, weights)


def read_checkpoint(src: Target) -> dict[str, Any]:
    """The raw checkpoint dict (tensors on the CPU), after checking its format, with
    ``"model"`` filled in from the weights file when the checkpoint has one. A path
    ending in ``.safetensors`` is read as a weights file alone (``"optimizer": None``,
    ``"extra": {}``).

    Raises:
        FileNotFoundError: ``src`` (or its weights file) is a path that does not exist.
        ValueError: the file is corrupt, truncated, or not a cs336 checkpoint; its weights
            file does not belong to it; it has a weights file and ``src`` is not a path.
        RuntimeError: a weights file is to be read and safetensors is not installed.
    """
    name = os.fspath(src) if isinstance(src, (str, os.PathLike)) else "checkpoint stream"
    if isinstance(src, (str, os.PathLike)) and not os.path.isfile(src):
        raise FileNotFoundError(f"checkpoint not found: {name}")
    if name.endswith(".safetensors"):
        state, meta = read_weights(name)
        return {
            "format": FORMAT,
            "version": VERSION,
            "iteration": int(meta.get("iteration", 0)),
            "model": state,
            "optimizer": None,
            "model_config": meta["model_config"],
            "extra": {},
        }
    try:
        payload = torch.load(src, map_location="cpu", weights_only=True)
    except Exception as e:  # torch reports corruption as RuntimeError, UnpicklingError, EOFError...
        raise ValueError(f"{name} is corrupt or truncated (cannot be loaded): {e}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{name} is not a cs336 checkpoint (no {FORMAT!r} marker)")
    if payload.get("version") not in (VERSION, VERSION_SPLIT):
        raise ValueError(
            f"{name} has checkpoint format version {payload.get('version')}, expected "
            f"{VERSION} or {VERSION_SPLIT}"
        )
    if payload["version"] == VERSION_SPLIT:
        if name == "checkpoint stream":
            raise ValueError(
                f"this checkpoint keeps its weights in {payload['weights']['file']}: "
                "read it from its path"
            )
        payload["model"] = _split_weights(name, payload["weights"])
    return payload


def _split_weights(checkpoint: str, ref: dict[str, str]) -> dict[str, torch.Tensor]:
    """The state dict of the weights file ``ref`` names, next to ``checkpoint``."""
    path = os.path.join(os.path.dirname(os.path.abspath(checkpoint)), ref["file"])
    for candidate in (path, path + ".pending"):  # .pending: a crash before the rename
        if os.path.isfile(candidate):
            state, meta = read_weights(candidate)
            if meta.get("checkpoint_id") == ref["id"]:
                return state
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{checkpoint} keeps its weights in {path}, which is missing")
    raise ValueError(
        f"{path} does not hold the weights of {checkpoint} (another run's or an older "
        "save's); keep the two files together"
    )


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


# ---------------------------------------------------------------------------------------------
# safetensors files: cs336 weights files here, Hugging Face ones in cs336.export


def _safetensors() -> Any:
    try:
        import safetensors.torch
    except ImportError:
        raise RuntimeError(
            "safetensors files need the safetensors package: pip install 'cs336[hf]' "
            "(or pip install safetensors)"
        ) from None
    return safetensors.torch


def atomic_save_safetensors(
    tensors: dict[str, torch.Tensor], path: str | os.PathLike[str], metadata: dict[str, str]
) -> None:
    """Write ``tensors`` (no two may share memory) as a safetensors file at ``path``,
    atomically (the file is built in memory, then written as :func:`atomic_torch_save`
    writes)."""
    data = _safetensors().save({k: v.contiguous() for k, v in tensors.items()}, metadata)
    with atomic_open(path, "wb") as f:
        f.write(data)


def load_safetensors(
    path: str | os.PathLike[str],
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors (on the CPU) and the metadata of the safetensors file ``path``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: it is not a readable safetensors file.
    """
    _safetensors()
    from safetensors import safe_open

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"safetensors file not found: {path}")
    try:
        with safe_open(path, framework="pt", device="cpu") as f:
            metadata = dict(f.metadata() or {})
            tensors = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118
    except Exception as e:  # safetensors raises SafetensorError, OSError, ...
        raise ValueError(f"{path} is not a readable safetensors file: {e}") from None
    return tensors, metadata


def save_weights(
    model: torch.nn.Module,
    path: str | os.PathLike[str],
    *,
    iteration: int = 0,
    checkpoint_id: str = "",
) -> None:
    """Write the (unwrapped) model's state dict as a cs336 weights file: safetensors with
    the model config, the iteration and the tied parameters (``lm_head.weight`` is
    ``token_embeddings.weight``: stored once) in its metadata. Atomic.

    >>> save_weights(model, "model.safetensors")  # doctest: +SKIP
    >>> load_model("model.safetensors")  # doctest: +SKIP

    Raises:
        RuntimeError: safetensors is not installed.
    """
    model = unwrap_model(model)
    tensors: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}  # name -> the earlier name that shares its storage
    seen: dict[tuple[Any, ...], str] = {}
    for key, tensor in model.state_dict().items():
        where = (tensor.data_ptr(), tuple(tensor.shape), tensor.stride())
        if where in seen:
            aliases[key] = seen[where]
        else:
            seen[where] = key
            tensors[key] = tensor.detach().cpu()
    config = getattr(model, "config", None)
    metadata = {
        "format": "pt",
        "cs336": WEIGHTS_FORMAT,
        "version": WEIGHTS_VERSION,
        "iteration": str(iteration),
        "checkpoint_id": checkpoint_id,
        "aliases": json.dumps(aliases),
        "model_config": json.dumps(config.to_dict() if config is not None else None),
    }
    atomic_save_safetensors(tensors, path, metadata)


def read_weights(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``(state dict, metadata)`` of a cs336 weights file (see :func:`save_weights`):
    tied parameters are restored, and ``metadata["model_config"]`` is the config dict
    (or None).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: it is not a cs336 weights file (e.g. a Hugging Face one: use
            ``cs336 import-hf``).
    """
    tensors, raw = load_safetensors(path)
    if raw.get("cs336") != WEIGHTS_FORMAT:
        raise ValueError(
            f"{os.fspath(path)} is a safetensors file but not a cs336 weights file (no "
            f"{WEIGHTS_FORMAT!r} marker); for a Hugging Face model directory use "
            "cs336 import-hf"
        )
    if raw.get("version") != WEIGHTS_VERSION:
        raise ValueError(
            f"{os.fspath(path)} has weights format version {raw.get('version')}, expected "
            f"{WEIGHTS_VERSION}"
        )
    meta: dict[str, Any] = dict(raw)
    meta["model_config"] = json.loads(raw.get("model_config", "null"))
    for key, source in json.loads(raw.get("aliases", "{}")).items():
        tensors[key] = tensors[source]
    return tensors, meta
