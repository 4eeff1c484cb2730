"""The model's hyperparameters (:class:`ModelConfig`) and the one table of its variants.

:data:`VARIANTS` lists every architectural choice and its allowed values; the config,
the layers and the ``cs336 accounting`` flags all read it, and :func:`check_variant` is
the one check with the one message. Nothing here imports torch.

>>> ModelConfig(vocab_size=100, context_length=16, d_model=32, num_layers=2,
...             num_heads=4, d_ff=64).d_k
8
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["KERNEL_FIELDS", "VARIANTS", "ModelConfig", "check_variant"]

#: Every architectural choice with its allowed values; the first is the default (the
#: 2024 handout's model).
VARIANTS: dict[str, tuple[str, ...]] = {
    "norm": ("pre", "post", "none"),
    "ffn": ("gelu", "swiglu"),
    "position": ("learned", "rope"),
    "attention": ("reference", "fused"),
}


#: Fields that choose how the model is computed, not what it computes: the weights of a
#: checkpoint fit every value, so a run may resume with another one.
KERNEL_FIELDS: tuple[str, ...] = ("attention",)


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


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass
class ModelConfig:
    """Hyperparameters of a :class:`~cs336.nn.model.TransformerLM`; checks itself on
    construction. Each field's ``metadata["help"]`` is its help text (``cs336 train
    --help`` shows it).

    The defaults of the keyword options are the handout's model: pre-norm, GELU
    feed-forward, learned absolute positions, untied head, reference attention.

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
    ffn: str = field(default="gelu", metadata=_help("feed-forward type: gelu or swiglu"))
    position: str = field(
        default="learned", metadata=_help("positions: learned (absolute) or rope")
    )
    rope_theta: float = field(default=10000.0, metadata=_help("RoPE base frequency"))
    attention: str = field(
        default="reference", metadata=_help("attention kernel: reference or fused (torch SDPA)")
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
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{name} must be a number in [0, 1), got {value!r}")
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name} ({value}) must be in [0, 1)")
        for name in VARIANTS:
            check_variant(name, getattr(self, name))
        for name in ("parallel", "tie_embeddings"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.parallel and self.norm == "post":
            raise ValueError("parallel layers need norm 'pre' or 'none', got 'post'")
        if self.position == "rope":
            if self.d_k % 2:
                raise ValueError(
                    f"rope needs an even head dimension, got d_model / num_heads = "
                    f"{self.d_model} / {self.num_heads} = {self.d_k}"
                )
            if not self.rope_theta > 0:
                raise ValueError(f"rope_theta must be positive, got {self.rope_theta!r}")

    @property
    def d_k(self) -> int:
        """Per-head width ``d_model / num_heads``."""
        return self.d_model // self.num_heads

    def weight_differences(self, other: ModelConfig) -> list[str]:
        """The fields (other than :data:`KERNEL_FIELDS`) in which ``other`` differs, as
        ``"name: mine vs theirs"``: empty when a checkpoint of one continues as the other.

        >>> a = ModelConfig(100, 16, 32, 2, 4, 64)
        >>> a.weight_differences(dataclasses.replace(a, d_model=64, attention="fused"))
        ['d_model: 32 vs 64']
        """
        mine, theirs = self.to_dict(), other.to_dict()
        return [
            f"{k}: {mine[k]!r} vs {theirs[k]!r}"
            for k in mine
            if k not in KERNEL_FIELDS and mine[k] != theirs[k]
        ]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict of every field (``ModelConfig.from_dict`` inverts it)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelConfig:
        """Build from a dict such as ``to_dict()`` returns.

        Raises:
            ValueError: for unknown or missing keys (named), or invalid values.
        """
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
