"""Hugging Face ``transformers`` export and import of LLaMA-shaped models.

A cs336 model with RoPE, SwiGLU, pre-norm RMSNorm, no absolute positions (the
``cs336-2025`` preset, tied head or not) computes exactly what ``LlamaForCausalLM``
computes, once the weights are renamed and the query/key rows are permuted:

=================================  ==============================================
cs336 (state-dict names, .weight)  transformers ``LlamaForCausalLM``
=================================  ==============================================
``token_embeddings``               ``model.embed_tokens``
``layers.{i}.ln1``                 ``model.layers.{i}.input_layernorm``
``layers.{i}.attn.q_proj, k_proj`` ``model.layers.{i}.self_attn.q_proj, k_proj``
                                   (rows permuted, see below)
``layers.{i}.attn.v_proj``         ``model.layers.{i}.self_attn.v_proj``
``layers.{i}.attn.output_proj``    ``model.layers.{i}.self_attn.o_proj``
``layers.{i}.ln2``                 ``model.layers.{i}.post_attention_layernorm``
``layers.{i}.ffn.w1, w3, w2``      ``model.layers.{i}.mlp.gate_proj, up_proj, down_proj``
``ln_final``                       ``model.norm``
``lm_head``                        ``lm_head`` (absent when tied)
=================================  ==============================================

The permutation: cs336's RoPE (the 2025 handout's, RoFormer's) rotates the adjacent pairs
``(x[2k], x[2k+1])`` of each head by ``theta^(-2k/d)``; transformers' LLaMA rotates the
halves ``(x[k], x[k + d/2])`` (``rotate_half``) by the same angles. Listing each head's
rows as ``0, 2, 4, ..., 1, 3, 5, ...`` turns one into the other; queries and keys move
alike, so their dot products, the attention and the logits are unchanged.

Only ``safetensors`` is needed to export or import (``pip install 'cs336[hf]'`` also
installs transformers, to run the result); both are imported when called, never by
``import cs336``. Exported directories hold ``config.json``, ``model.safetensors``,
``generation_config.json`` and, with a tokenizer, ``tokenizer.json`` and
``tokenizer_config.json``: ``AutoModelForCausalLM.from_pretrained`` and
``AutoTokenizer.from_pretrained`` load them with no custom code.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from cs336.nn.layers import RMSNorm
from cs336.nn.model import ModelConfig, TransformerLM
from cs336.training.checkpoint import atomic_save_safetensors, load_safetensors, unwrap_model

if TYPE_CHECKING:
    from cs336.tokenizer import Tokenizer

__all__ = ["from_hf", "from_hf_state_dict", "hf_config", "to_hf", "to_hf_state_dict"]

EOT = "<|endoftext|>"
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

# cs336 name (after "layers.{i}.") -> LLaMA name (after "model.layers.{i}.")
_LAYER_NAMES = {
    "ln1.weight": "input_layernorm.weight",
    "attn.q_proj.weight": "self_attn.q_proj.weight",
    "attn.k_proj.weight": "self_attn.k_proj.weight",
    "attn.v_proj.weight": "self_attn.v_proj.weight",
    "attn.output_proj.weight": "self_attn.o_proj.weight",
    "ln2.weight": "post_attention_layernorm.weight",
    "ffn.w1.weight": "mlp.gate_proj.weight",
    "ffn.w3.weight": "mlp.up_proj.weight",
    "ffn.w2.weight": "mlp.down_proj.weight",
}
_TOP_NAMES = {
    "token_embeddings.weight": "model.embed_tokens.weight",
    "ln_final.weight": "model.norm.weight",
    "lm_head.weight": "lm_head.weight",
}
_ROPE_ROWS = ("attn.q_proj.weight", "attn.k_proj.weight")
_REQUIRED = (
    "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
)  # fmt: skip


# ---------------------------------------------------------------------------------------------
# What maps to LLaMA


def unsupported_features(cfg: ModelConfig) -> list[str]:
    """The features of ``cfg`` that ``LlamaForCausalLM`` does not compute, each named
    with its config field (empty for a LLaMA-shaped model). Dropout, ``attention`` (the
    kernel) and ``init`` do not change what a trained model computes, so they are not
    listed; dropout is carried as ``attention_dropout`` (residual dropout has no LLaMA
    field and only acts in training).

    >>> unsupported_features(ModelConfig(100, 16, 32, 2, 4, 64))
    ["position='learned' (learned absolute positions; LLaMA uses RoPE)", "ffn='gelu' (a GELU \
feed-forward; LLaMA uses SwiGLU)"]
    """
    out = []
    if cfg.position != "rope":
        what = "learned absolute positions" if cfg.position == "learned" else "no positions (NoPE)"
        out.append(f"position={cfg.position!r} ({what}; LLaMA uses RoPE)")
    if cfg.ffn != "swiglu":
        what = "a GELU feed-forward" if cfg.ffn == "gelu" else "an ungated SiLU feed-forward"
        out.append(f"ffn={cfg.ffn!r} ({what}; LLaMA uses SwiGLU)")
    if cfg.norm != "pre":
        what = "post-norm" if cfg.norm == "post" else "no RMSNorm"
        out.append(f"norm={cfg.norm!r} ({what}; LLaMA is pre-norm)")
    if cfg.parallel:
        out.append("parallel=True (parallel attention and feed-forward; LLaMA is sequential)")
    return out


def _check_exportable(cfg: ModelConfig) -> None:
    problems = unsupported_features(cfg)
    if problems:
        raise ValueError(
            "this model cannot be exported to transformers exactly (LlamaForCausalLM: RoPE, "
            f"SwiGLU, pre-norm RMSNorm, no absolute positions): {'; '.join(problems)}"
        )


def norm_eps(model: torch.nn.Module) -> float:
    """The ``eps`` of every RMSNorm in ``model`` (they must agree).

    Raises:
        ValueError: the model has no RMSNorm, or two with different eps.
    """
    values = {m.eps for m in unwrap_model(model).modules() if isinstance(m, RMSNorm)}
    if len(values) != 1:
        raise ValueError(f"expected one RMSNorm eps in the model, found {sorted(values)}")
    return float(values.pop())


def _permute_rope_rows(w: torch.Tensor, num_heads: int) -> torch.Tensor:
    """Rows of a q/k projection from cs336's adjacent-pair RoPE layout to LLaMA's halves:
    in each head, rows ``0, 2, 4, ...`` then ``1, 3, 5, ...``."""
    out_features, d_in = w.shape
    d_k = out_features // num_heads
    return w.reshape(num_heads, d_k // 2, 2, d_in).transpose(1, 2).reshape(out_features, d_in)


def _unpermute_rope_rows(w: torch.Tensor, num_heads: int) -> torch.Tensor:
    """The inverse of :func:`_permute_rope_rows`."""
    out_features, d_in = w.shape
    d_k = out_features // num_heads
    return w.reshape(num_heads, 2, d_k // 2, d_in).transpose(1, 2).reshape(out_features, d_in)


# ---------------------------------------------------------------------------------------------
# Export


def to_hf_state_dict(
    state_dict: dict[str, torch.Tensor], cfg: ModelConfig
) -> dict[str, torch.Tensor]:
    """A cs336 state dict under LLaMA's names, q/k rows permuted; ``lm_head.weight`` is
    left out when ``cfg.tie_embeddings`` (transformers ties it to the embeddings).

    Raises:
        ValueError: ``cfg`` is not LLaMA-shaped, or ``state_dict`` lacks or has extra keys.
    """
    _check_exportable(cfg)
    out: dict[str, torch.Tensor] = {}
    for name, tensor in state_dict.items():
        if name == "lm_head.weight" and cfg.tie_embeddings:
            continue
        if name in _TOP_NAMES:
            out[_TOP_NAMES[name]] = tensor
            continue
        prefix, _, rest = name.partition(".")
        index, _, rest = rest.partition(".")
        if prefix != "layers" or rest not in _LAYER_NAMES:
            raise ValueError(f"unexpected parameter {name!r} in a LLaMA-shaped model")
        if rest in _ROPE_ROWS:
            tensor = _permute_rope_rows(tensor, cfg.num_heads)
        out[f"model.layers.{index}.{_LAYER_NAMES[rest]}"] = tensor
    expected = 2 + (not cfg.tie_embeddings) + len(_LAYER_NAMES) * cfg.num_layers
    if len(out) != expected:
        raise ValueError(f"expected {expected} parameters, the state dict gives {len(out)}")
    return out


def hf_config(
    cfg: ModelConfig,
    *,
    rms_norm_eps: float,
    bos_token_id: int | None = None,
    eos_token_id: int | None = None,
    dtype: str = "float32",
) -> dict[str, Any]:
    """The ``config.json`` of ``LlamaForCausalLM`` for ``cfg``: ``vocab_size`` is the
    model's (its embedding rows, which may exceed the tokenizer's), ``max_position_embeddings``
    its ``context_length``. RoPE's theta is written both as ``rope_parameters`` (transformers
    5) and as ``rope_theta`` (transformers 4, vLLM, llama.cpp's converter).

    Raises:
        ValueError: ``cfg`` is not LLaMA-shaped.
    """
    _check_exportable(cfg)
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.d_model,
        "intermediate_size": cfg.d_ff,
        "num_hidden_layers": cfg.num_layers,
        "num_attention_heads": cfg.num_heads,
        "num_key_value_heads": cfg.num_heads,
        "head_dim": cfg.d_k,
        "hidden_act": "silu",
        "max_position_embeddings": cfg.context_length,
        "rms_norm_eps": rms_norm_eps,
        "rope_theta": float(cfg.rope_theta),
        "rope_parameters": {"rope_type": "default", "rope_theta": float(cfg.rope_theta)},
        "rope_scaling": None,
        "attention_bias": False,
        "attention_dropout": float(cfg.attn_pdrop),
        "mlp_bias": False,
        "tie_word_embeddings": cfg.tie_embeddings,
        "bos_token_id": bos_token_id,
        "eos_token_id": eos_token_id,
        "pad_token_id": None,
        "use_cache": True,
        "dtype": dtype,
        "torch_dtype": dtype,
    }


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
    failure leaves nothing behind.

    >>> to_hf("runs/tinystories/checkpoint.pt", "hf/tinystories",
    ...       tokenizer="data/tinystories/tokenizer")  # doctest: +SKIP
    >>> from transformers import AutoModelForCausalLM, AutoTokenizer  # doctest: +SKIP
    >>> lm = AutoModelForCausalLM.from_pretrained("hf/tinystories")  # doctest: +SKIP

    Raises:
        ValueError: the model is not LLaMA-shaped (the message names each feature: learned
            positions, GELU/SiLU feed-forward, post-norm, no norm, parallel layers, NoPE), the
            tokenizer has ids the model does not know, or ``dtype`` is unknown.
        FileExistsError: ``out_dir`` exists and is not empty, without ``overwrite``.
        FileNotFoundError: the checkpoint or the tokenizer directory is missing.
        RuntimeError: safetensors is not installed.
    """
    from cs336.generation import load_model
    from cs336.tokenizer import Tokenizer

    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(_DTYPES)}, got {dtype!r}")
    if not isinstance(model, torch.nn.Module):
        model = load_model(model)
    model = unwrap_model(model)
    cfg: ModelConfig = model.config
    _check_exportable(cfg)
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
    config = hf_config(
        cfg, rms_norm_eps=norm_eps(model), bos_token_id=eot, eos_token_id=eot, dtype=dtype
    )
    state = {k: v.detach().to("cpu", _DTYPES[dtype]) for k, v in model.state_dict().items()}
    tensors = to_hf_state_dict(state, cfg)
    generation = {"bos_token_id": eot, "eos_token_id": eot}
    out = Path(out_dir)
    _check_target(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        _write_json(tmp / "config.json", config)
        _write_json(tmp / "generation_config.json", generation)
        atomic_save_safetensors(tensors, tmp / "model.safetensors", {"format": "pt"})
        if tokenizer is not None:
            tokenizer.save_hf_tokenizer_json(tmp / "tokenizer.json")
            _write_json(tmp / "tokenizer_config.json", _tokenizer_config(tokenizer, cfg))
        os.chmod(tmp, 0o777 & ~_umask())
        _swap_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
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


def _check_target(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} exists and is not empty (pass overwrite to replace it)")


def _swap_into_place(tmp: Path, out: Path) -> None:
    """Rename the finished ``tmp`` to ``out``; an existing ``out`` is moved aside first and
    removed after."""
    if not out.exists():
        os.replace(tmp, out)
        return
    old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".old"))
    os.replace(out, old / "previous")
    try:
        os.replace(tmp, out)
    except BaseException:
        os.replace(old / "previous", out)
        raise
    finally:
        shutil.rmtree(old, ignore_errors=True)


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ---------------------------------------------------------------------------------------------
# Import


