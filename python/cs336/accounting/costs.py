"""Resource accounting of a :class:`~cs336.nn.model.ModelConfig`: parameters, FLOPs, memory, MFU.

Everything is computed from the config by formula (no model is built), and the tests
check the parameter counts against instantiated models. :func:`with_edition` gives a
shape the architecture of the 2024, 2025 or 2026 handout: the 2025 accounting questions
ask about GPT-2 XL's shape (d_ff 6,400) with SwiGLU and RoPE; the 2026 ones about the
same model with d_ff = 8/3 d_model rounded to a multiple of 64 (4,288 for GPT-2 XL).

>>> cfg = PRESETS["gpt2-small"]
>>> count_parameters(cfg)["total"]
162935040
>>> count_parameters(with_edition(PRESETS["gpt2-xl"], "2025"))["total"]
2127057600
>>> count_parameters(with_edition(PRESETS["gpt2-xl"], "2026"))["total"]
1640452800
"""

from __future__ import annotations

import dataclasses

from cs336.nn.config import MODEL_PRESETS, ModelConfig, default_d_ff

__all__ = [
    "EDITIONS",
    "EDITION_MODELS",
    "PRESETS",
    "with_edition",
    "count_parameters",
    "forward_flops",
    "train_flops_per_token",
    "training_memory",
    "adamw_step_flops",
    "mfu",
    "max_batch_size",
    "peak_flops",
    "PEAK_FLOPS",
    "PRECISIONS",
]


def _gpt2(num_layers: int, d_model: int, num_heads: int) -> ModelConfig:
    return ModelConfig(
        vocab_size=50257,
        context_length=1024,
        d_model=d_model,
        num_layers=num_layers,
        num_heads=num_heads,
        d_ff=4 * d_model,
    )


#: The handout's GPT-2 shapes (vocab 50257, context 1024, d_ff = 4 d_model), with our
#: defaults otherwise (untied head, pre-norm RMSNorm, GELU, learned positions).
PRESETS: dict[str, ModelConfig] = {
    "gpt2-small": _gpt2(12, 768, 12),
    "gpt2-medium": _gpt2(24, 1024, 16),
    "gpt2-large": _gpt2(36, 1280, 20),
    "gpt2-xl": _gpt2(48, 1600, 25),
}


#: The handout editions :func:`with_edition` knows, newest last, with the model preset of
#: each: the 2026 handout keeps the 2025 model (only its AdamW order and its accounting
#: questions' ``d_ff`` changed).
EDITION_MODELS: dict[str, str] = {"2024": "cs336-2024", "2025": "cs336-2025", "2026": "cs336-2025"}
EDITIONS: tuple[str, ...] = tuple(EDITION_MODELS)


def with_edition(cfg: ModelConfig, edition: str) -> ModelConfig:
    """``cfg`` with the architecture of the ``edition`` handout, the shape kept.

    - 2024: GELU FFN and learned positions (the ``cs336-2024`` preset), ``d_ff`` kept;
    - 2025: SwiGLU FFN (three matrices) and RoPE (``cs336-2025``), ``d_ff`` kept: the 2025
      accounting questions keep GPT-2 XL's d_ff = 6,400;
    - 2026: the same model with ``d_ff = 8/3 d_model`` rounded to the nearest multiple of
      64 (:func:`~cs336.nn.config.default_d_ff`): GPT-2 XL's 1,600 gives 4,288, as in the
      2026 handout's modernised GPT-2 XL.

    >>> with_edition(PRESETS["gpt2-xl"], "2026").d_ff
    4288

    Raises:
        ValueError: for an edition other than those in :data:`EDITIONS`.
    """
    if edition not in EDITION_MODELS:
        raise ValueError(f"edition must be one of {', '.join(EDITIONS)}, got {edition!r}")
    out = dataclasses.replace(cfg, **MODEL_PRESETS[EDITION_MODELS[edition]])
    if edition == "2026":
        out = dataclasses.replace(out, d_ff=default_d_ff(out.d_model, out.ffn))
    return out


def _ffn_matrices(cfg: ModelConfig) -> int:
    return 3 if cfg.ffn == "swiglu" else 2


