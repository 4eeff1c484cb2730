"""BPE training (placeholder until the trainer lands)."""

GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


def train_bpe(*args, **kwargs):
    raise NotImplementedError


class BPETrainer:
    pass