def from_hf_state_dict(
    tensors: dict[str, torch.Tensor], config: dict[str, Any]
) -> dict[str, torch.Tensor]:
    """A ``LlamaForCausalLM`` state dict (``config``: its ``config.json``, checked by
    :func:`check_importable`) under cs336's names, q/k rows permuted back, grouped-query
    keys and values repeated for every query head (exactly what transformers' ``repeat_kv``
    does), as float32. ``lm_head.weight`` is left out when the embeddings are tied.

    Raises:
        ValueError: a parameter is missing or unexpected (named).
    """
    heads = config["num_attention_heads"]
    repeat = heads // (config.get("num_key_value_heads") or heads)
    tied = bool(config.get("tie_word_embeddings", False))
    top = {hf: ours for ours, hf in _TOP_NAMES.items()}
    layer = {hf: ours for ours, hf in _LAYER_NAMES.items()}
    out: dict[str, torch.Tensor] = {}
    for name, tensor in tensors.items():
        if name.endswith("rotary_emb.inv_freq"):  # a buffer older transformers saved
            continue
        if name in top:
            if name == "lm_head.weight" and tied:
                continue
            out[top[name]] = tensor.float()
            continue
        parts = name.split(".", 3)
        if len(parts) != 4 or parts[:2] != ["model", "layers"] or parts[3] not in layer:
            raise ValueError(f"unexpected parameter {name!r} in a LLaMA checkpoint")
        ours = layer[parts[3]]
        tensor = tensor.float()
        if repeat > 1 and ours in ("attn.k_proj.weight", "attn.v_proj.weight"):
            kv_heads, d_in = heads // repeat, tensor.shape[1]
            tensor = tensor.reshape(kv_heads, -1, d_in).repeat_interleave(repeat, dim=0)
            tensor = tensor.reshape(-1, d_in)
        if ours in _ROPE_ROWS:
            tensor = _unpermute_rope_rows(tensor, heads)
        out[f"layers.{parts[2]}.{ours}"] = tensor
    layers = config["num_hidden_layers"]
    expected = {f"layers.{i}.{n}" for i in range(layers) for n in _LAYER_NAMES}
    expected |= {"token_embeddings.weight", "ln_final.weight"} | (
        set() if tied else {"lm_head.weight"}
    )
    missing = sorted(expected - set(out))
    if missing:
        back = {**{v: k for k, v in top.items()}, **{v: k for k, v in layer.items()}}
        names = [back.get(n, back.get(n.split(".", 2)[-1], n)) for n in missing[:5]]
        raise ValueError(f"the LLaMA checkpoint lacks {len(missing)} parameters, e.g. {names}")
    extra = sorted(set(out) - expected)
    if extra:
        raise ValueError(f"the LLaMA checkpoint has parameters for more layers: {extra[:5]}")
    return out


