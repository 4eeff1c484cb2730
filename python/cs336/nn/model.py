"""The Transformer language model (:class:`TransformerLM`) and its KV cache.

Its hyperparameters are a :class:`~cs336.nn.config.ModelConfig` (re-exported here).

>>> cfg = ModelConfig(vocab_size=100, context_length=16, d_model=32, num_layers=2,
...                   num_heads=4, d_ff=64)
>>> model = TransformerLM.from_config(cfg)
>>> model(torch.zeros(3, 16, dtype=torch.long)).shape
torch.Size([3, 16, 100])
>>> lm = TransformerLM.from_preset("cs336-2025", vocab_size=100, context_length=16,
...                                d_model=64, num_layers=2, num_heads=4, rope_theta=10000.0)
>>> lm.config.d_ff, "position_embeddings.weight" in lm.state_dict()
(192, False)
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from cs336.nn.attention import AttentionCache, RotaryPositionalEmbedding
from cs336.nn.block import TransformerBlock
from cs336.nn.config import ModelConfig
from cs336.nn.functional import cross_entropy
from cs336.nn.fused import chunked_cross_entropy
from cs336.nn.layers import (
    Device,
    Embedding,
    Linear,
    RMSNorm,
    no_weight_init,
    weight_init_enabled,
)

__all__ = ["ModelConfig", "KVCache", "TransformerLM"]


class KVCache:
    """Per-layer keys and values of a :class:`TransformerLM` for incremental decoding.

    Make one with ``model.init_kv_cache(batch_size)``, then call ``model(x_new,
    kv_cache=cache)`` with only the new tokens each time.
    """

    def __init__(self, layers: list[AttentionCache], context_length: int) -> None:
        self.layers = layers
        self.context_length = context_length

    @property
    def length(self) -> int:
        """Number of tokens (per sequence) already in the cache."""
        return self.layers[0].length if self.layers else 0

    def reset(self) -> None:
        """Forget every cached token (the buffers are reused)."""
        for layer in self.layers:
            layer.length = 0


class TransformerLM(nn.Module):
    """Decoder-only Transformer language model (the CS336 handouts', plus options).

    Token embeddings (+ learned absolute positions with ``position="learned"``; RoPE in
    every attention with ``"rope"``; nothing with ``"none"``), dropout, ``num_layers``
    :class:`~cs336.nn.block.TransformerBlock` s, a final RMSNorm ``ln_final`` and a
    linear head, all built from :class:`~cs336.nn.layers.Linear`,
    :class:`~cs336.nn.layers.Embedding` and :class:`~cs336.nn.layers.RMSNorm`.

    The positional arguments are the 2024 handout's. The 2025 handout's model
    (``TransformerLM(vocab_size, context_length, d_model, num_layers, num_heads, d_ff,
    rope_theta)``: RoPE, SwiGLU, no dropout, its init) is
    ``TransformerLM.from_preset("cs336-2025", vocab_size=..., context_length=...,
    d_model=..., num_layers=..., num_heads=..., d_ff=..., rope_theta=...)``; its
    state dicts (``token_embeddings``, ``layers.{i}.{ln1,attn,ln2,ffn}``, ``ln_final``,
    ``lm_head``) load with ``strict=True``.

    ``ln_final`` exists with pre-norm only. The handout adds it because a pre-norm
    residual stream is never normalized after the last block. A post-norm block already
    ends in its own RMSNorm (the handout's ``y = RMSNorm(z + FFN(z))``), so the
    post-norm model feeds that output straight to the head, as the original
    Transformer does; ``norm="none"`` has no norm at all. Parameter names follow the course's
    reference layout: ``token_embeddings.weight``, ``position_embeddings.weight``,
    ``layers.{i}.ln1.weight``, ``layers.{i}.attn.{q,k,v,output}_proj.weight``,
    ``layers.{i}.ln2.weight``, ``layers.{i}.ffn.w1.weight``, ``layers.{i}.ffn.w2.weight``
    (``ffn.w3`` with SwiGLU), ``ln_final.weight`` (pre-norm), ``lm_head.weight``.

    Keyword options are those of :class:`ModelConfig`, plus ``device`` and ``dtype`` of
    the parameters; weights are initialized by :meth:`init_weights`.
    """

    def __init__(
        self,
        vocab_size: int,
        context_length: int,
        d_model: int,
        num_layers: int,
        num_heads: int,
        d_ff: int,
        attn_pdrop: float = 0.0,
        residual_pdrop: float = 0.0,
        *,
        norm: str = "pre",
        parallel: bool = False,
        tie_embeddings: bool = False,
        ffn: str = "gelu",
        position: str = "learned",
        rope_theta: float = 10000.0,
        kernels: str = "auto",
        init: str = "gpt2",
        norm_eps: float = 1e-5,
        device: Device = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        cfg = ModelConfig(
            vocab_size, context_length, d_model, num_layers, num_heads, d_ff,
            attn_pdrop, residual_pdrop, norm=norm, parallel=parallel,
            tie_embeddings=tie_embeddings, ffn=ffn, position=position,
            rope_theta=rope_theta, kernels=kernels, init=init, norm_eps=norm_eps,
        )  # fmt: skip
        self.config = cfg
        initialize = weight_init_enabled()
        with no_weight_init():  # drawn once, below (not by each layer, then again)
            self._build(cfg, device, dtype)
        if initialize:
            self.init_weights()

    def _build(self, cfg: ModelConfig, device: Device, dtype: Any) -> None:
        """The modules of ``cfg``, their parameters allocated (initialized by the caller)."""
        vocab_size, context_length, d_model = cfg.vocab_size, cfg.context_length, cfg.d_model
        kernels, position, norm, norm_eps = cfg.kernels, cfg.position, cfg.norm, cfg.norm_eps
        kw: dict[str, Any] = {"device": device, "dtype": dtype}
        choice = {"kernels": kernels}
        self.token_embeddings = Embedding(vocab_size, d_model, **kw, **choice)
        rope = None
        if position == "learned":
            self.position_embeddings = Embedding(context_length, d_model, **kw, **choice)
        elif position == "rope":  # one table for every layer
            rope = RotaryPositionalEmbedding(cfg.rope_theta, cfg.d_k, context_length, device)
        self.dropout = nn.Dropout(cfg.residual_pdrop)
        self.layers = nn.ModuleList(
            TransformerBlock(
                d_model,
                cfg.num_heads,
                cfg.d_ff,
                cfg.attn_pdrop,
                cfg.residual_pdrop,
                norm=norm,
                parallel=cfg.parallel,
                ffn=cfg.ffn,
                rope=rope,
                kernels=kernels,
                norm_eps=norm_eps,
                **kw,
            )  # fmt: skip
            for _ in range(cfg.num_layers)
        )
        if norm == "pre":  # a post-norm block's output is already normalized
            self.ln_final = RMSNorm(d_model, norm_eps, **kw, **choice)
        self._loss = cross_entropy if kernels == "reference" else chunked_cross_entropy
        self.lm_head = Linear(d_model, vocab_size, **kw)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.token_embeddings.weight

    @classmethod
    def from_config(
        cls, cfg: ModelConfig, *, device: Device = None, dtype: Any = None
    ) -> TransformerLM:
        """``TransformerLM(**cfg.to_dict(), device=device, dtype=dtype)``."""
        return cls(**cfg.to_dict(), device=device, dtype=dtype)

    @classmethod
    def from_preset(
        cls, name: str, *, device: Device = None, dtype: Any = None, **fields: Any
    ) -> TransformerLM:
        """The model of :meth:`ModelConfig.preset` ``(name, **fields)``: e.g. the 2025
        handout's ``TransformerLM.from_preset("cs336-2025", vocab_size=10000,
        context_length=256, d_model=512, num_layers=4, num_heads=16, d_ff=1344,
        rope_theta=10000.0)`` (``d_ff`` may be left out: 8/3 d_model rounded to 64)."""
        return cls.from_config(ModelConfig.preset(name, **fields), device=device, dtype=dtype)

    @torch.no_grad()
    def init_weights(self) -> None:
        """(Re-)initialize every parameter in place, by the config's ``init``.

        ``init="xavier"`` (the 2025 handout's, section 3.4.1; the ``cs336-2025``
        preset's): every module's own ``reset_parameters``, i.e.

        - every :class:`~cs336.nn.layers.Linear` weight (q/k/v/output projections,
          ``ffn.w1``/``w2``/``w3``, ``lm_head``): N(0, 2 / (d_in + d_out)) truncated at
          +-3 std;
        - ``token_embeddings.weight``, ``position_embeddings.weight``: N(0, 1) truncated
          at +-3 (with tied embeddings the shared matrix gets this init; the 2025 handout
          suggests a smaller one for tying);
        - ``ln1``, ``ln2``, ``ln_final`` weights: ones.

        ``init="gpt2"`` (the default, kept from cs336 0.1: GPT-2 / nanoGPT scheme). With
        ``std = 0.02`` and every normal truncated at +-3 std:

        - ``token_embeddings.weight``, ``position_embeddings.weight``: N(0, std^2).
        - ``layers.{i}.attn.q_proj/k_proj/v_proj.weight``, ``layers.{i}.ffn.w1.weight``
          (and ``ffn.w3`` for SwiGLU): N(0, std^2).
        - ``layers.{i}.attn.output_proj.weight``, ``layers.{i}.ffn.w2.weight``: the
          projections that write into the residual stream, N(0, (std / sqrt(2 L))^2)
          for ``L = num_layers``, so the residual's variance does not grow with depth
          (GPT-2 paper, section 2.3).
        - ``lm_head.weight``: N(0, std^2) (with tied embeddings it is the token
          embedding matrix).
        - ``ln1``, ``ln2``, ``ln_final`` weights: ones.

        The 2024 handout prescribes no init; GPT-2's keeps the residual stream's variance
        from growing with depth, which is why it stays this model's default.
        """
        if self.config.init == "xavier":
            for module in self.modules():
                if module is self.lm_head and self.config.tie_embeddings:
                    continue  # the shared matrix is the token embeddings'
                if isinstance(module, (Linear, Embedding, RMSNorm)):
                    module.reset_parameters()
            return
        std = 0.02
        out_std = std / math.sqrt(2 * self.config.num_layers)
        for name, p in self.named_parameters():
            if p.ndim == 1:  # RMSNorm gains
                p.fill_(1.0)
            else:
                s = out_std if name.endswith(("output_proj.weight", "ffn.w2.weight")) else std
                nn.init.trunc_normal_(p, mean=0.0, std=s, a=-3 * s, b=3 * s)

    def num_parameters(self, exclude_embeddings: bool = False) -> int:
        """Number of distinct parameters (a tied matrix counts once).

        ``exclude_embeddings=True`` leaves out the input lookup tables
        (``position_embeddings`` and an untied ``token_embeddings``); a tied matrix is
        still counted because it is also the LM head.
        """
        total = sum(p.numel() for p in self.parameters())
        if exclude_embeddings:
            if hasattr(self, "position_embeddings"):
                total -= self.position_embeddings.weight.numel()
            if not self.config.tie_embeddings:
                total -= self.token_embeddings.weight.numel()
        return total

    def init_kv_cache(
        self,
        batch_size: int,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> KVCache:
        """An empty :class:`KVCache` for ``batch_size`` sequences of up to context_length.

        ``device`` and ``dtype`` default to those of the model's parameters.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        ref = self.lm_head.weight
        cfg = self.config
        layers = [
            AttentionCache(
                batch_size,
                cfg.num_heads,
                cfg.context_length,
                cfg.d_k,
                device=device if device is not None else ref.device,
                dtype=dtype if dtype is not None else ref.dtype,
            )
            for _ in range(cfg.num_layers)
        ]
        return KVCache(layers, cfg.context_length)

    def forward(
        self,
        token_ids: Tensor,
        *,
        targets: Tensor | None = None,
        kv_cache: KVCache | None = None,
    ) -> Tensor:
        """Next-token logits, or with ``targets`` the mean cross-entropy loss.

        Args:
            token_ids: ``(B, T)`` integer token ids. With ``kv_cache``, only the tokens
                not yet in the cache: their positions continue from ``kv_cache.length``.
            targets: ``(B, T)`` integer ids of the next tokens: then the return value is
                the mean cross-entropy, a float32 scalar (what training differentiates; one
                call, so ``torch.compile`` sees model and loss together). It is
                :func:`~cs336.nn.functional.cross_entropy` with ``kernels="reference"``,
                else :func:`~cs336.nn.fused.chunked_cross_entropy` (no float32 copy of the
                logits).
            kv_cache: from :meth:`init_kv_cache`; appended to in place.

        Returns:
            ``(B, T, vocab_size)`` logits (float32, or the autocast dtype), or the loss.

        Raises:
            ValueError: if ``token_ids`` is not a 2-D integer tensor, or the sequence (plus what the
                cache holds) is longer than ``context_length``.
        """
        start = kv_cache.length if kv_cache is not None else 0
        x = self.embed(token_ids, start, cached=kv_cache is not None)
        for i, layer in enumerate(self.layers):
            x = layer(x, cache=kv_cache.layers[i] if kv_cache is not None else None)
        return self.head(x, targets)

    def embed(self, token_ids: Tensor, start: int = 0, *, cached: bool = False) -> Tensor:
        """The residual stream entering the first block: token embeddings, plus the
        learned positions ``start .. start + T - 1`` (``position="learned"``), then dropout;
        ``(B, T)`` ids -> ``(B, T, d_model)``. :meth:`forward`'s first part.

        Raises:
            ValueError: if ``token_ids`` is not a 2-D integer tensor, or ``start + T``
                exceeds ``context_length`` (``cached``: the message speaks of the cache).
        """
        if token_ids.ndim != 2:
            raise ValueError(
                f"token_ids must have shape (batch, seq), got {tuple(token_ids.shape)}"
            )
        if token_ids.dtype.is_floating_point or token_ids.dtype.is_complex:
            raise ValueError(f"token_ids must be an integer tensor, got {token_ids.dtype}")
        t = token_ids.shape[1]
        ctx = self.config.context_length
        if start + t > ctx:
            if not cached:
                raise ValueError(f"sequence length {t} exceeds context_length ({ctx})")
            raise ValueError(
                f"kv cache holds {start} tokens; {t} more would exceed context_length ({ctx})"
            )
        x = self.token_embeddings(token_ids)  # (B, T, d_model)
        if hasattr(self, "position_embeddings"):
            positions = torch.arange(start, start + t, device=token_ids.device)
            x = x + self.position_embeddings(positions)  # (T, d_model) broadcast
        if self.dropout.p > 0.0:
            x = self.dropout(x)
        return x

    def head(self, x: Tensor, targets: Tensor | None = None) -> Tensor:
        """The last block's output ``(B, T, d_model)`` -> logits ``(B, T, vocab_size)``
        (after ``ln_final`` with pre-norm), or with ``targets`` the mean cross-entropy.
        :meth:`forward`'s last part."""
        if hasattr(self, "ln_final"):
            x = self.ln_final(x)
        logits = self.lm_head(x)  # (B, T, vocab_size)
        return logits if targets is None else self._loss(logits, targets)
