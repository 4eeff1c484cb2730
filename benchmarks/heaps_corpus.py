"""A corpus of any size whose distinct words keep growing as real text's do (Heaps' law).

Repeating a corpus keeps its count of distinct pretokens flat, which hides exactly what
breaks tokenizer training at scale (memory and hash-table work grow with the distinct
pretokens, not with the bytes). This builds a corpus from the real English text in
``../shared/data`` (the web mix, the TinyStories and the Gutenberg books, split into
documents) that does not:

1. The first ~43 MB are the real documents, shuffled, each once.
2. Then documents are drawn at random from the same pool, and a fraction ``REPLACE`` of
   their words (ASCII letter runs of 3 or more) is replaced by *variants*. A variant is a
   word plus a made-up suffix of syllables (``walk`` -> ``walkmero``). The number of
   distinct variants follows the pool's own Heaps' law: with ``V0`` distinct pretokens in
   the pool's ``N0`` bytes and the exponent ``BETA`` fitted on it, the corpus holds about
   ``V0 * (n / N0) ** BETA`` distinct pretokens after ``n`` bytes. A replacement is a new
   variant when the count of variants is behind that curve, else it reuses an earlier
   variant picked at random from a sample of past replacements (so frequent variants get
   more frequent: Simon's model, which gives Zipf-like counts, most variants rare).

Measured on the pool (GPT-2 pretokens): 21,229 distinct in the first 1 MB, 99,922 in 16 MB,
165,199 in 43.1 MB; BETA = 0.53. The generator is seeded, so the same size gives the same
bytes. Documents end with ``<|endoftext|>`` as in TinyStoriesV2.

    python benchmarks/heaps_corpus.py --size-mb 2100 --out ~/.cache/cs336/scale/heaps_2100.txt
"""

from __future__ import annotations

import argparse
import array
import os
import random
import re
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("CS336_SHARED_DATA", ROOT.parent / "shared" / "data"))
EOT = "<|endoftext|>"
MB = 1_000_000

# The pool's Heaps' law (see the module docs) and the share of words replaced.
N0, V0, BETA = 43_100_000, 165_199, 0.53
REPLACE = 0.02
# Past replacements kept for reuse (a uniform sample of all of them).
RESERVOIR = 1 << 20
SYLLABLES = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]
WORD = re.compile(r"[A-Za-z]{3,}")


def _read(relative: str) -> str:
    import gzip

    plain = DATA / relative
    if plain.exists():
        return plain.read_text(encoding="utf-8")
    with gzip.open(plain.with_name(plain.name + ".gz"), "rt", encoding="utf-8") as f:
        return f.read()


def pool() -> list[str]:
    """The real documents: web mix and TinyStories as they are, the books in pieces of
    20 paragraphs."""
    docs: list[str] = []
    for relative in ("web/web_mix_train.txt", "tinystories/tinystories.txt"):
        docs += [d.strip("\n") for d in _read(relative).split(EOT) if d.strip()]
    for book in _read("books/gutenberg.txt").split(EOT):
        paragraphs = book.strip("\n").split("\n\n")
        docs += ["\n\n".join(paragraphs[i : i + 20]) for i in range(0, len(paragraphs), 20)]
    random.Random(0).shuffle(docs)
    return docs


def suffix(k: int) -> str:
    """The k-th made-up suffix: k in base len(SYLLABLES), at least two syllables."""
    out = []
    k += len(SYLLABLES)
    while k:
        k, r = divmod(k, len(SYLLABLES))
        out.append(SYLLABLES[r])
    return "".join(out)


def documents(size: int, seed: int = 1) -> Iterator[str]:
    """Documents (without the separator) until about ``size`` bytes of UTF-8."""
    docs = pool()
    emitted = 0
    for doc in docs:
        if emitted >= size:
            return
        emitted += len(doc.encode("utf-8")) + len(EOT) + 1
        yield doc
    # Word positions of every document, as flat arrays of (start, end) per document.
    spans = []
    for doc in docs:
        flat = array.array("I")
        for m in WORD.finditer(doc):
            flat.extend(m.span())
        spans.append(flat)
    rng = random.Random(seed)
    reservoir: list[str] = []
    replaced = variants = 0
    while emitted < size:
        i = rng.randrange(len(docs))
        doc, flat = docs[i], spans[i]
        words = len(flat) // 2
        picks = sorted(rng.sample(range(words), min(words, _binomial(rng, words))))
        # Distinct pretokens the curve allows beyond the pool's, after this document.
        target = V0 * ((emitted + len(doc)) / N0) ** BETA - V0
        parts, at = [], 0
        for w in picks:
            start, end = flat[2 * w], flat[2 * w + 1]
            if variants < target or not reservoir:
                word = doc[start:end] + suffix(variants)
                variants += 1
            else:
                word = reservoir[rng.randrange(len(reservoir))]
            replaced += 1
            if len(reservoir) < RESERVOIR:
                reservoir.append(word)
            elif rng.randrange(replaced) < RESERVOIR:
                reservoir[rng.randrange(RESERVOIR)] = word
            parts += (doc[at:start], word)
            at = end
        parts.append(doc[at:])
        out = "".join(parts)
        emitted += len(out.encode("utf-8")) + len(EOT) + 1
        yield out


def _binomial(rng: random.Random, n: int) -> int:
    """About Binomial(n, REPLACE): the mean, rounded at random (cheap, and exact on average)."""
    mean = n * REPLACE
    return int(mean) + (rng.random() < mean - int(mean))


def write(path: Path, size: int, seed: int = 1) -> None:
    """Write the corpus of about ``size`` bytes to ``path`` (through a temporary file, so a
    partial corpus never has the final name)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        for doc in documents(size, seed):
            f.write(doc)
            f.write(EOT + "\n")
    os.replace(tmp, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=float, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    write(args.out, int(args.size_mb * MB), args.seed)
    print(f"wrote {args.out} ({args.out.stat().st_size / MB:.1f} MB)", file=sys.stderr)


if __name__ == "__main__":
    main()
