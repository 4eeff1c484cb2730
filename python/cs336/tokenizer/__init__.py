"""The byte-level BPE tokenizer: training (:class:`BPETrainer`, :func:`train_bpe`) and
encoding/decoding (:class:`Tokenizer`). The work runs in the Rust extension
(``cs336._core``); these modules hold the API, the checks, the messages and the formats.

- :mod:`~cs336.tokenizer.trainer`: ``BPETrainer`` and ``train_bpe``;
- :mod:`~cs336.tokenizer.tokenizer`: ``Tokenizer`` (encode, decode, files, interop);
- :mod:`~cs336.tokenizer.gpt2_format`: GPT-2's ``vocab.json`` / ``merges.txt``;
- :mod:`~cs336.tokenizer.interop`: tiktoken and Hugging Face ``tokenizer.json``;
- :mod:`~cs336.tokenizer.reference`: the slow, obviously correct BPE the tests compare to.

Nothing here imports torch.
"""

from cs336._core import GPT2_PATTERN
from cs336.tokenizer.tokenizer import EncodeFileStats, Tokenizer
from cs336.tokenizer.trainer import BPETrainer, train_bpe

__all__ = ["GPT2_PATTERN", "BPETrainer", "EncodeFileStats", "Tokenizer", "train_bpe"]
