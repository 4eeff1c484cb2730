"""Optimizers, gradient clipping and the learning-rate schedule, on top of
``torch.optim.Optimizer`` only; they take parameters or parameter groups and know nothing of
the model (which parameters decay: :func:`cs336.nn.groups.param_groups`).

- :mod:`~cs336.optim.adamw`: :class:`AdamW`, the handout's formula, per tensor, multi-tensor,
  compiled, or over flat buffers (:mod:`~cs336.optim.flat`: one pass over all parameters);
- :mod:`~cs336.optim.sgd`: the handout's :class:`SGD` with a decaying step;
- :mod:`~cs336.optim.clip`: :func:`clip_grad_norm`;
- :mod:`~cs336.optim.schedule`: :func:`lr_cosine_schedule`.

>>> model = torch.nn.Linear(4, 2)
>>> opt = AdamW(model.parameters(), lr=1e-3)
>>> model(torch.ones(4)).sum().backward()
>>> clip_grad_norm(model.parameters(), max_norm=1.0) > 0
tensor(True)
>>> opt.step()
"""

from __future__ import annotations

import torch  # noqa: F401  (the doctest above uses it)

from cs336.optim.adamw import AdamW
from cs336.optim.clip import clip_grad_norm
from cs336.optim.schedule import lr_cosine_schedule
from cs336.optim.sgd import SGD

__all__ = ["SGD", "AdamW", "clip_grad_norm", "lr_cosine_schedule"]
