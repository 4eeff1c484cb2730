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

Every checkpoint carries a checksum of its content (``"checksum"``: sha256 over each
tensor's dtype, shape and bytes and over every other value, see :func:`content_checksum`),
and every weights file one in its metadata; both are checked on every load, so a file that
changed on disk is an error naming it (:class:`CorruptCheckpointError`), never a model with
silently wrong weights. Files written before checksums existed load unchecked.

A run folder stands for its checkpoint wherever a checkpoint is read
(:func:`resolve_checkpoint`).

``safetensors`` is optional (``pip install safetensors``, or the ``hf`` extra) and imported
only when a weights file is written or read.
"""

from __future__ import annotations

import hashlib
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
CHECKPOINT_FILE = "checkpoint.pt"  # a run folder's checkpoint (cs336 train's OUT_DIR)
WEIGHTS_FILE = "model.safetensors"  # its weights, with checkpoint_format = "safetensors"
CHECKSUM_KEY = "checksum"  # in a checkpoint's dict and a weights file's metadata


class CorruptCheckpointError(ValueError):
    """A checkpoint or weights file whose content does not match the checksum written with
    it: it changed on disk after it was saved."""


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


def content_checksum(obj: Any) -> str:
    """``"sha256:<hex>"`` of a checkpoint's content: each tensor's dtype, shape and bytes
    (its own elements in order, on the CPU, whatever storage it views: parameters that are
    views into one flat buffer hash as they would alone), and every other value's type and
    ``repr``, walking dicts in their order and lists and tuples alike.

    >>> content_checksum({"w": torch.ones(2)}) == content_checksum({"w": torch.ones(2)})
    True
    >>> content_checksum({"w": torch.ones(2)}) == content_checksum({"w": torch.zeros(2)})
    False
    """
    digest = hashlib.sha256()
    _hash_into(digest, obj)
    return f"sha256:{digest.hexdigest()}"


def _hash_into(digest: Any, obj: Any) -> None:
    if isinstance(obj, torch.Tensor):
        tensor = obj.detach()
        digest.update(f"tensor {tensor.dtype} {tuple(tensor.shape)};".encode())
        if tensor.numel():
            own = tensor.to("cpu").contiguous().reshape(-1)
            digest.update(own.view(torch.uint8).numpy())
    elif isinstance(obj, dict):
        digest.update(f"dict {len(obj)};".encode())
        for key, value in obj.items():
            _hash_into(digest, key)
            _hash_into(digest, value)
    elif isinstance(obj, (list, tuple)):
        digest.update(f"list {len(obj)};".encode())
        for value in obj:
            _hash_into(digest, value)
    else:
        text = repr(obj)
        digest.update(f"{type(obj).__name__} {len(text)} {text};".encode())


def _verify(content: Any, expected: str | None, name: str) -> None:
    """Raise :class:`CorruptCheckpointError` naming ``name`` when ``content`` does not hash
    to ``expected`` (None: a file from before checksums, not checked)."""
    if expected is None:
        return
    if content_checksum(content) != expected:
        raise CorruptCheckpointError(
            f"{name} is corrupt: its content does not match the checksum written with it "
            "(the file changed on disk after it was saved); use another copy or checkpoint"
        )


def resolve_checkpoint(path: str | os.PathLike[str]) -> str:
    """The checkpoint file ``path`` stands for: a run folder (``cs336 train``'s OUT_DIR)
    means its ``checkpoint.pt``, or its ``model.safetensors`` when it has only that; any
    other path is itself.

    Raises:
        FileNotFoundError: a folder with neither file.
    """
    path = os.fspath(path)
    if not os.path.isdir(path):
        return path
    for name in (CHECKPOINT_FILE, WEIGHTS_FILE):
        candidate = os.path.join(path, name)
        if os.path.isfile(candidate):
            return candidate
    raise FileNotFoundError(
        f"{path} is a folder without {CHECKPOINT_FILE} or {WEIGHTS_FILE}: give a checkpoint "
        "file, or the run folder cs336 train wrote"
    )


def find_resume_path(resume: str | None, out_dir: str) -> str | None:
    """The checkpoint to resume from: None for a fresh run, ``"auto"`` for
    ``out_dir/checkpoint.pt`` if it exists (else a fresh run), otherwise the given path.

    Raises:
        FileNotFoundError: an explicit path does not exist.
    """
    if resume is None:
        return None
    if resume == "auto":
        path = os.path.join(out_dir, CHECKPOINT_FILE)
        return path if os.path.isfile(path) else None
    if not os.path.isfile(resume):
        raise FileNotFoundError(f"checkpoint to resume from not found: {resume}")
    return resume


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
        payload[CHECKSUM_KEY] = content_checksum(payload)
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
    payload[CHECKSUM_KEY] = content_checksum(payload)
    atomic_torch_save(payload, out)  # the commit point
    os.replace(pending, weights)


def read_checkpoint(src: Target) -> dict[str, Any]:
    """The raw checkpoint dict (tensors on the CPU), after checking its format and its
    checksum, with ``"model"`` filled in from the weights file when the checkpoint has one.
    A run folder means its checkpoint (:func:`resolve_checkpoint`); a weights file
    (``model.safetensors``) is read alone (``"optimizer": None``, ``"extra": {}``).

    Raises:
        FileNotFoundError: ``src`` (or its weights file) is a path that does not exist.
        CorruptCheckpointError: the content does not match its checksum (a ValueError).
        ValueError: the file is corrupt, truncated, or not a cs336 checkpoint; its weights
            file does not belong to it; it has a weights file and ``src`` is not a path.
        RuntimeError: a weights file is to be read and safetensors is not installed.
    """
    if isinstance(src, (str, os.PathLike)):
        name = resolve_checkpoint(src)
        if not os.path.isfile(name):
            raise FileNotFoundError(f"checkpoint not found: {name}")
        kind = _file_kind(name)
        if kind == "safetensors":
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
        if kind != "torch":
            raise ValueError(
                f"{name} is not a checkpoint: cs336 reads the .pt files cs336 train and "
                "cs336 import-hf write, and model.safetensors weights files"
            )
        src = name
    else:
        name = "checkpoint stream"
    try:
        payload = torch.load(src, map_location="cpu", weights_only=True)
    except Exception as e:  # torch reports corruption as RuntimeError, UnpicklingError, EOFError...
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        why = type(e).__name__ if "weights_only" in first.lower() else first
        raise ValueError(f"{name} is corrupt or truncated: torch cannot read it ({why})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{name} is not a cs336 checkpoint (no {FORMAT!r} marker)")
    _verify(payload, payload.pop(CHECKSUM_KEY, None), name)
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


def _file_kind(path: str) -> str:
    """``"torch"`` (a zip archive or a legacy pickle, as ``torch.save`` writes),
    ``"safetensors"`` (by name or by its header), or ``"other"``."""
    with open(path, "rb") as f:
        head = f.read(9)
    if path.endswith(".safetensors") or (len(head) == 9 and head[8:9] == b"{"):
        return "safetensors"
    if head[:4] == b"PK\x03\x04" or head[:1] == b"\x80":  # zip (torch >= 1.6), pickle
        return "torch"
    return "other"


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
            "safetensors files need the safetensors package: pip install safetensors (or "
            "install cs336 with its hf extra: pip install '.[hf]' in the source tree)"
        ) from None
    return safetensors.torch


def atomic_save_safetensors(
    tensors: dict[str, torch.Tensor], path: str | os.PathLike[str], metadata: dict[str, str]
) -> None:
    """Write ``tensors`` as a safetensors file at ``path``, atomically (the file is built in
    memory, then written as :func:`atomic_torch_save` writes), with the checksum of their
    content in the metadata (``"checksum"``, checked by :func:`load_safetensors`). Each
    tensor is copied to its own memory first: views into one buffer (which safetensors
    refuses) are written as the tensors they are."""
    own = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in tensors.items()}
    metadata = {**metadata, CHECKSUM_KEY: content_checksum({k: own[k] for k in sorted(own)})}
    data = _safetensors().save(own, metadata)
    with atomic_open(path, "wb") as f:
        f.write(data)


def load_safetensors(
    path: str | os.PathLike[str],
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors (on the CPU) and the metadata of the safetensors file ``path``, after
    checking the checksum cs336 writes in its metadata (files written elsewhere have none).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CorruptCheckpointError: the tensors do not match the checksum (a ValueError).
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
    expected = metadata.pop(CHECKSUM_KEY, None)
    _verify({k: tensors[k] for k in sorted(tensors)}, expected, path)
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
            tensors[key] = tensor
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