def check_importable(config: dict[str, Any], *, rms_norm_eps: float) -> None:
    """Raise ``ValueError`` naming every feature of the transformers ``config.json``
    ``config`` that cs336's model does not compute exactly: another architecture, biases,
    another activation, RoPE scaling or partial rotation, a sliding window, a head_dim
    other than hidden_size / num_attention_heads, a num_key_value_heads that does not
    divide the heads, quantization, or an RMSNorm eps other than ``rms_norm_eps`` (cs336's)."""
    kind = config.get("model_type")
    if kind != "llama":
        raise ValueError(
            f"model_type {kind!r} is not supported: cs336 imports LLaMA models "
            "(model_type 'llama', LlamaForCausalLM)"
        )
    problems = []
    archs = config.get("architectures") or ["LlamaForCausalLM"]
    if "LlamaForCausalLM" not in archs:
        problems.append(f"architectures {archs} (only LlamaForCausalLM)")
    for key in ("attention_bias", "mlp_bias"):
        if config.get(key):
            problems.append(f"{key}=true (cs336's projections have no biases)")
    if config.get("hidden_act", "silu") not in ("silu", "swish"):
        problems.append(f"hidden_act={config['hidden_act']!r} (cs336's SwiGLU uses silu)")
    heads, width = config["num_attention_heads"], config["hidden_size"]
    head_dim = config.get("head_dim") or width // heads
    if width % heads or head_dim != width // heads:
        problems.append(
            f"head_dim={head_dim} with hidden_size={width} and {heads} heads (cs336 needs "
            "head_dim = hidden_size / num_attention_heads)"
        )
    kv = config.get("num_key_value_heads") or heads
    if heads % kv:
        problems.append(f"num_key_value_heads={kv} does not divide num_attention_heads={heads}")
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type != "default":
        problems.append(f"RoPE scaling rope_type={rope_type!r} (cs336's RoPE is unscaled)")
    if config.get("rope_scaling") and config.get("rope_parameters"):
        scaling = config["rope_scaling"]
        if scaling.get("rope_type", scaling.get("type", "default")) != "default":
            problems.append(f"rope_scaling={scaling} (cs336's RoPE is unscaled)")
    partial = rope.get("partial_rotary_factor", config.get("partial_rotary_factor", 1.0))
    if partial not in (None, 1, 1.0):
        problems.append(f"partial_rotary_factor={partial} (cs336 rotates whole heads)")
    if config.get("sliding_window") or config.get("use_sliding_window"):
        problems.append(f"sliding_window={config.get('sliding_window')} (cs336 attends to all)")
    if config.get("quantization_config"):
        problems.append("quantization_config (a quantized checkpoint)")
    eps = config.get("rms_norm_eps", 1e-6)
    if eps != rms_norm_eps:
        problems.append(f"rms_norm_eps={eps} (cs336's RMSNorm uses eps={rms_norm_eps})")
    if problems:
        raise ValueError(f"cannot import this LLaMA model exactly: {'; '.join(problems)}")