def _final_norm(cfg: ModelConfig) -> int:
    """Width of ``ln_final``: only a pre-norm model has one."""
    return cfg.d_model if cfg.norm == "pre" else 0


def count_parameters(cfg: ModelConfig) -> dict[str, int]:
    """Trainable parameters by component; ``"total"`` is their sum.

    - ``token_embeddings``: ``vocab_size * d_model``;
    - ``position_embeddings``: ``context_length * d_model`` (0 with RoPE, which has
      no parameters, and with no positions at all);
    - ``attention``: ``num_layers * 4 * d_model^2`` (q, k, v and output projections);
    - ``ffn``: ``num_layers * 2 * d_model * d_ff`` (GELU or ungated SiLU: w1, w2; three
      matrices w1, w2, w3 with SwiGLU);
    - ``norms``: ``(2 * num_layers + 1) * d_model`` RMSNorm gains: ``ln1``, ``ln2`` per
      layer and ``ln_final`` (``2 * num_layers * d_model`` with post-norm, which has no
      ``ln_final``; 0 with ``norm="none"``);
    - ``lm_head``: ``vocab_size * d_model`` (0 when tied to the token embeddings).
    """
    d, n_layers = cfg.d_model, cfg.num_layers
    counts = {
        "token_embeddings": cfg.vocab_size * d,
        "position_embeddings": cfg.context_length * d if cfg.position == "learned" else 0,
        "attention": n_layers * 4 * d * d,
        "ffn": n_layers * _ffn_matrices(cfg) * d * cfg.d_ff,
        "norms": (2 * n_layers * d if cfg.norm != "none" else 0) + _final_norm(cfg),
        "lm_head": 0 if cfg.tie_embeddings else cfg.vocab_size * d,
    }
    counts["total"] = sum(counts.values())
    return counts


def forward_flops(cfg: ModelConfig, seq_len: int | None = None) -> dict[str, int]:
    """Matmul FLOPs of one forward pass over one sequence of ``seq_len`` tokens.

    As in the CS336 handout's ``transformer_accounting`` problem, only matrix
    multiplies are counted: multiplying an ``m x n`` by an ``n x p`` matrix takes
    ``m * p`` dot products of length ``n``, i.e. ``2 m n p`` FLOPs (one multiply and
    one add each). Norms, softmax, activations and residual adds are lower order.
    With ``T = seq_len`` (default ``context_length``), ``d = d_model``,
    ``L = num_layers``, ``H = num_heads``, ``d_k = d / H``:

    - ``qkv``: three ``(T x d) @ (d x d)`` projections: ``L * 3 * 2 T d d``;
    - ``attention_scores``: ``Q K^T``, per head ``(T x d_k) @ (d_k x T)``:
      ``L * H * 2 T d_k T = L * 2 T^2 d``;
    - ``attention_values``: ``softmax(...) V``, per head ``(T x T) @ (T x d_k)``:
      ``L * 2 T^2 d``;
    - ``output_proj``: ``(T x d) @ (d x d)``: ``L * 2 T d d``;
    - ``ffn``: ``(T x d) @ (d x d_ff)`` and ``(T x d_ff) @ (d_ff x d)``:
      ``L * 2 * 2 T d d_ff`` (three matrices, ``L * 3 * 2 T d d_ff``, with SwiGLU);
    - ``lm_head``: ``(T x d) @ (d x vocab)``: ``2 T d vocab``.

    The causal mask is not exploited (a full ``T x T`` score matrix is computed),
    as in the reference implementation. ``"total"`` is the sum.

    Raises:
        ValueError: if ``seq_len`` is not in ``[1, context_length]``.
    """
    t = cfg.context_length if seq_len is None else seq_len
    if not 1 <= t <= cfg.context_length:
        raise ValueError(f"seq_len ({t}) must be in [1, context_length ({cfg.context_length})]")
    d, n_layers = cfg.d_model, cfg.num_layers
    flops = {
        "qkv": n_layers * 3 * 2 * t * d * d,
        "attention_scores": n_layers * 2 * t * t * d,
        "attention_values": n_layers * 2 * t * t * d,
        "output_proj": n_layers * 2 * t * d * d,
        "ffn": n_layers * _ffn_matrices(cfg) * 2 * t * d * cfg.d_ff,
        "lm_head": 2 * t * d * cfg.vocab_size,
    }
    flops["total"] = sum(flops.values())
    return flops


