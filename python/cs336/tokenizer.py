"""The Tokenizer (placeholder until the encoder lands)."""


class Tokenizer:
    pass
