"""tiktoken and Hugging Face interop: exports encode identically, imports recover the model,
and the optional libraries are imported only when used."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cs336 import BPETrainer, Tokenizer, train_bpe

tiktoken = pytest.importorskip("tiktoken")
tokenizers = pytest.importorskip("tokenizers")

EOT = "<|endoftext|>"
TEXT = st.lists(
    st.sampled_from(
        ["a", "Hello", " ", "  ", "\n\n", "\r\n", "'s", "1", "日本", "🙂", "\x0c", EOT]
    ),
    max_size=30,
).map("".join)


@pytest.fixture(scope="module")
def gpt2(shared_data) -> Tokenizer:
    return Tokenizer.from_files(
        shared_data("gpt2/vocab.json"), shared_data("gpt2/merges.txt"), [EOT]
    )


@pytest.fixture(scope="module")
def trained(shared_data) -> Tokenizer:
    path = shared_data("multilingual/multilingual_mix.txt")
    return Tokenizer(*train_bpe(path, 1500, [EOT, "<pad>"]), [EOT, "<pad>"])


@pytest.fixture(scope="module")
def multilingual(shared_data) -> str:
    return shared_data("multilingual/multilingual_mix.txt").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def hf(tmp_path_factory, gpt2, trained):
    directory = tmp_path_factory.mktemp("hf")
    return {
        name: tokenizers.Tokenizer.from_file(
            str(tok.save_hf_tokenizer_json(directory / f"{name}.json"))
        )
        for name, tok in [("gpt2", gpt2), ("trained", trained)]
    }


def test_to_tiktoken_encodes_identically(gpt2, trained, multilingual):
    for tok in (gpt2, trained):
        enc = tok.to_tiktoken("mine")
        assert enc.name == "mine" and enc.n_vocab == tok.vocab_size
        assert enc.encode(multilingual, allowed_special="all") == tok.encode(multilingual)


def test_from_tiktoken_recovers_the_model(gpt2, trained):
    for tok in (gpt2, trained):
        back = Tokenizer.from_tiktoken(tok.to_tiktoken())
        assert (back.vocab, back.merges, back.special_token_ids) == (
            tok.vocab,
            tok.merges,
            tok.special_token_ids,
        )


def test_exports_and_imports_keep_a_custom_pattern(shared_data, tmp_path, multilingual):
    path = shared_data("multilingual/multilingual_mix.txt")
    tok = BPETrainer(600, [EOT], pattern=r"\S+|\s+").train(path)
    expected = tok.encode(multilingual)
    enc = tok.to_tiktoken()
    assert enc.encode(multilingual, allowed_special="all") == expected
    back = Tokenizer.from_tiktoken(enc)
    assert back.pattern == tok.pattern and back.encode(multilingual) == expected
    hf = tokenizers.Tokenizer.from_file(str(tok.save_hf_tokenizer_json(tmp_path / "t.json")))
    assert hf.encode(multilingual).ids == expected


def test_hf_tokenizer_json_encodes_and_decodes_identically(gpt2, trained, hf, multilingual):
    for name, tok in [("gpt2", gpt2), ("trained", trained)]:
        ids = hf[name].encode(multilingual).ids
        assert ids == tok.encode(multilingual), name
        assert hf[name].decode(ids, skip_special_tokens=False) == multilingual


@pytest.fixture(scope="module")
def tiktokens(gpt2, trained):
    return {"gpt2": gpt2.to_tiktoken(), "trained": trained.to_tiktoken()}


@given(text=TEXT)
def test_exports_agree_on_generated_text(gpt2, trained, hf, tiktokens, text):
    for name, tok in [("gpt2", gpt2), ("trained", trained)]:
        assert hf[name].encode(text).ids == tok.encode(text)
        assert tiktokens[name].encode(text, allowed_special="all") == tok.encode(text)


def test_interop_imports_optional_libraries_only_when_used():
    code = (
        "import sys, cs336, cs336.tokenizer.interop; from cs336 import Tokenizer;"
        "print(sorted(m for m in ('tiktoken', 'tokenizers') if m in sys.modules));"
        "t = Tokenizer({i: bytes([i]) for i in range(256)}, []); t.to_tiktoken();"
        "print('tiktoken' in sys.modules, 'tokenizers' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=os.environ
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == ["[]", "True False"]
