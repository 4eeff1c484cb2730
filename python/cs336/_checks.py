"""Argument checks shared by the trainer and the tokenizer, with messages that name the
bad value."""

from __future__ import annotations

from collections.abc import Iterable


def special_tokens(tokens: Iterable[str] | None) -> list[str]:
    """The special tokens as a list: each a non-empty str, none twice (None means none)."""
    if tokens is None:
        return []
    if isinstance(tokens, str):
        raise TypeError(
            "special_tokens must be a list of str, not a single str (pass [token], not a str)"
        )
    specials = list(tokens)
    seen: set[str] = set()
    for token in specials:
        if not isinstance(token, str):
            raise TypeError(f"special tokens must be str, got {token!r}")
        if not token:
            raise ValueError("special tokens must not be empty strings")
        if token in seen:
            raise ValueError(f"special token {token!r} is given more than once")
        seen.add(token)
    return specials


def num_threads(value: int | None) -> int | None:
    """A thread count: a positive int, or None for all cores."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"num_threads must be a positive int or None, got {value!r}")
    return value


def pattern(value: object) -> str:
    """A pretokenization regex: a non-empty str (an empty one matches no text, so every
    text would encode to nothing and training would learn no merge)."""
    if not isinstance(value, str):
        raise TypeError(f"pattern must be a str, got {type(value).__name__}")
    if not value:
        raise ValueError("pattern is empty: it matches no text; give a pretokenization regex")
    return value


def nonnegative(**values: float) -> None:
    """Raise ``ValueError`` naming the first of ``values`` that is negative or NaN.

    >>> nonnegative(lr=1e-3, eps=-1.0)
    Traceback (most recent call last):
    ...
    ValueError: eps must be >= 0, got -1.0
    """
    for name, value in values.items():
        if not value >= 0.0:  # also rejects NaN
            raise ValueError(f"{name} must be >= 0, got {value}")
