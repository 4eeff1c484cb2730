"""The model in pure PyTorch: stateless math (:mod:`~cs336.nn.functional`), the layers
(:mod:`~cs336.nn.layers`), the hyperparameters (:mod:`~cs336.nn.config`) and the language
model with its KV cache (:mod:`~cs336.nn.model`). Nothing here imports the tokenizer.
"""

from cs336.nn.config import VARIANTS, ModelConfig, check_variant
from cs336.nn.functional import (
    cross_entropy,
    dropout,
    gelu,
    perplexity,
    scaled_dot_product_attention,
    silu,
    softmax,
)
from cs336.nn.layers import (
    AttentionCache,
    FeedForward,
    MultiHeadSelfAttention,
    RMSNorm,
    RotaryEmbedding,
    SwiGLU,
    TransformerBlock,
)
from cs336.nn.model import KVCache, TransformerLM

__all__ = [
    "VARIANTS",
    "AttentionCache",
    "FeedForward",
    "KVCache",
    "ModelConfig",
    "MultiHeadSelfAttention",
    "RMSNorm",
    "RotaryEmbedding",
    "SwiGLU",
    "TransformerBlock",
    "TransformerLM",
    "check_variant",
    "cross_entropy",
    "dropout",
    "gelu",
    "perplexity",
    "scaled_dot_product_attention",
    "silu",
    "softmax",
]
