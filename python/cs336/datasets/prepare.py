"""The handouts' corpora by name (:data:`DATASETS`): :func:`fetch` downloads a corpus's
files, :func:`prepare` trains the handout's tokenizer on its training text and writes the
token files where the shipped configs read them (``data/tinystories/train.npy``, ...).

Both skip what is already done: a complete download is not fetched again, an existing
tokenizer is reused (when it is the handout's), existing token files are kept. Outputs
appear complete or not at all: the tokenizer folder is written beside its final name and
renamed into place, the token files are written to temporary files and renamed.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cs336.datasets.downloader import download

__all__ = ["DATASETS", "EOT", "Dataset", "Prepared", "fetch", "prepare"]

EOT = "<|endoftext|>"
_HF = "https://huggingface.co/datasets"


@dataclass(frozen=True)
class Dataset:
    """A corpus of the handouts: where its files come from and what its tokenizer is."""

    name: str
    description: str
    #: split ("train", "valid") -> URL
    urls: dict[str, str]
    #: the handout's vocabulary size for this corpus (with ``<|endoftext|>``)
    vocab_size: int
    #: prepared files go to ``DIR/folder/{tokenizer/, train.npy, valid.npy}``
    folder: str


DATASETS: dict[str, Dataset] = {
    "tinystories": Dataset(
        "tinystories",
        "TinyStoriesV2-GPT4: 2.1 GB of training text, 22 MB of validation text",
        {
            "train": f"{_HF}/roneneldan/TinyStories/resolve/main/TinyStoriesV2-GPT4-train.txt",
            "valid": f"{_HF}/roneneldan/TinyStories/resolve/main/TinyStoriesV2-GPT4-valid.txt",
        },
        10_000,
        "tinystories",
    ),
    "owt-sample": Dataset(
        "owt-sample",
        "the CS336 OpenWebText sample: 11 GB of training text and its validation text (gzip)",
        {
            "train": f"{_HF}/stanford-cs336/owt-sample/resolve/main/owt_train.txt.gz",
            "valid": f"{_HF}/stanford-cs336/owt-sample/resolve/main/owt_valid.txt.gz",
        },
        32_000,
        "owt",
    ),
}


@dataclass(frozen=True)
class Prepared:
    """Where :func:`prepare` put the tokenizer and the token files."""

    tokenizer: Path
    train: Path
    valid: Path


def _say(line: str) -> None:
    print(line, file=sys.stderr)


def fetch(dataset: Dataset, directory: str | os.PathLike[str], **options: Any) -> dict[str, Path]:
    """Download every file of ``dataset`` into ``directory``; returns split -> text file.
    ``options`` go to :func:`~cs336.datasets.downloader.download`."""
    return {split: download(url, directory, **options) for split, url in dataset.urls.items()}


def prepare(
    dataset: Dataset,
    directory: str | os.PathLike[str],
    texts: dict[str, Path],
    *,
    num_threads: int | None = None,
    show_progress: bool = True,
    log: Callable[[str], None] = _say,
) -> Prepared:
    """Train the handout's tokenizer for ``dataset`` on ``texts["train"]`` into
    ``directory/FOLDER/tokenizer`` and encode ``texts["train"]`` and ``texts["valid"]`` into
    ``directory/FOLDER/train.npy`` and ``valid.npy``, skipping what exists.

    Raises ValueError when an existing tokenizer folder is not the handout's tokenizer.
    """
    from cs336._files import atomic_dir
    from cs336.tokenizer import BPETrainer, Tokenizer
    from cs336.tokenizer.gpt2_format import write_dir

    out = Path(directory) / dataset.folder
    tokenizer_dir = out / "tokenizer"
    if tokenizer_dir.exists():
        tokenizer = Tokenizer.from_dir(tokenizer_dir)
        if tokenizer.vocab_size != dataset.vocab_size or tokenizer.special_tokens != [EOT]:
            raise ValueError(
                f"{tokenizer_dir} holds a tokenizer of {tokenizer.vocab_size} tokens with "
                f"special tokens {tokenizer.special_tokens}, not the handout's "
                f"{dataset.vocab_size} with {EOT!r}: move it away or use another --dir"
            )
        log(f"{tokenizer_dir} is already there (the handout's {dataset.vocab_size} tokens)")
    else:
        log(f"training the {dataset.vocab_size}-token tokenizer on {texts['train']}")
        trainer = BPETrainer(
            dataset.vocab_size, [EOT], num_threads=num_threads, show_progress=show_progress
        )
        vocab, merges = trainer.train_raw(texts["train"])
        with atomic_dir(tokenizer_dir) as building:  # whole, or not there at all
            write_dir(building, vocab, merges, [EOT])
        tokenizer = Tokenizer(vocab, merges, [EOT])
        log(f"wrote {tokenizer_dir}")
    paths = {}
    for split in ("train", "valid"):
        npy = out / f"{split}.npy"
        paths[split] = npy
        if npy.exists():
            log(f"{npy} is already there")
            continue
        stats = tokenizer.encode_file(
            texts[split], npy, num_threads=num_threads, show_progress=show_progress
        )
        log(f"wrote {npy}: {stats.tokens:,} tokens, {stats.mb_per_second:.0f} MB/s")
    return Prepared(tokenizer_dir, paths["train"], paths["valid"])
