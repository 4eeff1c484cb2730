"""Hugging Face ``transformers`` export and import of LLaMA-shaped models: the files.

Only ``safetensors`` is needed to export or import (the ``hf`` extra also installs
transformers, to run the result); both are imported when called, never by
``import cs336``. Exported directories hold ``config.json``, ``model.safetensors``,
``generation_config.json`` and, with a tokenizer, ``tokenizer.json`` and
``tokenizer_config.json``: ``AutoModelForCausalLM.from_pretrained`` and
``AutoTokenizer.from_pretrained`` load them with no custom code.

The mapping of weights and config is :mod:`cs336.export.llama`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from cs336._files import atomic_dir, check_output
from cs336.export.llama import (
    LLAMA_DEFAULT_EPS,
    check_exportable,
    check_importable,
    from_hf_state_dict,
    hf_config,
    rope_theta,
    to_hf_state_dict,
)
from cs336.nn.layers import no_weight_init
from cs336.nn.model import ModelConfig, TransformerLM
from cs336.training.checkpoint import atomic_save_safetensors, load_safetensors, unwrap_model

if TYPE_CHECKING:
    from cs336.tokenizer import Tokenizer

__all__ = ["from_hf", "to_hf"]

EOT = "<|endoftext|>"
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_REQUIRED = (
    "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
)  # fmt: skip
# What an export folder holds: --overwrite replaces a folder of these names only.
EXPORT_FILES = (
    "config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
    "tokenizer_config.json",
)  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Export


def to_hf(
    model: TransformerLM | str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    tokenizer: Tokenizer | str | os.PathLike[str] | None = None,
    dtype: str = "float32",
    overwrite: bool = False,
) -> Path:
    """Export a LLaMA-shaped cs336 model (or a checkpoint / weights file path) to a
    transformers directory ``out_dir``; return its path.

    It holds ``config.json`` (:func:`hf_config`), ``model.safetensors``
    (:func:`to_hf_state_dict`, in ``dtype``: float32, bfloat16 or float16) and
    ``generation_config.json``; with ``tokenizer`` (a Tokenizer or a tokenizer directory)
    also ``tokenizer.json`` and ``tokenizer_config.json``, whose bos and eos token are
    ``<|endoftext|>`` when the tokenizer has it. Everything is checked first and written
    into a temporary directory beside ``out_dir``, renamed into place at the end: a
    failure leaves nothing behind. ``overwrite`` replaces an existing export folder, never
    a folder holding other files or one of the inputs.

    >>> to_hf("runs/tinystories/checkpoint.pt", "hf/tinystories",
    ...       tokenizer="data/tinystories/tokenizer")  # doctest: +SKIP
    >>> from transformers import AutoModelForCausalLM, AutoTokenizer  # doctest: +SKIP
    >>> lm = AutoModelForCausalLM.from_pretrained("hf/tinystories")  # doctest: +SKIP

    Raises:
        ValueError: the model is not LLaMA-shaped (the message names each feature: learned
            positions, GELU/SiLU feed-forward, post-norm, no norm, parallel layers, NoPE), the
            tokenizer has ids the model does not know, or ``dtype`` is unknown.
        FileExistsError: ``out_dir`` exists and is not empty, without ``overwrite``.
        ValueError: ``out_dir`` is or holds the checkpoint or the tokenizer, is a file, or
            (with ``overwrite``) holds files an export does not write.
        FileNotFoundError: the checkpoint or the tokenizer directory is missing.
        TypeError: ``model`` is not a TransformerLM.
        RuntimeError: safetensors is not installed.
    """
    from cs336.generation import load_model
    from cs336.tokenizer import Tokenizer
    from cs336.training.checkpoint import resolve_checkpoint

    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(_DTYPES)}, got {dtype!r}")
    out = Path(out_dir)
    inputs = [p for p in (model, tokenizer) if isinstance(p, (str, os.PathLike))]
    check_output(out, overwrite=overwrite, inputs=inputs, folder=True, replaceable=EXPORT_FILES)
    if isinstance(model, (str, os.PathLike)):
        model = load_model(resolve_checkpoint(model))
    module = unwrap_model(model)
    if not isinstance(module, TransformerLM):
        raise TypeError(f"to_hf exports a cs336 TransformerLM, got {type(module).__name__}")
    cfg = module.config
    check_exportable(cfg)
    if tokenizer is not None and not isinstance(tokenizer, Tokenizer):
        tokenizer = Tokenizer.from_dir(tokenizer)
    eot = None
    if tokenizer is not None:
        top = max(tokenizer.vocab)
        if top >= cfg.vocab_size:
            raise ValueError(
                f"the tokenizer has token id {top} but the model's vocab_size is "
                f"{cfg.vocab_size}: they were not trained together"
            )
        eot = tokenizer.special_token_ids.get(EOT)
    config = hf_config(cfg, bos_token_id=eot, eos_token_id=eot, dtype=dtype)
    state = {k: v.detach().to("cpu", _DTYPES[dtype]) for k, v in module.state_dict().items()}
    tensors = to_hf_state_dict(state, cfg)
    generation = {"bos_token_id": eot, "eos_token_id": eot}
    with atomic_dir(out) as tmp:
        _write_json(tmp / "config.json", config)
        _write_json(tmp / "generation_config.json", generation)
        atomic_save_safetensors(tensors, tmp / "model.safetensors", {"format": "pt"})
        if tokenizer is not None:
            tokenizer.save_hf_tokenizer_json(tmp / "tokenizer.json")
            _write_json(tmp / "tokenizer_config.json", _tokenizer_config(tokenizer, cfg))
    return out


def _tokenizer_config(tokenizer: Tokenizer, cfg: ModelConfig) -> dict[str, Any]:
    """``tokenizer_config.json``: the class that reads ``tokenizer.json`` as it is (no
    model-specific tokenizer that would add its own normalizer or bos token), the special
    tokens, and no clean-up of spaces on decode (it would change the text)."""
    eot = EOT if EOT in tokenizer.special_token_ids else None
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": eot,
        "eos_token": eot,
        "unk_token": None,
        "pad_token": None,
        "add_bos_token": False,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": cfg.context_length,
    }


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


# ---------------------------------------------------------------------------------------------
# Import


def from_hf(
    directory: str | os.PathLike[str],
    *,
    context_length: int | None = None,
    kernels: str | None = None,
) -> TransformerLM:
    """The cs336 :class:`~cs336.nn.model.TransformerLM` (the ``cs336-2025`` preset's
    architecture, float32, eval mode) of the transformers LLaMA model in ``directory``
    (``config.json`` and ``model.safetensors``, or its shards with
    ``model.safetensors.index.json``). Grouped-query attention is expanded to one key and
    value head per query head, which computes the same attention. ``context_length``
    defaults to the model's ``max_position_embeddings`` (a smaller one computes the same
    logits over the positions it has, with smaller KV caches); ``kernels`` chooses the
    kernels (default: ModelConfig's).

    >>> model = from_hf("hf/tinyllama", context_length=2048)  # doctest: +SKIP
    >>> save_checkpoint(model, None, 0, "tinyllama.pt")  # doctest: +SKIP

    Raises:
        FileNotFoundError: no ``config.json``, or no safetensors weights (pickled
            ``pytorch_model.bin`` files are not read).
        ValueError: a feature cs336 does not compute exactly (see :func:`check_importable`),
            or the weights do not match the config.
        RuntimeError: safetensors is not installed.
    """
    directory = Path(directory)
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path} not found: not a transformers model directory")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"cannot parse {config_path}: {e}") from None
    missing = [k for k in _REQUIRED if not isinstance(config.get(k), int)]
    if missing:
        raise ValueError(f"{config_path} lacks integer {', '.join(missing)}")
    check_importable(config)
    model_cfg = ModelConfig.preset(
        "cs336-2025",
        vocab_size=config["vocab_size"],
        context_length=context_length or config.get("max_position_embeddings") or 2048,
        d_model=config["hidden_size"],
        num_layers=config["num_hidden_layers"],
        num_heads=config["num_attention_heads"],
        d_ff=config["intermediate_size"],
        rope_theta=rope_theta(config),
        tie_embeddings=bool(config.get("tie_word_embeddings", False)),
        attn_pdrop=float(config.get("attention_dropout") or 0.0),
        norm_eps=float(config.get("rms_norm_eps", LLAMA_DEFAULT_EPS)),
        **({} if kernels is None else {"kernels": kernels}),
    )
    state = from_hf_state_dict(_read_hf_weights(directory), config)
    if model_cfg.tie_embeddings:
        state["lm_head.weight"] = state["token_embeddings.weight"]
    with no_weight_init():  # every weight is loaded next (strictly): draw none
        model = TransformerLM.from_config(model_cfg)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:  # shapes that do not match the config
        raise ValueError(f"the weights in {directory} do not match its config.json: {e}") from None
    return model.eval()


def _read_hf_weights(directory: Path) -> dict[str, torch.Tensor]:
    single, index = directory / "model.safetensors", directory / "model.safetensors.index.json"
    if single.is_file():
        return load_safetensors(single)[0]
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        tensors: dict[str, torch.Tensor] = {}
        for shard in shards:
            tensors.update(load_safetensors(directory / shard)[0])
        return tensors
    names = ("pytorch_model.bin", "pytorch_model.bin.index.json")
    pickled = [n for n in names if (directory / n).exists()]
    hint = (
        f" (it has {pickled[0]}: cs336 reads only safetensors, which load without pickle; "
        "re-save it with save_pretrained(..., safe_serialization=True))"
        if pickled
        else ""
    )
    raise FileNotFoundError(f"no model.safetensors in {directory}{hint}")
