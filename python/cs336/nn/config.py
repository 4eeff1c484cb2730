"""The model's hyperparameters (:class:`ModelConfig`), the one table of its variants and
the named models (presets) of the two editions of the handout.

:data:`VARIANTS` lists every architectural choice and its allowed values; the config,
the layers and the ``cs336 accounting`` flags all read it, and :func:`check_variant` is
the one check with the one message. :data:`MODEL_PRESETS` names the variant choices of
each edition's model (``"cs336-2024"``, ``"cs336-2025"``). Nothing here imports torch.

>>> ModelConfig(vocab_size=100, context_length=16, d_model=32, num_layers=2,
...             num_heads=4, d_ff=64).d_k
8
>>> cfg = ModelConfig.preset("cs336-2025", vocab_size=10000, context_length=256,
...                          d_model=512, num_layers=4, num_heads=16)
>>> cfg.d_ff, cfg.ffn, cfg.position, cfg.init
(1344, 'swiglu', 'rope', 'xavier')
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "WEIGHT_NEUTRAL_FIELDS",
    "MODEL_PRESETS",
    "VARIANTS",
    "ModelConfig",
    "check_dropout",
    "check_variant",
    "default_d_ff",
    "fused_kernels",
    "expand_preset",
]

#: Every architectural choice with its allowed values; the first is the default (the
#: 2024 handout's model).
#:
#: - ``norm``: RMSNorm before each sublayer (pre), after each residual add (post), or none;
#: - ``ffn``: ``w2(gelu(w1 x))`` (2024), ``w2(silu(w1 x) * w3 x)`` (SwiGLU, 2025) or the
#:   ungated ``w2(silu(w1 x))`` (the 2025 handout's SwiGLU-vs-SiLU ablation);
#: - ``position``: learned absolute embeddings (2024), RoPE on queries and keys (2025), or
#:   none at all (NoPE: the causal mask is the only source of order);
#: - ``init``: ``gpt2`` (std 0.02, residual projections scaled by 1/sqrt(2L)) or
#:   ``xavier`` (the 2025 handout's: Linear N(0, 2/(in+out)), Embedding N(0, 1), each
#:   truncated at 3 std); see :meth:`~cs336.nn.model.TransformerLM.init_weights`;
#: - ``kernels``: the code the model runs (``attention`` in configs and checkpoints written
#:   before this name, still read). ``reference`` is the handout's own code everywhere (the
#:   reference softmax attention, RMSNorm, GELU/SiLU and cross-entropy of
#:   :mod:`cs336.nn.functional`, separate q/k/v matmuls); ``fused`` is PyTorch's fused
#:   kernels (``F.scaled_dot_product_attention``, ``F.rms_norm``, ``F.gelu``/``F.silu``,
#:   ``F.embedding``), one q/k/v matmul and the chunked cross-entropy of
#:   :mod:`cs336.nn.fused`, each tested equal to its reference; ``auto`` (the default) is
#:   ``fused`` except for KV-cache decoding steps, which use the reference attention.
VARIANTS: dict[str, tuple[str, ...]] = {
    "norm": ("pre", "post", "none"),
    "ffn": ("gelu", "swiglu", "silu"),
    "position": ("learned", "rope", "none"),
    "init": ("gpt2", "xavier"),
    "kernels": ("auto", "reference", "fused"),
}

#: The model of each edition of the handout, as the ModelConfig fields it fixes (the
#: shape, ``d_ff`` and ``rope_theta`` are the caller's). ``"cs336-2024"`` is the
#: ModelConfig defaults; ``"cs336-2025"`` is the 2025 handout's LLaMA-shaped model: RoPE,
#: SwiGLU, pre-norm, no absolute positions, no dropout, untied head, its own init.
MODEL_PRESETS: dict[str, dict[str, Any]] = {
    "cs336-2024": {
        "norm": "pre",
        "parallel": False,
        "tie_embeddings": False,
        "ffn": "gelu",
        "position": "learned",
        "init": "gpt2",
    },
    "cs336-2025": {
        "attn_pdrop": 0.0,
        "residual_pdrop": 0.0,
        "norm": "pre",
        "parallel": False,
        "tie_embeddings": False,
        "ffn": "swiglu",
        "position": "rope",
        "init": "xavier",
    },
}


#: Fields that do not change what a model's weights compute: the kernels (``kernels``)
#: and how fresh weights are drawn (``init``). A checkpoint's weights continue under any
#: value of these, so a resumed run (or ``init_from``) may change them.
WEIGHT_NEUTRAL_FIELDS: tuple[str, ...] = ("kernels", "init")


def check_variant(name: str, value: object) -> None:
    """Raise ``ValueError`` unless ``value`` is one of ``VARIANTS[name]``.

    >>> check_variant("norm", "side")
    Traceback (most recent call last):
    ...
    ValueError: norm must be one of 'pre', 'post', 'none', got 'side'
    """
    choices = VARIANTS[name]
    if value not in choices:
        allowed = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")


def fused_kernels(kernels: str) -> bool:
    """Whether ``VARIANTS["kernels"]`` value ``kernels`` runs the fused kernels outside
    attention (``auto`` and ``fused`` do)."""
    check_variant("kernels", kernels)
    return kernels != "reference"


def check_dropout(name: str, value: object, hint: str = "") -> None:
    """Raise ``ValueError`` unless ``value`` is a number in [0, 1); ``hint`` is appended.

    >>> check_dropout("attn_pdrop", 256)
    Traceback (most recent call last):
    ...
    ValueError: attn_pdrop (256) must be in [0, 1)
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number in [0, 1), got {value!r}{hint}")
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name} ({value}) must be in [0, 1){hint}")


