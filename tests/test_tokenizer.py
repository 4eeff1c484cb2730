"""Tokenizer: construction, encode / encode_iterable / encode_batch / decode semantics, bad
input, and the Rust encoder against ``reference_bpe.encode``."""

from __future__ import annotations

import doctest
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

import cs336.tokenizer.tokenizer
from cs336 import GPT2_PATTERN, Tokenizer
from cs336.tokenizer import reference as reference_bpe

EOT = "<|endoftext|>"
BYTES = {i: bytes([i]) for i in range(256)}

# Text that exercises every pretokenizer branch: letters, digits, punctuation, contractions,
# runs of mixed whitespace, multi-byte and non-Latin characters, and special tokens.
ALPHABET = st.sampled_from(
    list("ab xyz01' \t\n\r\x0b\x0c.,!?é日本\u0085\u2028\u00a0🙂") + ["'s", "'ll", EOT, "<|end"]
)
TEXT = st.lists(ALPHABET, max_size=60).map("".join)


@pytest.fixture(scope="module")
def gpt2(shared_data) -> Tokenizer:
    return Tokenizer.from_files(
        shared_data("gpt2/vocab.json"), shared_data("gpt2/merges.txt"), [EOT]
    )


@pytest.fixture(scope="module")
def trained() -> tuple[dict[int, bytes], list[tuple[bytes, bytes]], list[str]]:
    """A small vocabulary from the reference trainer (ids: bytes, merges, specials)."""
    corpus = (
        "low lower lowest newer newest wider widest. The cat's hat isn't here; "
        "they'll say 1234 and 56, 7. \n\n  Tabs\tand  spaces   end.  "
        * 3
        + EOT
        + " Ünïcödé 日本語 テキスト 🙂🙂 "
    )
    vocab, merges = reference_bpe.train(corpus, 256 + 60 + 1, [EOT])
    return vocab, merges, [EOT]


@pytest.fixture(scope="module")
def small(trained) -> Tokenizer:
    return Tokenizer(*trained)


def test_docstring_examples():
    result = doctest.testmod(cs336.tokenizer.tokenizer)
    assert result.attempted > 5 and result.failed == 0


# ---- construction


def test_special_tokens_missing_from_the_vocab_are_appended():
    tok = Tokenizer(BYTES | {256: b"ab"}, [(b"a", b"b")], ["<s>", "</s>"])
    assert tok.special_token_ids == {"<s>": 257, "</s>": 258}
    assert tok.vocab[257] == b"<s>" and tok.vocab_size == len(tok) == 259
    assert tok.encode("ab<s>a</s>") == [256, 257, 97, 258]


def test_a_special_token_already_in_the_vocab_keeps_its_id(gpt2):
    assert gpt2.special_token_ids == {EOT: 50256}
    assert gpt2.vocab_size == 50257


def test_properties_are_copies(small):
    small.vocab[0] = b"changed"
    small.merges.clear()
    small.special_tokens.clear()
    assert small.vocab[0] == b"\x00" and small.merges and small.special_tokens == [EOT]
    assert "vocab_size=317" in repr(small)


@pytest.mark.parametrize(
    ("vocab", "merges", "specials", "error", "message"),
    [
        ({i: bytes([i]) for i in range(255)}, [], None, ValueError, "byte 0xff"),
        (BYTES, [(b"a", b"b")], None, ValueError, "merge 0"),
        (BYTES | {256: b"ab"}, [(b"a", b"zz")], None, ValueError, "zz"),
        (BYTES, [], [""], ValueError, "empty"),
        (BYTES, [], ["<s>", "<s>"], ValueError, "<s>"),
        (BYTES, [], "<s>", TypeError, "not a str"),
        (BYTES, [], [b"<s>"], TypeError, "must be str"),
        ([(0, b"a")], [], None, TypeError, "dict"),
        (BYTES | {256: "ab"}, [], None, TypeError, r"vocab\[256\]"),
        (BYTES | {-1: b"x"}, [], None, ValueError, "-1"),
        (BYTES, [(b"a", "b")], None, TypeError, r"merges\[0\]"),
        (BYTES, [(b"a",)], None, TypeError, r"merges\[0\]"),
    ],
)
def test_bad_models_are_rejected(vocab, merges, specials, error, message):
    with pytest.raises(error, match=message):
        Tokenizer(vocab, merges, specials)