def _rope_theta(config: dict[str, Any]) -> float:
    rope = config.get("rope_parameters") or {}
    return float(rope.get("rope_theta", config.get("rope_theta", 10000.0)))


def from_hf(
    directory: str | os.PathLike[str],
    *,
    context_length: int | None = None,
    attention: str = "reference",
) -> TransformerLM:
    """The cs336 :class:`~cs336.nn.model.TransformerLM` (the ``cs336-2025`` preset's
    architecture, float32, eval mode) of the transformers LLaMA model in ``directory``
    (``config.json`` and ``model.safetensors``, or its shards with
    ``model.safetensors.index.json``). Grouped-query attention is expanded to one key and
    value head per query head, which computes the same attention. ``context_length``
    defaults to the model's ``max_position_embeddings`` (a smaller one computes the same
    logits over the positions it has, with smaller KV caches); ``attention`` is the kernel.

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
    check_importable(config, rms_norm_eps=RMSNorm(1).eps)  # the eps every cs336 RMSNorm has
    model_cfg = ModelConfig.preset(
        "cs336-2025",
        vocab_size=config["vocab_size"],
        context_length=context_length or config.get("max_position_embeddings") or 2048,
        d_model=config["hidden_size"],
        num_layers=config["num_hidden_layers"],
        num_heads=config["num_attention_heads"],
        d_ff=config["intermediate_size"],
        rope_theta=_rope_theta(config),
        tie_embeddings=bool(config.get("tie_word_embeddings", False)),
        attn_pdrop=float(config.get("attention_dropout") or 0.0),
        attention=attention,
    )
    state = from_hf_state_dict(_read_hf_weights(directory), config)
    if model_cfg.tie_embeddings:
        state["lm_head.weight"] = state["token_embeddings.weight"]
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