def train_flops_per_token(cfg: ModelConfig) -> float:
    """Training FLOPs per token at full context: 3x the forward pass's matmul FLOPs.

    The backward pass costs about twice the forward (a gradient for the input and one
    for the weight of every matmul; the assumption of the handouts' ``adamwAccounting``,
    ``adamw_accounting`` in 2026), so a
    training step over ``B`` sequences costs ``B * context_length`` times this.
    """
    return 3.0 * forward_flops(cfg)["total"] / cfg.context_length


def adamw_step_flops(cfg: ModelConfig) -> int:
    """FLOPs of one AdamW update: 14 per parameter.

    ``m = b1 m + (1 - b1) g`` (3), ``v = b2 v + (1 - b2) g^2`` (4),
    ``p -= alpha_t m / (sqrt(v) + eps)`` (5: sqrt, add, divide, multiply, subtract),
    ``p -= lr wd p`` (2); the scalar ``alpha_t`` is negligible. The same in either order
    of the decay (after the Adam step in 2024/2025, before it in 2026).
    """
    return 14 * count_parameters(cfg)["total"]


def _activation_elements_per_token(cfg: ModelConfig, seq_len: int) -> int:
    """Saved activations per token, one tensor per operation the handout lists."""
    d, h = cfg.d_model, cfg.num_heads
    norms = 2 * d if cfg.norm != "none" else 0  # ln1, ln2 outputs
    attention = (
        3 * d  # q, k, v projections
        + h * seq_len  # Q K^T scores
        + h * seq_len  # softmax probabilities
        + d  # weighted sum of values
        + d  # output projection
    )
    # w1, w3, silu, product, w2 (SwiGLU) or w1, gelu/silu, w2
    ffn = (4 if cfg.ffn == "swiglu" else 2) * cfg.d_ff + d
    final = _final_norm(cfg) + 2 * cfg.vocab_size  # ln_final; logits, softmax
    return cfg.num_layers * (norms + attention + ffn) + final


