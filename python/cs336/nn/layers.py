"""The Transformer's parameter-holding building blocks: ``Linear``, ``Embedding``,
``RMSNorm`` and the feed-forward networks, as small ``nn.Module``s.

Reference path (``kernels="reference"``, each module's default): from ``torch.nn`` only
``Parameter``, ``Module`` and ``torch.nn.init`` (no ``nn.Linear``, ``nn.Embedding`` or
``torch.nn.functional``), with the math in :mod:`cs336.nn.functional`; these are the
2025 handout's modules and serve the 2024 signatures too (same parameter names and
shapes). ``kernels="fused"`` (or ``"auto"``, what the model passes by default) runs
PyTorch's fused kernel for the same formula instead, tested equal. Every constructor
takes ``device`` and ``dtype`` for its parameters.

Attention (and RoPE) live in :mod:`cs336.nn.attention`, the block in
:mod:`cs336.nn.block`.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor, nn

from cs336.nn import fused as kernels_fused
from cs336.nn.config import check_variant, default_d_ff, fused_kernels
from cs336.nn.functional import gelu, silu

__all__ = [
    "Linear",
    "Embedding",
    "RMSNorm",
    "FeedForward",
    "SwiGLU",
    "feed_forward",
    "no_weight_init",
    "weight_init_enabled",
]

Device = torch.device | str | None

_WEIGHT_INIT = contextvars.ContextVar("cs336_weight_init", default=True)


@contextlib.contextmanager
def no_weight_init() -> Iterator[None]:
    """Modules built inside this block leave their parameters as allocated (uninitialized
    memory), for a model whose every weight is loaded next (``load_state_dict``, strict):
    the random draws would be thrown away (3.4 s of them for GPT-2 small on two cores).

    >>> with no_weight_init():
    ...     layer = Linear(3, 2)
    >>> _ = layer.load_state_dict({"weight": torch.ones(2, 3)})
    """
    token = _WEIGHT_INIT.set(False)
    try:
        yield
    finally:
        _WEIGHT_INIT.reset(token)


def weight_init_enabled() -> bool:
    """False inside :func:`no_weight_init`: constructors then skip their initialization."""
    return _WEIGHT_INIT.get()


class Linear(nn.Module):
    """``y = x W^T`` without a bias (2025 handout, section 3.4.2).

    ``weight`` has shape ``(out_features, in_features)`` (stored as W, not W^T: the
    layout and the name of ``nn.Linear(in, out, bias=False)``, so its state dicts load).
    Init: truncated normal with mean 0 and variance ``2 / (in_features + out_features)``
    (Glorot & Bengio 2010), cut at +-3 std (2025 handout, section 3.4.1).

    >>> Linear(3, 2)(torch.ones(5, 4, 3)).shape
    torch.Size([5, 4, 2])
    """

    def __init__(
        self, in_features: int, out_features: int, device: Device = None, dtype: Any = None
    ) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.weight = nn.Parameter(
            torch.empty(out_features, in_features, device=device, dtype=dtype)
        )
        if weight_init_enabled():
            self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Draw ``weight`` from N(0, 2 / (in + out)) truncated at +-3 std."""
        std = math.sqrt(2.0 / (self.in_features + self.out_features))
        nn.init.trunc_normal_(self.weight, mean=0.0, std=std, a=-3 * std, b=3 * std)

    def forward(self, x: Tensor) -> Tensor:
        """``x`` of shape ``(..., in_features)`` -> ``(..., out_features)``."""
        return x @ self.weight.T  # (..., in) @ (in, out)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"


