"""Type stub of the compiled extension ``cs336._core`` (hand-written; checked against the
module by tests/test_package.py). Users call the wrappers in ``cs336``, not these."""

GPT2_PATTERN: str

# ---- pretokenize (rust/py/pretokenize.rs) ----

# ---- train (rust/py/train.rs) ----

# ---- encode (rust/py/encode.rs) ----
