"""One Tokenizer shared by many Python threads gives the same results as one thread (the
extension releases the GIL and the encoder is immutable)."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor

import pytest

from cs336 import Tokenizer

EOT = "<|endoftext|>"


@pytest.fixture(scope="module")
def gpt2(shared_data) -> Tokenizer:
    return Tokenizer.from_files(
        shared_data("gpt2/vocab.json"), shared_data("gpt2/merges.txt"), [EOT]
    )


@pytest.fixture(scope="module")
def texts(shared_data) -> list[str]:
    text = shared_data("multilingual/multilingual_mix.txt").read_text(encoding="utf-8")
    return [t for t in text.split(EOT) if t][:80]


@pytest.mark.timeout(120)
def test_threads_sharing_a_tokenizer_agree_with_one_thread(gpt2, texts):
    expected = [gpt2.encode(t) for t in texts]

    def work(seed: int) -> bool:
        rng = random.Random(seed)
        for _ in range(150):
            i = rng.randrange(len(texts))
            kind = rng.randrange(4)
            if kind == 0:
                ok = gpt2.encode(texts[i]) == expected[i]
            elif kind == 1:
                chunks = [texts[i][j : j + 7] for j in range(0, len(texts[i]), 7)]
                ok = list(gpt2.encode_iterable(chunks)) == expected[i]
            elif kind == 2:
                batch = rng.sample(range(len(texts)), 5)
                ok = gpt2.encode_batch([texts[k] for k in batch], num_threads=2) == [
                    expected[k] for k in batch
                ]
            else:
                ok = gpt2.decode(expected[i]) == texts[i]
            if not ok:
                return False
        return True

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert all(pool.map(work, range(32)))