def test_merges_may_be_lists_as_from_json():
    tok = Tokenizer(BYTES | {256: b"ab"}, [[b"a", b"b"]])
    assert tok.encode("ab") == [256]


def test_duplicate_token_bytes_encode_to_the_larger_id_like_the_reference():
    vocab = BYTES | {256: b"ab", 257: b"bc", 258: b"abc", 259: b"abc"}
    merges = [(b"a", b"b"), (b"b", b"c"), (b"ab", b"c"), (b"a", b"bc")]
    tok = Tokenizer(vocab, merges)
    for text in ["abc", "bc abc", "aabcc"]:
        assert tok.encode(text) == reference_bpe.encode(text, vocab, merges)
    assert tok.decode([258, 259]) == "abcabc"


# ---- encode


def test_gpt2_known_ids(gpt2):
    assert gpt2.encode("Hello world") == [15496, 995]
    assert gpt2.encode(f"Hello{EOT}world") == [15496, 50256, 6894]
    assert gpt2.encode("") == []


def test_longest_overlapping_special_token_wins(shared_data):
    double = EOT * 2
    tok = Tokenizer.from_files(
        shared_data("gpt2/vocab.json"), shared_data("gpt2/merges.txt"), [EOT, double]
    )
    ids = tok.encode(f"a{EOT}{EOT}{EOT}b")
    assert ids == [64, tok.special_token_ids[double], 50256, 65]
    assert tok.decode(ids) == f"a{EOT}{EOT}{EOT}b"


def test_an_ordinary_token_made_special_keeps_its_id_and_merges(gpt2, shared_data):
    tok = Tokenizer.from_files(
        shared_data("gpt2/vocab.json"), shared_data("gpt2/merges.txt"), ["the", "\n"]
    )
    assert tok.special_token_ids == {"the": 1169, "\n": 198}
    text = "the theater\n\nthe bathe"
    ids = tok.encode(text)
    assert ids == reference_bpe.encode(text, tok.vocab, tok.merges, tok.special_tokens)
    assert ids[:4] == [1169, 220, 1169, 729]  # "the", " ", "the", "ater"
    assert tok.decode(ids) == text


def test_no_merge_crosses_a_special_token():
    tok = Tokenizer(BYTES | {256: b"ab"}, [(b"a", b"b")], ["<s>"])
    assert tok.encode("a<s>b") == [97, 257, 98]


def test_long_runs_are_not_quadratic_and_round_trip(gpt2):
    for text in ["a" * 1_000_000, " " * 200_000, "ab" * 100_000, "日" * 100_000]:
        ids = gpt2.encode(text)
        assert gpt2.decode(ids) == text


@given(text=TEXT)
def test_round_trip(gpt2, small, text):
    assert gpt2.decode(gpt2.encode(text)) == text
    assert small.decode(small.encode(text)) == text


@given(text=st.text(st.characters(exclude_categories=["Cs"]), max_size=40))
def test_round_trip_any_unicode(gpt2, text):
    assert gpt2.decode(gpt2.encode(text)) == text


@given(text=TEXT)
def test_encoder_equals_the_reference(trained, small, text):
    vocab, merges, specials = trained
    assert small.encode(text) == reference_bpe.encode(text, vocab, merges, specials)


@given(
    corpus=st.lists(st.sampled_from(["ab", "ba", "aab", " ab", "b", " ", "\n"]), max_size=30),
    text=st.lists(st.sampled_from(["a", "b", "ab", " ", "bb"]), max_size=150).map("".join),
    extra=st.integers(1, 40),
)
def test_encoder_equals_the_reference_on_random_vocabularies(corpus, text, extra):
    """Random trained models on a tiny alphabet, so pretokens run long (> 64 bytes) and
    both merge loops (linear scan and heap) are compared with the reference."""
    vocab, merges = reference_bpe.train("".join(corpus) * 3, 256 + extra)
    assert Tokenizer(vocab, merges).encode(text) == reference_bpe.encode(text, vocab, merges)


# ---- encode_iterable


def assert_iterable_equals_encode(tok, text, data):
    """encode_iterable == encode for every two-way split, a drawn chunking, and one
    character at a time."""
    expected = tok.encode(text)
    for cut in range(len(text) + 1):
        assert list(tok.encode_iterable([text[:cut], text[cut:]])) == expected
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=8)))
    chunks = [text[a:b] for a, b in itertools.pairwise([0, *cuts, len(text)])]
    assert list(tok.encode_iterable(chunks)) == expected
    assert list(tok.encode_iterable(iter(text))) == expected


