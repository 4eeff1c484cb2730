"""Resource accounting of a :class:`~cs336.nn.model.ModelConfig`: parameters, FLOPs, memory, MFU.

Everything is computed from the config by formula (no model is built), and the tests
check the parameter counts against instantiated models.

>>> cfg = PRESETS["gpt2-small"]
>>> count_parameters(cfg)["total"]
162935040
"""

from __future__ import annotations

from cs336.nn.config import ModelConfig

__all__ = [
    "PRESETS",
    "count_parameters",
    "forward_flops",
    "train_flops_per_token",
    "training_memory",
    "adamw_step_flops",
    "mfu",
    "max_batch_size",
    "peak_flops",
    "PEAK_BF16_FLOPS",
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


def _ffn_matrices(cfg: ModelConfig) -> int:
    return 3 if cfg.ffn == "swiglu" else 2


def _final_norm(cfg: ModelConfig) -> int:
    """Width of ``ln_final``: only a pre-norm model has one."""
    return cfg.d_model if cfg.norm == "pre" else 0


def count_parameters(cfg: ModelConfig) -> dict[str, int]:
    """Trainable parameters by component; ``"total"`` is their sum.

    - ``token_embeddings``: ``vocab_size * d_model``;
    - ``position_embeddings``: ``context_length * d_model`` (0 with RoPE, which has
      no parameters);
    - ``attention``: ``num_layers * 4 * d_model^2`` (q, k, v and output projections);
    - ``ffn``: ``num_layers * 2 * d_model * d_ff`` (3 matrices with SwiGLU);
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
    for the weight of every matmul; handout's ``adamwAccounting`` assumption), so a
    training step over ``B`` sequences costs ``B * context_length`` times this.
    """
    return 3.0 * forward_flops(cfg)["total"] / cfg.context_length


def adamw_step_flops(cfg: ModelConfig) -> int:
    """FLOPs of one AdamW update: 14 per parameter.

    ``m = b1 m + (1 - b1) g`` (3), ``v = b2 v + (1 - b2) g^2`` (4),
    ``p -= alpha_t m / (sqrt(v) + eps)`` (5: sqrt, add, divide, multiply, subtract),
    ``p -= lr wd p`` (2); the scalar ``alpha_t`` is negligible.
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
    # w1, w3, silu, product, w2 (SwiGLU) or w1, gelu, w2
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
      ``H T``, weighted values ``d``, output projection ``d``, FFN ``w1``/GELU
      ``2 d_ff`` (4 with SwiGLU), ``w2`` ``d``; then the final RMSNorm ``d``, the logits
      ``vocab`` and the cross-entropy's softmax ``vocab``. This is the handout's
      ``adamwAccounting`` model (one saved tensor per listed op), not a measurement;
      ``"total"`` is the sum.

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


#: Dense bf16 peak FLOP/s of common accelerators, matched against the device name (first
#: match wins), for MFU. From the vendors' data sheets (SXM parts, without sparsity).
PEAK_BF16_FLOPS: tuple[tuple[str, float], ...] = (
    ("H200", 989e12),
    ("H100", 989e12),
    ("A100", 312e12),
    ("A10G", 125e12),
    ("L4", 121e12),
    ("RTX 4090", 165e12),
    ("RTX 3090", 71e12),
)


def peak_flops(device_name: str) -> float | None:
    """Peak bf16 FLOP/s of the accelerator called ``device_name`` (e.g.
    ``torch.cuda.get_device_name()``) from :data:`PEAK_BF16_FLOPS`, or None if unknown.

    >>> peak_flops("NVIDIA H100 80GB HBM3")
    989000000000000.0
    """
    return next((flops for key, flops in PEAK_BF16_FLOPS if key in device_name), None)


def mfu(tokens_per_second: float, cfg: ModelConfig, peak_flops: float) -> float:
    """Model FLOPs utilization: achieved training FLOP/s over the hardware's peak.

    ``tokens_per_second * train_flops_per_token(cfg) / peak_flops`` (PaLM, appendix B).

    Raises:
        ValueError: if ``peak_flops`` is not positive.
    """
    if not peak_flops > 0:
        raise ValueError(f"peak_flops must be positive, got {peak_flops}")
    return tokens_per_second * train_flops_per_token(cfg) / peak_flops
