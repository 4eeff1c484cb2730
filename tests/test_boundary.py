"""The one safe-cut rule (``_core.safe_cuts``, used by the trainer, ``encode_iterable`` and
``encode_file``): cutting anywhere it allows gives the pretokens of the whole text, in every
script, and it allows cuts often in text without spaces."""

from __future__ import annotations

import pytest
from conftest import corpora
from hypothesis import given
from hypothesis import strategies as st

from cs336._core import pretokenize, safe_cuts
from cs336.tokenizer.reference import split_on_special_tokens

# CJK with full-width punctuation, kana, Thai (combining vowel signs), Cyrillic, combining
# marks, NBSP and other Unicode whitespace, apostrophes and contractions, digits,
# whitespace runs, \r\n, emoji, and special tokens (two of which overlap).
PIECES = [
    "中文", "汉字", "，", "。", "！", "“", "ひらがな", "カタカナ", "ー", "ภาษา", "ที่", "ไทย",
    "Привет", "мир", "ё", "e\u0301", "\u0301", "\u0308", "\u00a0", "\u3000", "\u2028", "\u0085",
    "'", "'s", "'ll", "'re", "don't", "1", "42", "٣", "½", " ", "  ", "   ", "\t", "\n", "\n\n",
    "\r\n", "\x0b", "word", "Word", "!", "?!", "-", "😀", "<s>", "s>x", "<|endoftext|>", "x",
]  # fmt: skip
SPECIALS = [[], ["<|endoftext|>"], ["<s>", "<s><s>", "s>x"]]
text_of_every_script = st.lists(st.sampled_from(PIECES), max_size=40).map("".join) | st.text(
    max_size=30
)


def split(text: str, specials: list[str], pattern: str | None) -> list[str | int]:
    """What the trainer and the encoder see: special tokens, and the pretokens between."""
    out: list[str | int] = []
    for piece in split_on_special_tokens(text, specials):
        if isinstance(piece, int):
            out.append(piece)
        else:
            out.extend(pretokenize(piece, pattern))
    return out


@given(text=text_of_every_script, specials=st.sampled_from(SPECIALS))
def test_every_safe_cut_gives_the_pretokens_of_the_whole(text, specials):
    whole = split(text, specials, None)
    cuts = safe_cuts(text, specials)
    assert cuts == sorted(set(cuts)) and all(0 < c < len(text) for c in cuts)
    for cut in cuts:
        assert split(text[:cut], specials, None) + split(text[cut:], specials, None) == whole
    # All the cuts at once, too.
    bounds = [0, *cuts, len(text)]
    pieces = [text[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    assert [p for piece in pieces for p in split(piece, specials, None)] == whole


LOOKAROUND = r"(?<=[0-9])[0-9]|[0-9]| ?[a-z]+(?=[ .,!?])| ?[a-z]+|\s+(?!\S)|\s+|\S"


@given(text=text_of_every_script, specials=st.sampled_from(SPECIALS))
def test_custom_patterns_are_cut_only_after_special_tokens(text, specials):
    cuts = safe_cuts(text, specials, LOOKAROUND)
    if not specials:
        assert cuts == []
    whole = split(text, specials, LOOKAROUND)
    for cut in cuts:
        assert any(text[:cut].endswith(s) for s in specials)
        assert (
            split(text[:cut], specials, LOOKAROUND) + split(text[cut:], specials, LOOKAROUND)
            == whole
        )


# The longest stretch without a safe cut allowed in each text (in characters).
MAX_GAP = {"multilingual/tinystories_ru.txt": 40, "multilingual/multilingual_mix.txt": 400}


@pytest.mark.parametrize("relative", corpora(list(MAX_GAP)))
def test_cuts_are_frequent_in_real_text_of_other_scripts(shared_data, relative):
    max_gap = MAX_GAP[relative]
    text = shared_data(relative).read_text(encoding="utf-8")[:200_000]
    cuts = [0, *safe_cuts(text, ["<|endoftext|>"]), len(text)]
    gaps = [b - a for a, b in zip(cuts, cuts[1:], strict=False)]
    assert max(gaps) <= max_gap
    assert len(cuts) > len(text) / 12


def test_cuts_in_chinese_and_japanese_without_spaces():
    chinese = (
        "从前有一座山，山上有一座庙。庙里有一个老和尚和一个小和尚！\n\n第二天，小和尚问：为什么？"
    )
    japanese = "むかしむかし、あるところにおじいさんとおばあさんがいました。"
    for text in (chinese, japanese):
        cuts = [0, *safe_cuts(text), len(text)]
        # The longest gap is a clause of kana: one GPT-2 pretoken, which no cut may split.
        assert max(b - a for a, b in zip(cuts, cuts[1:], strict=False)) <= 25