def default_d_ff(d_model: int, ffn: str) -> int:
    """The handout's feed-forward width for ``ffn``: ``4 * d_model`` for the two-matrix
    FFNs (gelu, silu); for SwiGLU, 8/3 d_model rounded to the nearest multiple of 64
    (halves up, at least 64), which keeps its three matrices at about the parameters of
    two at 4 d_model (2025 handout, section 3.5.2).

    >>> default_d_ff(512, "swiglu"), default_d_ff(768, "swiglu"), default_d_ff(512, "silu")
    (1344, 2048, 2048)
    """
    check_variant("ffn", ffn)
    if ffn != "swiglu":
        return 4 * d_model
    # nearest multiple of 64 to 8 d / 3: floor(8 d / (3 * 64) + 1/2) * 64, in integers
    return max(64, (8 * d_model + 96) // 192 * 64)


def expand_preset(fields: Mapping[str, Any]) -> dict[str, Any]:
    """``fields`` with a ``"preset"`` key replaced by that preset's choices (the explicit
    fields win) and, when ``d_ff`` is absent, ``d_ff = default_d_ff(d_model, ffn)``;
    without a ``"preset"`` key, a plain copy. A training config's ``[model]`` table and
    :meth:`ModelConfig.from_dict` (so every checkpoint's config) go through it, which is
    also where the field ``kernels`` is read under its old name ``attention``.

    >>> expand_preset({"preset": "cs336-2025", "d_model": 512, "norm": "post"})["d_ff"]
    1344
    >>> expand_preset({"attention": "reference"})
    {'kernels': 'reference'}

    Raises:
        ValueError: for an unknown preset name (the known ones are listed), or both
            ``kernels`` and its old name.
    """
    out = dict(fields)
    if "attention" in out:  # the field's name in configs and checkpoints before `kernels`
        if "kernels" in out:
            raise ValueError("give kernels or its old name attention, not both")
        out["kernels"] = out.pop("attention")
    if "preset" not in out:
        return out
    name = out.pop("preset")
    if name not in MODEL_PRESETS:
        known = ", ".join(repr(n) for n in MODEL_PRESETS)
        raise ValueError(f"model preset must be one of {known}, got {name!r}")
    out = {**MODEL_PRESETS[name], **out}
    if "d_ff" not in out and isinstance(out.get("d_model"), int):
        out["d_ff"] = default_d_ff(out["d_model"], out.get("ffn", "gelu"))
    return out


def _help(text: str) -> dict[str, str]:
    return {"help": text}


# The 2025 handout's TransformerLM takes rope_theta as its 7th argument, where the 2024
# signature has attn_pdrop: say how to write that call here.
_POSITIONAL_2025_HINT = (
    "; if this is the 2025 handout's rope_theta, pass it by keyword: TransformerLM(vocab_size, "
    "context_length, d_model, num_layers, num_heads, d_ff, rope_theta=...), or use "
    "TransformerLM.from_preset('cs336-2025', ...)"
)


@dataclass
class ModelConfig:
    """Hyperparameters of a :class:`~cs336.nn.model.TransformerLM`; checks itself on
    construction. Each field's ``metadata["help"]`` is its help text (``cs336 train
    --help`` shows it).

    The defaults of the keyword options are the 2024 handout's model: pre-norm, GELU
    feed-forward, learned absolute positions, untied head, GPT-2 init; the kernels are
    PyTorch's fused ones (``kernels="auto"``), with the handout's reference code one
    field away (``kernels="reference"``). :meth:`preset` builds the 2025 handout's
    (``"cs336-2025"``).

    Raises:
        ValueError: naming the bad field and value, e.g.
            ``d_model (500) must be divisible by num_heads (16)``.
    """

    vocab_size: int = field(metadata=_help("number of token ids (at least the tokenizer's)"))
    context_length: int = field(metadata=_help("longest sequence the model handles, in tokens"))
    d_model: int = field(metadata=_help("width of the residual stream"))
    num_layers: int = field(metadata=_help("number of Transformer blocks"))
    num_heads: int = field(metadata=_help("attention heads (must divide d_model)"))
    d_ff: int = field(metadata=_help("inner width of the feed-forward layers"))
    attn_pdrop: float = field(default=0.0, metadata=_help("dropout on attention probabilities"))
    residual_pdrop: float = field(
        default=0.0, metadata=_help("dropout on the embeddings and each residual branch")
    )
    norm: str = field(default="pre", metadata=_help("RMSNorm placement: pre, post or none"))
    parallel: bool = field(
        default=False,
        metadata=_help("parallel attention and feed-forward: x + Attn(norm x) + FFN(norm x)"),
    )
    tie_embeddings: bool = field(
        default=False, metadata=_help("share the token embedding matrix with the LM head")
    )
    ffn: str = field(
        default="gelu",
        metadata=_help("feed-forward: gelu, swiglu (gated, 3 matrices) or silu (ungated)"),
    )
    position: str = field(
        default="learned",
        metadata=_help("positions: learned (absolute), rope, or none (NoPE)"),
    )
    rope_theta: float = field(default=10000.0, metadata=_help("RoPE base frequency"))
    kernels: str = field(
        default="auto",
        metadata=_help(
            "kernels: auto (torch's fused ones; the reference attention for KV-cache "
            "steps), fused, or reference (the handout's code throughout)"
        ),
    )
    init: str = field(
        default="gpt2",
        metadata=_help("weight init: gpt2 (std 0.02) or xavier (the 2025 handout's)"),
    )
    norm_eps: float = field(
        default=1e-5, metadata=_help("RMSNorm epsilon (both handouts: 1e-5; LLaMA's: 1e-6)")
    )

    def __post_init__(self) -> None:
        for name in ("vocab_size", "context_length", "d_model", "num_layers", "num_heads", "d_ff"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.d_model % self.num_heads:
            raise ValueError(
                f"d_model ({self.d_model}) must be divisible by num_heads ({self.num_heads})"
            )
        for name in ("attn_pdrop", "residual_pdrop"):
            hint = _POSITIONAL_2025_HINT if name == "attn_pdrop" else ""
            check_dropout(name, getattr(self, name), hint)
        for name in VARIANTS:
            check_variant(name, getattr(self, name))
        for name in ("parallel", "tie_embeddings"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.parallel and self.norm == "post":
            raise ValueError("parallel layers need norm 'pre' or 'none', got 'post'")
        if isinstance(self.norm_eps, bool) or not isinstance(self.norm_eps, (int, float)):
            raise ValueError(f"norm_eps must be a positive number, got {self.norm_eps!r}")
        if not self.norm_eps > 0:
            raise ValueError(f"norm_eps must be positive, got {self.norm_eps}")
        if self.position == "rope":
            if self.d_k % 2:
                raise ValueError(
                    f"rope needs an even head dimension, got d_model / num_heads = "
                    f"{self.d_model} / {self.num_heads} = {self.d_k}"
                )
            if not self.rope_theta > 0:
                raise ValueError(f"rope_theta must be positive, got {self.rope_theta!r}")

    @classmethod
    def preset(cls, name: str, **fields: Any) -> ModelConfig:
        """The model ``name`` of :data:`MODEL_PRESETS` with the given shape; any field
        given here overrides the preset's (e.g. ``position="none"`` for NoPE). ``d_ff``
        defaults to :func:`default_d_ff` (1344 for the 2025 model at d_model 512).

        >>> ModelConfig.preset("cs336-2025", vocab_size=10000, context_length=256,
        ...     d_model=512, num_layers=4, num_heads=16, rope_theta=10000.0).d_ff
        1344

        Raises:
            ValueError: for an unknown preset, a missing shape field, or a bad value.
        """
        return cls.from_dict({"preset": name, **fields})

    @property
    def d_k(self) -> int:
        """Per-head width ``d_model / num_heads``."""
        return self.d_model // self.num_heads

    def weight_differences(self, other: ModelConfig) -> list[str]:
        """The fields (other than :data:`WEIGHT_NEUTRAL_FIELDS`) in which ``other`` differs, as
        ``"name: mine vs theirs"``: empty when a checkpoint of one continues as the other.

        >>> a = ModelConfig(100, 16, 32, 2, 4, 64)
        >>> a.weight_differences(dataclasses.replace(a, d_model=64, kernels="fused"))
        ['d_model: 32 vs 64']
        """
        mine, theirs = self.to_dict(), other.to_dict()
        return [
            f"{k}: {mine[k]!r} vs {theirs[k]!r}"
            for k in mine
            if k not in WEIGHT_NEUTRAL_FIELDS and mine[k] != theirs[k]
        ]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict of every field (``ModelConfig.from_dict`` inverts it)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelConfig:
        """Build from a dict such as ``to_dict()`` returns, or with a ``"preset"`` key
        and the shape (see :func:`expand_preset`).

        Raises:
            ValueError: for unknown or missing keys (named), or invalid values.
        """
        d = expand_preset(d)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - set(fields))
        if unknown:
            raise ValueError(f"unknown model config keys: {', '.join(unknown)}")
        missing = [
            name for name, f in fields.items() if name not in d and f.default is dataclasses.MISSING
        ]
        if missing:
            raise ValueError(f"missing model config keys: {', '.join(missing)}")
        return cls(**d)
