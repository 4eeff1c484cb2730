"""Getting the handouts' corpora: :func:`download` (any http(s) file, resumable, ``.gz``
decompressed as it streams and checked), :data:`DATASETS` (TinyStories and the CS336
OpenWebText sample by name), :func:`fetch` (download a corpus) and :func:`prepare` (train the
handout's tokenizer and write the token files where the shipped configs read them).

- :mod:`~cs336.datasets.downloader`: the resumable downloader;
- :mod:`~cs336.datasets.prepare`: the corpora, fetching and preparing them.

Nothing here imports torch.
"""

from cs336.datasets.downloader import DownloadError, download
from cs336.datasets.prepare import DATASETS, Dataset, Prepared, fetch, prepare

__all__ = ["DATASETS", "Dataset", "DownloadError", "Prepared", "download", "fetch", "prepare"]
