"""Sampling from a trained model, with a KV cache: the prompt is run once, then each new
token costs one forward pass over a single position (O(context) attention), not a
re-run of the whole sequence. Several samples are decoded as one batch, and output may
run past the model's context (the window slides; see :func:`generate_samples`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from cs336.nn.functional import softmax
from cs336.nn.layers import no_weight_init
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


def _check_arguments(
    cfg: ModelConfig,
    prompt: list[int],
    max_new_tokens: int,
    num_samples: int,
    temperature: float,
    top_p: float,
) -> None:
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
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")


@torch.no_grad()
def generate_samples(
    model: TransformerLM,
    prompt_ids: Sequence[int] | torch.Tensor,
    max_new_tokens: int,
    num_samples: int = 1,
    temperature: float = 1.0,
    top_p: float = 1.0,
    eos_id: int | None = None,
    generator: torch.Generator | None = None,
) -> list[list[int]]:
    """``num_samples`` continuations of ``prompt_ids``, each of up to ``max_new_tokens``
    sampled tokens, decoded together as one batch.

    Sampling is :func:`sample_next` (``temperature=0``: greedy), row by row. A sample ends
    when it draws ``eos_id`` (not included in it); the batch ends when every sample has.
    With a seeded CPU ``torch.Generator`` the output is deterministic. The model must
    provide ``config.context_length``, ``init_kv_cache(batch_size)`` and
    ``forward(ids, kv_cache=...)`` (as :class:`cs336.nn.model.TransformerLM` does); it runs
    in eval mode and is restored after.

    The model sees at most ``context_length`` tokens. Up to there, the prompt is run once
    and each new token costs one forward pass over a single position against the KV
    cache. Beyond, the window slides: each next token is predicted from the last
    ``context_length`` tokens, re-encoded from position 0 in one forward pass (the KV cache
    is rebuilt every step). That is exactly what re-running the model on the last
    ``context_length`` tokens gives, for any position encoding (learned, RoPE, none).
    Rolling the cache instead (dropping the oldest keys and values) would not be: in a
    model of more than one layer, the kept tokens' keys and values were computed while
    attending to the dropped ones, so they differ from a fresh run on the window. A
    prompt longer than the context is seen through the same window.

    >>> from cs336.nn.model import ModelConfig, TransformerLM
    >>> m = TransformerLM.from_config(ModelConfig(50, 16, 32, 1, 2, 64))
    >>> [len(s) for s in generate_samples(m, [1, 2, 3], 40, 2, temperature=0)]
    [40, 40]

    Raises:
        ValueError: an empty prompt, an id outside the vocabulary, ``temperature < 0``,
            ``top_p`` outside (0, 1], ``max_new_tokens < 0`` or ``num_samples < 1``.
    """
    cfg = model.config
    prompt = [int(t) for t in (prompt_ids.tolist() if torch.is_tensor(prompt_ids) else prompt_ids)]
    _check_arguments(cfg, prompt, max_new_tokens, num_samples, temperature, top_p)
    samples: list[list[int]] = [[] for _ in range(num_samples)]
    if max_new_tokens == 0:
        return samples
    ctx = cfg.context_length
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        window = torch.tensor([prompt[-ctx:]] * num_samples, device=device)  # (N, <= ctx)
        cache = model.init_kv_cache(num_samples)
        logits = model(window, kv_cache=cache)[:, -1]  # (N, V)
        active = list(range(num_samples))
        for step in range(max_new_tokens):
            tokens = [eos_id or 0] * num_samples  # what a finished sample is fed
            for i in active:
                tokens[i] = sample_next(logits[i].float(), temperature, top_p, generator)
                if tokens[i] != eos_id:
                    samples[i].append(tokens[i])
            active = [i for i in active if tokens[i] != eos_id]
            if not active or step == max_new_tokens - 1:  # the last token is not fed back
                break
            column = torch.tensor(tokens, device=device)[:, None]  # (N, 1)
            window = torch.cat([window, column], dim=1)[:, -ctx:]
            if cache.length < ctx:
                logits = model(column, kv_cache=cache)[:, -1]
            else:  # the window slides: re-encode it (see above)
                logits = model(window)[:, -1]
        return samples
    finally:
        model.train(was_training)


def generate(
    model: TransformerLM,
    prompt_ids: Sequence[int] | torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    eos_id: int | None = None,
    generator: torch.Generator | None = None,
) -> list[int]:
    """Continue ``prompt_ids`` with up to ``max_new_tokens`` sampled tokens: one sample of
    :func:`generate_samples` (which see, for the KV cache and the window that slides past
    the model's context).

    Sampling is :func:`sample_next` (``temperature=0``: greedy). Generation stops early
    when ``eos_id`` is sampled; the returned new ids do not include it. With a seeded
    CPU ``torch.Generator`` the output is deterministic.

    >>> from cs336.nn.model import ModelConfig, TransformerLM
    >>> m = TransformerLM.from_config(ModelConfig(50, 16, 32, 1, 2, 64))
    >>> len(generate(m, [1, 2, 3], 5, temperature=0))
    5

    Raises:
        ValueError: an empty prompt, an id outside the vocabulary, ``temperature < 0``,
            ``top_p`` outside (0, 1], or ``max_new_tokens < 0``.
    """
    return generate_samples(
        model, prompt_ids, max_new_tokens, 1, temperature, top_p, eos_id, generator
    )[0]


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
    with no_weight_init():  # every weight is loaded next (strictly): draw none
        model = TransformerLM.from_config(ModelConfig.from_dict(payload["model_config"]))
    model.load_state_dict(payload["model"])
    return model.to(device).eval()


def sample_texts(
    model: TransformerLM,
    tokenizer: Tokenizer,
    prompt: str,
    num_samples: int = 1,
    *,
    max_new_tokens: int | None = None,
    temperature: float = 1.0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
) -> list[str]:
    """Encode ``prompt``, :func:`generate_samples` ``num_samples`` continuations (each
    stopping at ``<|endoftext|>`` when the tokenizer has it) and decode them. An empty
    prompt starts a new document (the prompt is ``<|endoftext|>``).
    ``max_new_tokens=None`` fills the rest of the context; a number may go past it (the
    window slides).

    Raises:
        ValueError: the tokenizer has ids the model does not know, ``max_new_tokens`` is
            None and the prompt leaves no room in the context, or the prompt is empty and
            there is no ``<|endoftext|>`` token.
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
    if max_new_tokens is None:
        max_new_tokens = cfg.context_length + 1 - len(ids)  # the last one is not fed back
        if max_new_tokens < 1:
            raise ValueError(
                f"the prompt is {len(ids)} tokens; the model's context_length is "
                f"{cfg.context_length}, which leaves no room to fill: give a number of new "
                "tokens (the window slides past the context)"
            )
    samples = generate_samples(
        model,
        ids,
        max_new_tokens,
        num_samples,
        temperature=temperature,
        top_p=top_p,
        eos_id=eos_id,
        generator=generator,
    )
    return [tokenizer.decode(new) for new in samples]


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
    """One sample of :func:`sample_texts`: the decoded continuation of ``prompt``.

    Raises:
        ValueError: as :func:`sample_texts`.
    """
    return sample_texts(
        model,
        tokenizer,
        prompt,
        1,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_p=top_p,
        generator=generator,
    )[0]
