"""Sampling from a trained model, with a KV cache: the prompt is run once, then each new
token costs one forward pass over a single position (O(context) attention), not a
re-run of the whole sequence.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from cs336.nn.functional import softmax
from cs336.nn.model import ModelConfig, TransformerLM
from cs336.training.checkpoint import read_checkpoint

if TYPE_CHECKING:
    from cs336.tokenizer import Tokenizer


def sample_next(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
) -> int:
    """One token id from 1-D ``logits``.

    ``temperature == 0`` is greedy decoding (the arg-max; ties go to the lowest id).
    Otherwise the distribution is ``softmax(logits / temperature)`` restricted to its
    nucleus: the smallest set of most likely tokens whose probabilities sum to at least
    ``top_p`` (Holtzman et al., 2020), renormalized. ``top_p == 1`` keeps every token.

    >>> sample_next(torch.tensor([0.1, 3.0, 0.2]), temperature=0)
    1
    """
    if temperature == 0:
        return int(torch.argmax(logits))
    probs = softmax(logits.double() / temperature, dim=-1)
    if top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        # Drop a token when the tokens before it already reach top_p (the first is kept).
        drop = torch.cumsum(sorted_probs, dim=-1) - sorted_probs >= top_p
        sorted_probs[drop] = 0.0
        probs = torch.zeros_like(probs).scatter_(-1, order, sorted_probs)
    return int(torch.multinomial(probs.cpu(), 1, generator=generator))  # a CPU generator


@torch.no_grad()
def generate(
    model: TransformerLM,
    prompt_ids: Sequence[int] | torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    eos_id: int | None = None,
    generator: torch.Generator | None = None,
) -> list[int]:
    """Continue ``prompt_ids`` with up to ``max_new_tokens`` sampled tokens.

    Sampling is :func:`sample_next` (``temperature=0``: greedy). Generation stops early
    when ``eos_id`` is sampled; the returned new ids do not include it. With a seeded
    CPU ``torch.Generator`` the output is deterministic. The model must provide
    ``init_kv_cache(batch_size)`` and ``forward(ids, kv_cache=...)`` (as
    :class:`cs336.nn.model.TransformerLM` does); it runs in eval mode and is restored after.

    >>> from cs336.nn.model import ModelConfig, TransformerLM
    >>> m = TransformerLM.from_config(ModelConfig(50, 16, 32, 1, 2, 64))
    >>> len(generate(m, [1, 2, 3], 5, temperature=0))
    5

    The model sees the prompt and every new token but the last (which is only
    sampled), so ``len(prompt_ids) + max_new_tokens`` may reach ``context_length + 1``:
    a prompt of exactly ``context_length`` tokens gets one more.

    Raises:
        ValueError: an empty prompt, an id outside the vocabulary, ``temperature < 0``,
            ``top_p`` outside (0, 1], ``max_new_tokens < 0``, or a prompt longer than
            the model's context_length, or one that leaves fewer positions than
            ``max_new_tokens - 1``.
    """
    cfg = model.config
    prompt = [int(t) for t in (prompt_ids.tolist() if torch.is_tensor(prompt_ids) else prompt_ids)]
    if not prompt:
        raise ValueError("the prompt must hold at least one token id")
    bad = [t for t in prompt if not 0 <= t < cfg.vocab_size]
    if bad:
        raise ValueError(
            f"prompt token id {bad[0]} is outside the vocabulary (size {cfg.vocab_size})"
        )
    if not temperature >= 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    # the last new token is never fed back: the model sees len(prompt) + max_new - 1 tokens
    if len(prompt) + max(max_new_tokens - 1, 0) > cfg.context_length:
        raise ValueError(
            f"prompt ({len(prompt)} tokens) + max_new_tokens ({max_new_tokens}) is longer than "
            f"the model's context_length ({cfg.context_length}) + 1"
        )
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        cache = model.init_kv_cache(1)
        new: list[int] = []
        inputs = torch.tensor([prompt], dtype=torch.long, device=device)  # (1, T)
        for _ in range(max_new_tokens):
            logits = model(inputs, kv_cache=cache)[0, -1]  # (V,)
            token = sample_next(logits.float(), temperature, top_p, generator)
            if token == eos_id:
                break
            new.append(token)
            inputs = torch.tensor([[token]], dtype=torch.long, device=device)  # (1, 1)
        return new
    finally:
        model.train(was_training)


# ---------------------------------------------------------------------------------------------
# From a checkpoint and a tokenizer (used by `cs336 generate` and the demo)

EOT = "<|endoftext|>"


def load_model(
    checkpoint: str | os.PathLike[str], device: str | torch.device = "cpu"
) -> TransformerLM:
    """The :class:`~cs336.nn.model.TransformerLM` saved in ``checkpoint``, on ``device``, in
    eval mode. ``checkpoint`` is a checkpoint (``checkpoint.pt``, with its weights inside
    or in the ``model.safetensors`` beside it) or a cs336 weights file alone
    (``model.safetensors``: no pickle), see :func:`~cs336.training.checkpoint.read_checkpoint`.

    Raises:
        FileNotFoundError: ``checkpoint`` (or its weights file) does not exist.
        ValueError: the file is corrupt or holds no model config.
        RuntimeError: a weights file is to be read and safetensors is not installed.
    """
    payload = read_checkpoint(checkpoint)
    if not payload["model_config"]:
        raise ValueError(f"{os.fspath(checkpoint)} holds no model config; cannot rebuild the model")
    model = TransformerLM.from_config(ModelConfig.from_dict(payload["model_config"]))
    model.load_state_dict(payload["model"])
    return model.to(device).eval()


def sample_text(
    model: TransformerLM,
    tokenizer: Tokenizer,
    prompt: str,
    *,
    max_new_tokens: int | None = None,
    temperature: float = 1.0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
) -> str:
    """Encode ``prompt``, :func:`generate` a continuation (stopping at ``<|endoftext|>``
    when the tokenizer has it) and decode it. An empty prompt starts a new document
    (the prompt is ``<|endoftext|>``). ``max_new_tokens=None`` fills the context.

    Raises:
        ValueError: the tokenizer has ids the model does not know, the prompt does not fit
            in the model's context, or the prompt is empty and there is no
            ``<|endoftext|>`` token.
    """
    cfg = model.config
    tokenizer_size = tokenizer.vocab_size
    if tokenizer_size > cfg.vocab_size:
        raise ValueError(
            f"the tokenizer has {tokenizer_size} tokens but the model's vocab_size is "
            f"{cfg.vocab_size}: they were not trained together"
        )
    eos_id = tokenizer.encode(EOT)[0] if EOT in tokenizer.special_tokens else None
    ids = tokenizer.encode(prompt)
    if not ids:
        if eos_id is None:
            raise ValueError(f"the prompt is empty and the tokenizer has no {EOT} token")
        ids = [eos_id]
    room = cfg.context_length + 1 - len(ids)  # the last new token is not fed back
    if room < 1:
        raise ValueError(
            f"the prompt is {len(ids)} tokens; the model's context_length is "
            f"{cfg.context_length}, which leaves no room to generate"
        )
    new = generate(
        model,
        ids,
        room if max_new_tokens is None else max_new_tokens,
        temperature=temperature,
        top_p=top_p,
        eos_id=eos_id,
        generator=generator,
    )
    return tokenizer.decode(new)