@given(text=TEXT, data=st.data())
def test_encode_iterable_equals_encode_at_every_split(gpt2, small, text, data):
    for tok in (gpt2, small):
        assert_iterable_equals_encode(tok, text, data)


def test_encode_iterable_over_a_file(gpt2, tmp_path):
    text = (f"Once upon a time, there was a cat.\n\n  It's 12:30 日本{EOT}\r\n" * 500) + "end"
    path = tmp_path / "t.txt"
    path.write_text(text, encoding="utf-8", newline="")
    with open(path, encoding="utf-8", newline="") as f:
        assert list(gpt2.encode_iterable(f)) == gpt2.encode(text)


def test_encode_iterable_is_lazy(gpt2):
    endless = itertools.repeat("the cat sat on the mat. ")
    ids = list(itertools.islice(gpt2.encode_iterable(endless), 1000))
    assert gpt2.decode(ids).startswith("the cat sat on the mat. the cat")


def test_encode_iterable_bad_input(gpt2):
    with pytest.raises(TypeError, match="use encode"):
        gpt2.encode_iterable("text")
    with pytest.raises(TypeError, match="bytes chunk"):
        list(gpt2.encode_iterable(["a", b"b"]))


# ---- encode_batch


@given(texts=st.lists(TEXT, max_size=12))
def test_encode_batch_equals_encode(gpt2, texts):
    expected = [gpt2.encode(t) for t in texts]
    assert gpt2.encode_batch(texts) == expected
    assert gpt2.encode_batch(iter(texts), num_threads=2) == expected


@pytest.mark.parametrize("threads", [0, -1, 1.5, True, "2"])
def test_encode_batch_rejects_bad_thread_counts(gpt2, threads):
    with pytest.raises(ValueError, match="num_threads"):
        gpt2.encode_batch(["a"], num_threads=threads)


def test_encode_batch_rejects_non_str(gpt2):
    with pytest.raises(TypeError, match=r"texts\[1\]"):
        gpt2.encode_batch(["a", 1])


# ---- bad input to encode


@pytest.mark.parametrize("value", [b"bytes", None, 3, ["a"]])
def test_encode_rejects_non_str(gpt2, value):
    with pytest.raises(TypeError, match="takes a str"):
        gpt2.encode(value)


def test_lone_surrogates_are_a_unicode_error(gpt2):
    with pytest.raises(UnicodeEncodeError):
        gpt2.encode("a\ud800b")


# ---- decode


def test_decode_replaces_malformed_utf8(gpt2):
    ids = gpt2.encode("日")  # three bytes, split over tokens
    assert len(ids) > 1
    assert gpt2.decode(ids[:1]) == "\ufffd"
    assert gpt2.decode_bytes(ids) == "日".encode()
    assert gpt2.decode([]) == "" and gpt2.decode_bytes([]) == b""
    assert gpt2.decode(iter([15496, 995])) == "Hello world"


@pytest.mark.parametrize("bad", [50257, 2**32 - 1, 2**32, 2**70, -1])
def test_decode_unknown_ids_name_them(gpt2, bad):
    with pytest.raises(ValueError, match=rf"token id {bad} is not in the vocabulary"):
        gpt2.decode([15496, bad])


def test_decode_gaps_in_ids_are_unknown():
    tok = Tokenizer(BYTES | {300: b"ab"}, [(b"a", b"b")])
    assert tok.encode("ab") == [300]
    with pytest.raises(ValueError, match="token id 256 "):
        tok.decode([256])


def test_sparse_ids_cost_memory_by_the_number_of_tokens(tmp_path):
    # 257 tokens, the largest id 2**24: built at once (no table of 2**24 entries), and the
    # tokenizer and its core agree on the size.
    import numpy as np

    tok = Tokenizer(BYTES | {2**24: b"<big>"}, [], ["<big>"])
    assert tok.vocab_size == tok._core.vocab_size == 257
    assert tok.encode("a<big>") == [97, 2**24]
    assert tok.decode([2**24, 98]) == "<big>b"
    src = tmp_path / "in.txt"
    src.write_text("x<big>y")
    tok.encode_file(src, tmp_path / "ids.npy")
    ids = np.load(tmp_path / "ids.npy")
    assert ids.dtype == np.uint32 and ids.tolist() == [120, 2**24, 121]


