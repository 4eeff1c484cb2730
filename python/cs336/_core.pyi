"""Type stub of the compiled extension ``cs336._core`` (hand-written; checked against the
module by tests/test_package.py). Users call the wrappers in ``cs336``, not these."""

GPT2_PATTERN: str

# ---- pretokenize (rust/py/pretokenize.rs) ----

def pretokenize(text: str, pattern: str | None = None, *, scanner: bool = True) -> list[str]:
    """The pretokens of ``text``: the successive matches of ``pattern`` (``GPT2_PATTERN``
    when None). The GPT-2 pattern runs a hand-written scanner with identical output;
    ``scanner=False`` forces fancy-regex.

    Raises:
        ValueError: ``pattern`` does not compile.
        UnicodeEncodeError: ``text`` holds a lone surrogate.
    """

def count_pretokens(text: str, pattern: str | None = None, *, scanner: bool = True) -> int:
    """``len(pretokenize(text, pattern, scanner=scanner))`` without building the list (so a
    benchmark times the pretokenizer alone). Raises as ``pretokenize``."""

# ---- train (rust/py/train.rs) ----

# ---- encode (rust/py/encode.rs) ----
