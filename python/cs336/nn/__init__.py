"""The model in pure PyTorch: stateless math (:mod:`~cs336.nn.functional`), the layers
(:mod:`~cs336.nn.layers`: Linear, Embedding, RMSNorm, feed-forwards), attention and RoPE
(:mod:`~cs336.nn.attention`), the block (:mod:`~cs336.nn.block`), the hyperparameters and
presets (:mod:`~cs336.nn.config`), the language model with its KV cache
(:mod:`~cs336.nn.model`), which parameters decay (:mod:`~cs336.nn.groups`) and the model
compiled block by block (:mod:`~cs336.nn.compiled`). Nothing here imports the tokenizer.
"""

from cs336.nn.attention import (
    AttentionCache,
    MultiHeadSelfAttention,
    RotaryEmbedding,
    RotaryPositionalEmbedding,
)
from cs336.nn.block import TransformerBlock
from cs336.nn.config import MODEL_PRESETS, VARIANTS, ModelConfig, check_variant, default_d_ff
from cs336.nn.functional import (
    cross_entropy,
    dropout,
    gelu,
    perplexity,
    scaled_dot_product_attention,
    silu,
    softmax,
)
from cs336.nn.groups import param_groups
from cs336.nn.layers import Embedding, FeedForward, Linear, RMSNorm, SwiGLU
from cs336.nn.model import KVCache, TransformerLM

__all__ = [
    "MODEL_PRESETS",
    "VARIANTS",
    "AttentionCache",
    "Embedding",
    "FeedForward",
    "KVCache",
    "Linear",
    "ModelConfig",
    "MultiHeadSelfAttention",
    "RMSNorm",
    "RotaryEmbedding",
    "RotaryPositionalEmbedding",
    "SwiGLU",
    "TransformerBlock",
    "TransformerLM",
    "check_variant",
    "cross_entropy",
    "default_d_ff",
    "dropout",
    "gelu",
    "param_groups",
    "perplexity",
    "scaled_dot_product_attention",
    "silu",
    "softmax",
]