@pytest.mark.parametrize("bad", ["a", 1.5, None])
def test_decode_rejects_non_int(gpt2, bad):
    with pytest.raises(TypeError, match="token ids must be int"):
        gpt2.decode([1, bad])


# ---- encode_file


def write(path, text: str):
    path.write_bytes(text.encode("utf-8"))
    return path


def test_encode_file_equals_encode_and_loads_with_mmap(gpt2, tmp_path):
    np = pytest.importorskip("numpy")
    # > 1 MB so the file is cut into several blocks encoded in parallel.
    text = f"Once upon a time, Ünïcödé 日本 and 12,345 cats.\n\n  It's{EOT}\r\n\x0b" * 30_000
    out = tmp_path / "ids.npy"
    stats = gpt2.encode_file(write(tmp_path / "in.txt", text), out, num_threads=2)
    ids = np.load(out, mmap_mode="r")
    assert ids.dtype == np.uint16 and ids.tolist() == gpt2.encode(text)
    assert (stats.path, stats.bytes, stats.tokens, stats.dtype) == (
        out,
        len(text.encode()),
        len(ids),
        "uint16",
    )
    assert stats.bytes_per_token > 1 and stats.mb_per_second > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ids.npy", "in.txt"]


def test_encode_file_with_multibyte_chars_across_read_blocks(gpt2, tmp_path):
    np = pytest.importorskip("numpy")
    # 5-byte units: the 8 MiB read boundary (2 threads) falls inside a 2-byte char.
    text = "éé " * 1_800_000
    out = tmp_path / "ids.npy"
    gpt2.encode_file(write(tmp_path / "in.txt", text), out, num_threads=2)
    assert np.load(out, mmap_mode="r").tolist() == gpt2.encode(text)


@pytest.mark.parametrize("text", ["", "a", EOT, " " * 3_000_000])
def test_encode_file_edge_cases(gpt2, tmp_path, text):
    np = pytest.importorskip("numpy")
    out = tmp_path / "ids.npy"
    gpt2.encode_file(write(tmp_path / "in.txt", text), out, show_progress=True)
    assert np.load(out, mmap_mode="r").tolist() == gpt2.encode(text)


def test_encode_file_uses_uint32_when_ids_do_not_fit_in_16_bits(tmp_path):
    np = pytest.importorskip("numpy")
    tok = Tokenizer(BYTES | {70_000: b"<big>"}, [], ["<big>"])
    out = tmp_path / "ids.npy"
    assert tok.encode_file(write(tmp_path / "in.txt", "a<big>b"), out).dtype == "uint32"
    ids = np.load(out, mmap_mode="r")
    assert ids.dtype == np.uint32 and ids.tolist() == [97, 70_000, 98]


@pytest.mark.parametrize(
    ("data", "offset"), [(b"abc \xff def", 4), (b"ok" * 10 + b"\xe6\x97", 20), (b"\xc3(", 0)]
)
def test_encode_file_invalid_utf8_leaves_no_output(gpt2, tmp_path, data, offset):
    src = tmp_path / "in.txt"
    src.write_bytes(data)
    out = tmp_path / "ids.npy"
    out.write_bytes(b"previous")
    with pytest.raises(UnicodeError, match=f"offset {offset}"):
        gpt2.encode_file(src, out)
    assert out.read_bytes() == b"previous"  # untouched, and no temporary file left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ids.npy", "in.txt"]


