"""One Transformer layer (:class:`TransformerBlock`): attention and feed-forward sublayers
with residuals, in the placements of :data:`~cs336.nn.config.VARIANTS` ``norm``."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from cs336.nn.attention import AttentionCache, MultiHeadSelfAttention, RotaryPositionalEmbedding
from cs336.nn.config import check_dropout, check_variant
from cs336.nn.layers import Device, RMSNorm, feed_forward

__all__ = ["TransformerBlock"]

# The 2025 handout's block takes max_seq_len and theta where the 2024 one has the dropouts.
_POSITIONAL_2025_HINT = (
    "; if this is the 2025 handout's max_seq_len or theta, pass them by keyword: "
    "TransformerBlock(d_model, num_heads, d_ff, max_seq_len=..., theta=..., ffn='swiglu')"
)


class TransformerBlock(nn.Module):
    """One Transformer layer: attention and feed-forward sublayers with residuals.

    ``norm="pre"`` (default; both handouts): ``x + Dropout(Attn(ln1(x)))`` then
    ``x + Dropout(FFN(ln2(x)))``. ``norm="post"`` (the original Transformer):
    ``ln1(x + Dropout(Attn(x)))`` then ``ln2(x + Dropout(FFN(x)))``. ``norm="none"``:
    no ``ln1``/``ln2`` at all. ``parallel=True`` (GPT-J): ``x + Dropout(Attn(ln1(x))) +
    Dropout(FFN(ln2(x)))``, with pre-norm or no norm. Parameters ``ln1``, ``attn``,
    ``ln2``, ``ffn``.

    The 2024 handout's block is ``TransformerBlock(d_model, num_heads, d_ff, attn_pdrop,
    residual_pdrop)`` (GELU FFN, no positions); the 2025 handout's is
    ``TransformerBlock(d_model, num_heads, d_ff, max_seq_len=..., theta=..., ffn="swiglu")``
    (RoPE in the attention, SwiGLU, no dropout).

    Args:
        d_model, num_heads, d_ff: widths; ``num_heads`` must divide ``d_model``.
        attn_pdrop: dropout on the attention probabilities.
        residual_pdrop: dropout on each sublayer's output before the residual add.
        max_seq_len, theta: RoPE of its own in the attention (give both), or ``rope``.
        norm, parallel, ffn, kernels: see :data:`~cs336.nn.config.VARIANTS`.
        norm_eps: the RMSNorms' epsilon.
        device, dtype: of the parameters.

    Raises:
        ValueError: for an unknown ``norm``, ``ffn`` or ``kernels``, parallel with
            post-norm, or a dropout outside [0, 1).
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        d_ff: int,
        attn_pdrop: float = 0.0,
        residual_pdrop: float = 0.0,
        *,
        max_seq_len: int | None = None,
        theta: float | None = None,
        norm: str = "pre",
        parallel: bool = False,
        ffn: str = "gelu",
        rope: RotaryPositionalEmbedding | None = None,
        kernels: str = "reference",
        norm_eps: float = 1e-5,
        device: Device = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        check_variant("norm", norm)
        check_variant("ffn", ffn)
        check_variant("kernels", kernels)
        check_dropout("attn_pdrop", attn_pdrop, _POSITIONAL_2025_HINT)
        check_dropout("residual_pdrop", residual_pdrop, _POSITIONAL_2025_HINT)
        if parallel and norm == "post":
            raise ValueError("parallel layers need norm='pre' or 'none', got 'post'")
        self.norm = norm
        self.parallel = parallel
        kw: dict[str, Any] = {"device": device, "dtype": dtype, "kernels": kernels}
        if norm != "none":
            self.ln1 = RMSNorm(d_model, norm_eps, **kw)
        self.attn = MultiHeadSelfAttention(
            d_model, num_heads, attn_pdrop, max_seq_len=max_seq_len, theta=theta, rope=rope,
            **kw,
        )  # fmt: skip
        if norm != "none":
            self.ln2 = RMSNorm(d_model, norm_eps, **kw)
        self.ffn = feed_forward(ffn, d_model, d_ff, **kw)
        self.dropout = nn.Dropout(residual_pdrop)

    def _ln1(self, x: Tensor) -> Tensor:
        return x if self.norm == "none" else self.ln1(x)

    def _ln2(self, x: Tensor) -> Tensor:
        return x if self.norm == "none" else self.ln2(x)

    def _drop(self, x: Tensor) -> Tensor:
        # nn.Dropout(0) in training mode still draws a mask; skip it to be an exact identity.
        return x if self.dropout.p == 0.0 else self.dropout(x)

    def _attn(self, h: Tensor, token_positions: Tensor | None, cache: Any) -> Tensor:
        return self._drop(self.attn(h, token_positions, cache=cache))

    def forward(
        self,
        x: Tensor,
        token_positions: Tensor | None = None,
        *,
        cache: AttentionCache | None = None,
    ) -> Tensor:
        """``x`` of shape ``(..., T, d_model)`` -> the same shape. ``token_positions`` and
        ``cache`` go to the attention (see :meth:`MultiHeadSelfAttention.forward`)."""
        pos = token_positions
        if self.parallel:
            return x + self._attn(self._ln1(x), pos, cache) + self._drop(self.ffn(self._ln2(x)))
        if self.norm == "post":
            x = self.ln1(x + self._attn(x, pos, cache))
            return self.ln2(x + self._drop(self.ffn(x)))
        x = x + self._attn(self._ln1(x), pos, cache)
        return x + self._drop(self.ffn(self._ln2(x)))
