"""The LLaMA mapping: which cs336 models ``LlamaForCausalLM`` computes exactly, and their
weights and config under transformers' names (pure functions on state dicts and dicts; the
files are :mod:`cs336.export.hf`'s).

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

Nothing here reads or writes files or imports transformers.
"""

from __future__ import annotations

from typing import Any

import torch

from cs336.nn.model import ModelConfig

__all__ = [
    "LLAMA_DEFAULT_EPS",
    "check_importable",
    "from_hf_state_dict",
    "hf_config",
    "rope_theta",
    "to_hf_state_dict",
    "unsupported_features",
]

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


def unsupported_features(cfg: ModelConfig) -> list[str]:
    """The features of ``cfg`` that ``LlamaForCausalLM`` does not compute, each named
    with its config field (empty for a LLaMA-shaped model). Dropout, ``kernels`` (the
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


def check_exportable(cfg: ModelConfig) -> None:
    problems = unsupported_features(cfg)
    if problems:
        raise ValueError(
            "this model cannot be exported to transformers exactly (LlamaForCausalLM: RoPE, "
            f"SwiGLU, pre-norm RMSNorm, no absolute positions): {'; '.join(problems)}"
        )


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
    check_exportable(cfg)
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
    check_exportable(cfg)
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
        "rms_norm_eps": cfg.norm_eps,
        "rope_theta": float(cfg.rope_theta),
        "rope_parameters": {"rope_type": "default", "rope_theta": float(cfg.rope_theta)},
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


#: transformers' LlamaConfig default, for a config.json that does not give rms_norm_eps
LLAMA_DEFAULT_EPS = 1e-6


def check_importable(config: dict[str, Any]) -> None:
    """Raise ``ValueError`` naming every feature of the transformers ``config.json``
    ``config`` that cs336's model does not compute exactly: another architecture, biases,
    another activation, RoPE scaling or partial rotation, a sliding window, a head_dim
    other than hidden_size / num_attention_heads, a num_key_value_heads that does not
    divide the heads, quantization, two different RoPE thetas, or an RMSNorm eps that is
    not a positive number (any other eps becomes the model's ``norm_eps``)."""
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
    theta = (config.get("rope_parameters") or {}).get("rope_theta")
    if theta is not None and config.get("rope_theta") not in (None, theta):
        problems.append(
            f"rope_theta={config['rope_theta']} and rope_parameters' rope_theta={theta} differ "
            "(transformers 4 reads one, 5 the other)"
        )
    eps = config.get("rms_norm_eps", LLAMA_DEFAULT_EPS)
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0:
        problems.append(f"rms_norm_eps={eps!r} (it must be a positive number)")
    if problems:
        raise ValueError(f"cannot import this LLaMA model exactly: {'; '.join(problems)}")


def rope_theta(config: dict[str, Any]) -> float:
    """RoPE's base of a transformers ``config.json``: ``rope_parameters["rope_theta"]``
    (transformers 5), else ``rope_theta`` (4), else LLaMA's default 10000."""
    rope = config.get("rope_parameters") or {}
    return float(rope.get("rope_theta", config.get("rope_theta", 10000.0)))
