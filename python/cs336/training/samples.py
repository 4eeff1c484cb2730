"""Text samples during training (``sample_interval``, ``sample_prompt``): which tokenizer
decodes them (:func:`find_tokenizer`) and one seeded sample of the model as it is
(:func:`draw_sample`)."""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import AbstractContextManager

import torch

from cs336.nn.model import TransformerLM
from cs336.tokenizer import Tokenizer
from cs336.training.config import TrainConfig

__all__ = ["SAMPLE_TOKENS", "TEMPERATURE", "TOP_P", "draw_sample", "find_tokenizer"]

#: New tokens per sample, and how they are drawn (temperature, top-p).
SAMPLE_TOKENS, TEMPERATURE, TOP_P = 100, 0.8, 0.95


def find_tokenizer(config: TrainConfig) -> Tokenizer | None:
    """The tokenizer for the run's samples: ``data.tokenizer``, else a ``tokenizer`` folder
    beside the training tokens; None when the run draws no sample (``sample_interval`` is
    0 or beyond ``max_steps``).

    Raises:
        ValueError: samples are asked for and no tokenizer is found, or it has more tokens
            than the model (it did not make these token files).
    """
    if not config.sample_interval or config.sample_interval > config.max_steps:
        return None
    path = config.data.tokenizer or os.path.join(
        os.path.dirname(config.data.train_path), "tokenizer"
    )
    if not os.path.isdir(path):
        where = "data.tokenizer" if config.data.tokenizer else "beside data.train_path"
        raise ValueError(
            f"sample_interval = {config.sample_interval} needs the tokenizer that made the "
            f"token files: none at {path} ({where}); set data.tokenizer, or sample_interval = 0"
        )
    tokenizer = Tokenizer.from_dir(path)
    if tokenizer.vocab_size > config.model.vocab_size:
        raise ValueError(
            f"the tokenizer at {path} has {tokenizer.vocab_size} tokens but the model's "
            f"vocab_size is {config.model.vocab_size}: it did not make these token files"
        )
    return tokenizer


@torch.no_grad()
def draw_sample(
    model: TransformerLM,
    tokenizer: Tokenizer,
    prompt: str,
    seed: int,
    autocast: Callable[[], AbstractContextManager[object]],
) -> str:
    """``prompt`` and a continuation of :data:`SAMPLE_TOKENS` tokens (temperature 0.8,
    top-p 0.95, seeded by ``seed``), from ``model`` in eval mode (its mode is restored)."""
    from cs336.generation import sample_text

    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    was_training = model.training
    model.eval()
    try:
        with autocast():
            text = sample_text(
                model, tokenizer, prompt, max_new_tokens=SAMPLE_TOKENS,
                temperature=TEMPERATURE, top_p=TOP_P, generator=generator,
            )  # fmt: skip
    finally:
        model.train(was_training)
    return prompt + text
