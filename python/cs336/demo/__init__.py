"""``cs336 demo``: the whole pipeline on a fresh machine (:mod:`~cs336.demo.pipeline`),
fed by a built-in generator of children's stories (:mod:`~cs336.demo.stories`)."""

from cs336.demo.pipeline import DemoResult, run_demo, split_corpus

__all__ = ["DemoResult", "run_demo", "split_corpus"]