def training_memory(
    cfg: ModelConfig,
    batch_size: int,
    *,
    param_bytes: int = 4,
    grad_bytes: int = 4,
    state_bytes: int = 4,
    activation_bytes: int = 4,
) -> dict[str, int]:
    """Bytes needed for one AdamW training step at full context, by part.

    - ``params``: ``P * param_bytes``; ``grads``: ``P * grad_bytes``;
    - ``adamw_state``: ``2 * P * state_bytes`` (first and second moments);
    - ``activations``: ``batch_size * T * activation_bytes`` times, per token, for each
      of the ``L`` layers: RMSNorms ``2d``, QKV ``3d``, ``Q K^T`` ``H T``, softmax
      ``H T``, weighted values ``d``, output projection ``d``, FFN ``w1`` and its
      activation ``2 d_ff`` (SwiGLU: ``w1``, ``w3``, SiLU and the product, ``4 d_ff``),
      ``w2`` ``d``; then the final RMSNorm ``d``, the logits ``vocab`` and the
      cross-entropy's softmax ``vocab``. This is the handout's ``adamwAccounting``
      model (one saved tensor per listed op), not a measurement; ``"total"`` is the sum.
      The 2025 handout lists only "W1, SiLU, W2" for the FFN even for its SwiGLU model;
      a SwiGLU config here counts the five tensors SwiGLU saves (its ``a`` is larger by
      ``2 d_ff`` numbers per token and layer), which is the 2026 handout's question
      (``adamw_accounting``: d_ff = 8/3 d_model with SwiGLU activations).

    Defaults are float32 everywhere, as in the handout.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    p = count_parameters(cfg)["total"]
    t = cfg.context_length
    memory = {
        "params": p * param_bytes,
        "grads": p * grad_bytes,
        "adamw_state": 2 * p * state_bytes,
        "activations": batch_size * t * _activation_elements_per_token(cfg, t) * activation_bytes,
    }
    memory["total"] = sum(memory.values())
    return memory


def max_batch_size(cfg: ModelConfig, memory_bytes: float, **bytes_kw: int) -> int:
    """Largest batch size whose :func:`training_memory` total fits in ``memory_bytes``.

    Memory is linear in the batch size, ``a * batch_size + b``; returns
    ``floor((memory_bytes - b) / a)`` (0 if even the fixed part does not fit).
    """
    one = training_memory(cfg, 1, **bytes_kw)
    a = one["activations"]
    b = one["total"] - a
    return max(0, int((memory_bytes - b) // a))


#: Dense peak FLOP/s of common accelerators by precision, matched by key against the
#: device name (first match wins, so "GB200" comes before "B200" and "L40S" before "L4"),
#: for MFU. From the vendors' data sheets, SXM parts, without sparsity (the sheets' starred
#: figures with 2:4 sparsity are twice these):
#:
#: - GB200 (NVL72 sheet, 72 GPUs): 360 PFLOP/s FP16/BF16, 180 PFLOP/s TF32 sparse;
#: - B200 (HGX B200 sheet, 8 GPUs): 36 PFLOP/s FP16/BF16, 18 PFLOP/s TF32 sparse;
#: - H100 and H200 SXM: 1,979 TFLOP/s BF16, 989 TFLOP/s TF32 sparse (the 2026 handout
#:   rounds TF32 to 495 dense);
#: - A100: 312 BF16, 156 TF32; A10 (A10G): 125, 62.5; L40S: 362, 183; L4: 121, 60;
#:   RTX 4090: 165 (FP32 accumulate), 82.6; RTX 3090: 71, 35.6.
PEAK_FLOPS: dict[str, dict[str, float]] = {
    "GB200": {"bf16": 2.5e15, "tf32": 1.25e15},
    "B200": {"bf16": 2.25e15, "tf32": 1.125e15},
    "H200": {"bf16": 989e12, "tf32": 495e12},
    "H100": {"bf16": 989e12, "tf32": 495e12},
    "A100": {"bf16": 312e12, "tf32": 156e12},
    "A10G": {"bf16": 125e12, "tf32": 62.5e12},
    "L40S": {"bf16": 362e12, "tf32": 183e12},
    "L4": {"bf16": 121e12, "tf32": 60e12},
    "RTX 4090": {"bf16": 165e12, "tf32": 82.6e12},
    "RTX 3090": {"bf16": 71e12, "tf32": 35.6e12},
}

#: The precisions of :data:`PEAK_FLOPS`: bf16 tensor cores, and float32 matmuls on TF32 ones.
PRECISIONS: tuple[str, ...] = ("bf16", "tf32")


def peak_flops(device_name: str, precision: str = "bf16") -> float | None:
    """Dense peak FLOP/s of the accelerator called ``device_name`` (e.g.
    ``torch.cuda.get_device_name()``) at ``precision``, from :data:`PEAK_FLOPS`, or None
    if unknown. ``"bf16"``: bf16 tensor cores (bf16 autocast); ``"tf32"``: float32
    matmuls on TF32 tensor cores (the 2026 handout's H100 at 495 TFLOP/s).

    >>> peak_flops("NVIDIA H100 80GB HBM3")
    989000000000000.0
    >>> peak_flops("NVIDIA B200", "tf32")
    1125000000000000.0

    Raises:
        ValueError: for a precision other than ``"bf16"`` and ``"tf32"``.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return next((peaks[precision] for key, peaks in PEAK_FLOPS.items() if key in device_name), None)


def mfu(tokens_per_second: float, cfg: ModelConfig, peak_flops: float) -> float:
    """Model FLOPs utilization: achieved training FLOP/s over the hardware's peak.

    ``tokens_per_second * train_flops_per_token(cfg) / peak_flops`` (PaLM, appendix B).

    Raises:
        ValueError: if ``peak_flops`` is not positive.
    """
    if not peak_flops > 0:
        raise ValueError(f"peak_flops must be positive, got {peak_flops}")
    return tokens_per_second * train_flops_per_token(cfg) / peak_flops
