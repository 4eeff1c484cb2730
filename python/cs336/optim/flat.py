"""Many tensors laid end to end in one buffer, so that an elementwise update of all of them
is one operation on one tensor.

An optimizer step over a model's parameters costs, per operation, one pass (one kernel
launch on a GPU) for each parameter tensor, or one multi-tensor launch that still walks a
list of tensors. When the parameters, their gradients and the optimizer's moments each live
in one buffer with the same layout, the update runs once over four flat tensors: compiled,
a single fused kernel that reads and writes each number once.

:class:`FlatBuffer` is that layout for tensors of one dtype and device. Every tensor starts
at an offset that is a multiple of :data:`ALIGN` elements (256 bytes in float32), so that
views of the buffer are as aligned as fresh allocations for vector loads and matrix
libraries; the gaps stay zero. :meth:`FlatBuffer.adopt` moves existing tensors into it:
afterwards each is a view of the buffer (``p.data`` for parameters), so the model, the
optimizer and a checkpoint see ordinary tensors.

>>> a, b = torch.ones(3), torch.zeros(2, 2)
>>> flat = FlatBuffer.like([a, b])
>>> flat.adopt([a, b]); flat.data.shape, flat.holds([a, b])
(torch.Size([128]), True)
>>> _ = flat.data.add_(1.0); a.tolist(), b.sum().item()
([2.0, 2.0, 2.0], 4.0)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["ALIGN", "FlatBuffer"]

#: Elements between tensor starts are a multiple of this (256 bytes of float32).
ALIGN = 64


class FlatBuffer:
    """One zero-filled 1-D tensor (:attr:`data`) and, for each of the given shapes, a
    contiguous view of it (:attr:`views`), in order, each starting at a multiple of
    :data:`ALIGN` elements.

    Raises:
        ValueError: for no shapes.
    """

    def __init__(
        self, shapes: Sequence[torch.Size], dtype: torch.dtype, device: torch.device
    ) -> None:
        if not shapes:
            raise ValueError("a flat buffer needs at least one tensor")
        offsets, total = [], 0
        for shape in shapes:
            offsets.append(total)
            total += -(-shape.numel() // ALIGN) * ALIGN
        self.data = torch.zeros(total, dtype=dtype, device=device)
        self.views = [
            self.data[o : o + s.numel()].view(s) for o, s in zip(offsets, shapes, strict=True)
        ]
        self._addresses = [v.data_ptr() for v in self.views]

    @classmethod
    def like(cls, tensors: Sequence[Tensor]) -> FlatBuffer:
        """A buffer with room for ``tensors`` (their shapes, dtype and device).

        Raises:
            ValueError: the tensors differ in dtype or device (one buffer holds one kind).
        """
        kinds = {(t.dtype, t.device) for t in tensors}
        if len(kinds) > 1:
            found = ", ".join(sorted(f"{d} on {dev}" for d, dev in kinds))
            raise ValueError(f"a flat buffer holds one dtype on one device, got {found}")
        dtype, device = kinds.pop() if kinds else (torch.float32, torch.device("cpu"))
        return cls([t.shape for t in tensors], dtype, device)

    def holds(self, tensors: Sequence[Tensor]) -> bool:
        """Whether ``tensors`` start where this buffer's views do, in order (the same
        memory: a check cheap enough for every optimizer step)."""
        return [t.data_ptr() for t in tensors] == self._addresses

    @torch.no_grad()
    def adopt(self, tensors: Sequence[Tensor]) -> list[Tensor]:
        """Copy ``tensors`` into their places in the buffer and rebind each to its view
        (``t.data = view``; for parameters this keeps the ``nn.Parameter`` and its
        ``requires_grad``). Returns the views. Tensors already in place are left alone."""
        if not self.holds(tensors):
            for t, view in zip(tensors, self.views, strict=True):
                if t.data_ptr() != view.data_ptr():
                    view.copy_(t)
                    t.data = view
        return self.views