def test_encode_file_bad_paths(gpt2, tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        gpt2.encode_file(tmp_path / "missing.txt", tmp_path / "ids.npy")
    src = write(tmp_path / "in.txt", "hello")
    with pytest.raises(FileNotFoundError, match=r"no/dir/ids\.npy"):
        gpt2.encode_file(src, tmp_path / "no" / "dir" / "ids.npy")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt"]


def test_encode_file_progress_exception_stops_and_cleans_up(gpt2, tmp_path):
    src = write(tmp_path / "in.txt", "hello world " * 1000)

    def boom(done):
        raise RuntimeError(f"stop at {done}")

    with pytest.raises(RuntimeError, match="stop at 12000"):
        gpt2._core.encode_file(src, tmp_path / "ids.npy", None, boom)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt"]


# ---- custom pretokenization patterns

# Plain, and with look-ahead and look-behind (fancy-regex and the regex module agree on
# these; the encoder can cut such text only right after special tokens).
PATTERNS = [
    r"\S+|\s+",
    r"(?<=[0-9])[0-9]|[0-9]| ?[a-z]+(?=[ .,!?])| ?[a-z]+|\s+(?!\S)|\s+|\S",
]

# Pieces of the training corpus below, so that merges apply across pattern boundaries.
CUSTOM_TEXT = st.lists(
    st.one_of(
        ALPHABET,
        st.sampled_from(["low", "er", "est", "new", "cat's", "hat.", "end!", "345", "  "]),
    ),
    max_size=40,
).map("".join)


@pytest.fixture(scope="module", params=PATTERNS)
def custom(request) -> tuple[Tokenizer, Tokenizer, list, list]:
    """Tokenizers trained by the reference with a custom pattern, with and without the
    special token, and the reference's vocab and merges."""
    pattern = request.param
    corpus = "low lower lowest newer 12 345 the cat's hat. Tabs\tand  spaces  end!" * 3
    vocab, merges = reference_bpe.train(corpus + EOT + " 日本 🙂", 256 + 40 + 1, [EOT], pattern)
    with_eot = Tokenizer(vocab, merges, [EOT], pattern=pattern)
    without = Tokenizer(
        {i: t for i, t in vocab.items() if t != EOT.encode()}, merges, pattern=pattern
    )
    return with_eot, without, vocab, merges


@given(text=CUSTOM_TEXT)
def test_custom_pattern_encoder_equals_the_reference(custom, text):
    with_eot, without, vocab, merges = custom
    pattern = with_eot.pattern
    assert with_eot.encode(text) == reference_bpe.encode(text, vocab, merges, [EOT], pattern)
    assert without.encode(text) == reference_bpe.encode(text, vocab, merges, [], pattern)


@given(text=CUSTOM_TEXT, data=st.data())
def test_custom_pattern_encode_iterable_equals_encode_at_every_split(custom, text, data):
    for tok in custom[:2]:
        assert_iterable_equals_encode(tok, text, data)


def test_custom_pattern_encode_file_equals_encode(custom, tmp_path):
    np = pytest.importorskip("numpy")
    # > 1 MB, so with the special token the file is cut into blocks encoded in parallel;
    # without it the whole file is one piece.
    text = f"low 12 345, the cat's hat.\n\n  lowest{EOT}\r\n\x0b日本" * 25_000
    for tok in custom[:2]:
        out = tmp_path / "ids.npy"
        tok.encode_file(write(tmp_path / "in.txt", text), out, num_threads=2)
        assert np.load(out).tolist() == tok.encode(text)


def test_custom_pattern_round_trips_through_a_directory(custom, tmp_path):
    tok = custom[0]
    assert tok.pattern in PATTERNS and "pattern=" in repr(tok)
    directory = tok.save_dir(tmp_path / "tok")
    assert (directory / "pattern.txt").read_text(encoding="utf-8") == tok.pattern
    back = Tokenizer.from_dir(directory)
    assert (back.pattern, back.vocab, back.merges) == (tok.pattern, tok.vocab, tok.merges)
    text = "the 12 lowest cats.  end"
    assert back.encode(text) == tok.encode(text)
    tok.save(tmp_path / "vocab.json", tmp_path / "merges.txt")
    again = Tokenizer.from_files(
        tmp_path / "vocab.json", tmp_path / "merges.txt", [EOT], pattern=tok.pattern
    )
    assert again.encode(text) == tok.encode(text)


def test_default_pattern_is_gpt2s_and_saves_no_pattern_file(small, tmp_path):
    assert small.pattern == GPT2_PATTERN and "pattern=" not in repr(small)
    assert not (small.save_dir(tmp_path / "tok") / "pattern.txt").exists()


def test_bad_patterns():
    with pytest.raises(ValueError, match="bad pretokenization pattern"):
        Tokenizer(BYTES, [], pattern="(unclosed")
    with pytest.raises(TypeError, match="pattern must be a str"):
        Tokenizer(BYTES, [], pattern=None)  # type: ignore[arg-type]
    # Exponential backtracking: fancy-regex's limit is a ValueError, not a crash.
    tok = Tokenizer(BYTES, [], pattern=r"(?:(?=a)a|a)+c")
    with pytest.raises(ValueError, match="backtracking"):
        tok.encode("a" * 40 + "b")
    with pytest.raises(ValueError, match="backtracking"):
        list(tok.encode_iterable(["a" * 20, "a" * 20 + "b"]))