class Embedding(nn.Module):
    """Lookup table: row ``i`` of ``weight`` is the vector of id ``i`` (2025 handout,
    section 3.4.3).

    ``weight`` has shape ``(num_embeddings, embedding_dim)`` (``nn.Embedding``'s layout
    and name). Init: N(0, 1) truncated at +-3 (2025 handout, section 3.4.1).

    >>> Embedding(10, 4)(torch.tensor([[1, 2, 3]])).shape
    torch.Size([1, 3, 4])
    """

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        device: Device = None,
        dtype: Any = None,
        *,
        kernels: str = "reference",
    ) -> None:
        super().__init__()
        self.num_embeddings = num_embeddings
        self.embedding_dim = embedding_dim
        self.fused = fused_kernels(kernels)
        self.weight = nn.Parameter(
            torch.empty(num_embeddings, embedding_dim, device=device, dtype=dtype)
        )
        if weight_init_enabled():
            self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Draw ``weight`` from N(0, 1) truncated at +-3."""
        nn.init.trunc_normal_(self.weight, mean=0.0, std=1.0, a=-3.0, b=3.0)

    def forward(self, token_ids: Tensor) -> Tensor:
        """Integer ``token_ids`` of any shape ``(...)`` -> ``(..., embedding_dim)``."""
        if self.fused:
            return kernels_fused.embedding(token_ids, self.weight)
        return self.weight[token_ids]

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}"


class RMSNorm(nn.Module):
    """Root-mean-square layer norm (Zhang & Sennrich 2019, eq. 4):
    ``x / sqrt(mean(x^2) + eps) * weight``.

    Computed in float32 whatever the input dtype (also under bf16 autocast) and returned
    in the input dtype (2025 handout, section 3.5.1). ``weight`` (the gain) starts at ones.
    """

    def __init__(
        self,
        d_model: int,
        eps: float = 1e-5,
        device: Device = None,
        dtype: Any = None,
        *,
        kernels: str = "reference",
    ) -> None:
        super().__init__()
        self.eps = eps
        self.fused = fused_kernels(kernels)
        self.weight = nn.Parameter(torch.empty(d_model, device=device, dtype=dtype))
        if weight_init_enabled():
            self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Set the gain to ones."""
        self.weight.fill_(1.0)

    def forward(self, x: Tensor) -> Tensor:
        """``x`` of shape ``(..., d_model)`` -> the same shape and dtype."""
        x32 = x.float()
        if self.fused:
            out = kernels_fused.rms_norm(x32, self.weight.float(), self.eps)
            if out is not None:
                return out.to(x.dtype)
        inv_rms = torch.rsqrt(x32.pow(2).mean(dim=-1, keepdim=True) + self.eps)  # (..., 1)
        return (x32 * inv_rms * self.weight.float()).to(x.dtype)


class FeedForward(nn.Module):
    """Position-wise feed-forward network ``w2(act(w1 x))`` without biases.

    ``activation="gelu"`` is the 2024 handout's FFN; ``activation="silu"`` is the 2025
    handout's ungated ablation ``FFN_SiLU(x) = W2 SiLU(W1 x)`` (eq. 25), run with
    ``d_ff = 4 d_model`` to match SwiGLU's parameter count. ``w1``: (d_ff, d_model),
    ``w2``: (d_model, d_ff).

    Raises:
        ValueError: for an activation other than gelu or silu.
    """

    def __init__(
        self,
        d_model: int,
        d_ff: int,
        *,
        activation: str = "gelu",
        device: Device = None,
        dtype: Any = None,
        kernels: str = "reference",
    ) -> None:
        super().__init__()
        if activation not in ("gelu", "silu"):
            raise ValueError(f"activation must be 'gelu' or 'silu', got {activation!r}")
        self.activation = activation
        fused = fused_kernels(kernels)
        self._act: Callable[[Tensor], Tensor]
        if activation == "gelu":
            self._act = kernels_fused.gelu if fused else gelu
        else:
            self._act = kernels_fused.silu if fused else silu
        self.w1 = Linear(d_model, d_ff, device, dtype)
        self.w2 = Linear(d_ff, d_model, device, dtype)

    def forward(self, x: Tensor) -> Tensor:
        """``(..., d_model)`` -> ``(..., d_model)``."""
        return self.w2(self._act(self.w1(x)))  # (..., d_ff) inside


class SwiGLU(nn.Module):
    """Gated feed-forward ``w2(silu(w1 x) * w3 x)`` (Shazeer 2020; 2025 handout, eq. 7),
    no biases. ``w1``, ``w3``: (d_ff, d_model); ``w2``: (d_model, d_ff).

    ``d_ff`` defaults to 8/3 d_model rounded to a multiple of 64
    (:func:`~cs336.nn.config.default_d_ff`: 512 -> 1344).
    """

    def __init__(
        self,
        d_model: int,
        d_ff: int | None = None,
        *,
        device: Device = None,
        dtype: Any = None,
        kernels: str = "reference",
    ) -> None:
        super().__init__()
        d_ff = default_d_ff(d_model, "swiglu") if d_ff is None else d_ff
        self._silu = kernels_fused.silu if fused_kernels(kernels) else silu
        self.w1 = Linear(d_model, d_ff, device, dtype)
        self.w2 = Linear(d_ff, d_model, device, dtype)
        self.w3 = Linear(d_model, d_ff, device, dtype)

    def forward(self, x: Tensor) -> Tensor:
        """``(..., d_model)`` -> ``(..., d_model)``."""
        return self.w2(self._silu(self.w1(x)) * self.w3(x))  # (..., d_ff) inside


def feed_forward(
    kind: str,
    d_model: int,
    d_ff: int,
    *,
    device: Device = None,
    dtype: Any = None,
    kernels: str = "reference",
) -> FeedForward | SwiGLU:
    """The feed-forward network of ``VARIANTS["ffn"]`` ``kind``: gelu, swiglu or silu."""
    check_variant("ffn", kind)
    kw: dict[str, Any] = {"device": device, "dtype": dtype, "kernels": kernels}
    if kind == "swiglu":
        return SwiGLU(d_model, d_ff, **kw)
    return FeedForward(d_model, d_ff, activation=kind, **kw)
