"""No command destroys what the user had: every command that writes refuses an existing
output unless --overwrite, never writes over one of its own inputs (even with
--overwrite), replaces a folder only when it holds nothing but that command's outputs,
builds multi-file outputs beside their place (a failure leaves nothing or the old
output), creates a missing parent folder, and names a file given where a folder is
expected (and the reverse) in the user's words."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cs336 import Tokenizer
from cs336.cli import main
from cs336.demo.stories import EOT, write_corpus
from cs336.nn.model import ModelConfig, TransformerLM
from cs336.training.checkpoint import save_checkpoint

TEXT = f"the cat sat on the mat{EOT}the dog sat on the log{EOT}" * 5


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def listing(folder: Path) -> list[str]:
    """Everything under ``folder``, hidden files included (a leftover temp file shows)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def hidden(folder: Path) -> list[str]:
    """Hidden files and folders under ``folder``: what a half-done write leaves."""
    return [p for p in listing(folder) if any(part.startswith(".") for part in Path(p).parts)]


@pytest.fixture
def corpus(tmp_path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


@pytest.fixture
def tok(tmp_path) -> Path:
    vocab = {i: bytes([i]) for i in range(256)} | {256: b"th", 257: b"the"}
    Tokenizer(vocab, [(b"t", b"h"), (b"th", b"e")], [EOT]).save_dir(tmp_path / "tok")
    return tmp_path / "tok"


# ---------------------------------------------------------------------------------------------
# tokenize


def test_tokenize_never_writes_over_its_input_even_with_overwrite(corpus, tok, capsys):
    before = corpus.read_bytes()
    for extra in ([], ["--overwrite"]):
        code, _, err = run(capsys, "tokenize", corpus, "--tokenizer", tok, "--out", corpus, *extra)
        assert code == 1 and "must end in .npy" in err
    ids = corpus.with_suffix(".npy")
    assert run(capsys, "tokenize", corpus, "--tokenizer", tok, "--out", ids, "--quiet")[0] == 0
    code, _, err = run(capsys, "tokenize", ids, "--tokenizer", tok, "--out", ids, "--overwrite")
    assert code == 1 and "is the input" in err
    assert corpus.read_bytes() == before


def test_tokenize_refuses_an_existing_output_unless_overwrite(corpus, tok, tmp_path, capsys):
    out = tmp_path / "ids.npy"
    out.write_bytes(b"precious")
    code, _, err = run(capsys, "tokenize", corpus, "--tokenizer", tok, "--out", out, "--quiet")
    assert code == 1 and "already exists; pass --overwrite" in err
    assert out.read_bytes() == b"precious"
    argv = ["tokenize", corpus, "--tokenizer", tok, "--out", out, "--quiet", "--overwrite"]
    assert run(capsys, *argv)[0] == 0
    assert np.load(out).tolist() == Tokenizer.from_dir(tok).encode(TEXT)
    assert not hidden(tmp_path)


def test_tokenize_creates_a_missing_folder(corpus, tok, tmp_path, capsys):
    out = tmp_path / "new" / "deeper" / "ids.npy"
    assert run(capsys, "tokenize", corpus, "--tokenizer", tok, "--out", out, "--quiet")[0] == 0
    assert out.is_file() and listing(out.parent) == ["ids.npy"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"--tokenizer": "{corpus}"}, "corpus.txt is a file, not a tokenizer folder"),
        ({"--tokenizer": "{tmp}"}, "is not a tokenizer folder: it has no vocab.json"),
        ({"--tokenizer": "{tmp}/nowhere"}, "tokenizer folder not found: .*nowhere"),
        ({"input": "{tmp}"}, "is a folder; give the text file"),
        ({"input": "{tmp}/missing.txt"}, "INPUT not found: .*missing.txt"),
        ({"--out": "{tmp}"}, "must end in .npy"),
        ({"--out": "{corpus}/x.npy"}, "cannot create it, .*corpus.txt is a file"),
    ],
)
def test_tokenize_names_the_mistake(corpus, tok, tmp_path, capsys, change, message):
    import re

    args = {"input": str(corpus), "--tokenizer": str(tok), "--out": str(tmp_path / "o.npy")}
    args.update({k: v.format(corpus=corpus, tmp=tmp_path) for k, v in change.items()})
    argv = [args.pop("input"), *[x for kv in args.items() for x in kv], "--quiet"]
    code, _, err = run(capsys, "tokenize", *argv)
    assert code == 1 and re.search(message, err), err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "o.npy").exists()


# ---------------------------------------------------------------------------------------------
# train-bpe


def train_bpe(capsys, corpus, out, *extra):
    argv = ["train-bpe", corpus, "--vocab-size", "262", "--special-token", EOT, "--out", out]
    return run(capsys, *argv, "--quiet", *extra)


def test_train_bpe_replaces_a_tokenizer_only_when_asked_and_whole(corpus, tmp_path, capsys):
    out = tmp_path / "tok"
    pattern = ["--pattern", r"\S+|\s+"]
    assert train_bpe(capsys, corpus, out, *pattern)[0] == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert "pattern.txt" in before
    code, _, err = train_bpe(capsys, corpus, out)
    assert code == 1 and "already exists; pass --overwrite" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert train_bpe(capsys, corpus, out, "--overwrite")[0] == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "merges.txt", "special_tokens.json", "vocab.json",
    ]  # fmt: skip
    assert not hidden(tmp_path)


def test_train_bpe_never_replaces_a_folder_of_other_files_or_inputs(corpus, tmp_path, capsys):
    code, _, err = train_bpe(capsys, corpus, tmp_path, "--overwrite")  # the corpus is in it
    assert code == 1 and "holds the input" in err and corpus.read_text() == TEXT
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    code, _, err = train_bpe(capsys, corpus, mine, "--overwrite")
    assert code == 1 and "holds 'notes.txt'" in err and (mine / "notes.txt").exists()
    code, _, err = train_bpe(capsys, corpus, corpus)
    assert code == 1 and "is the input" in err and corpus.read_text() == TEXT
    (tmp_path / "file").write_text("x")
    code, _, err = train_bpe(capsys, corpus, tmp_path / "file", "--overwrite")
    assert code == 1 and "is a file; give a folder" in err


def test_a_failed_save_leaves_the_old_tokenizer_whole(corpus, tmp_path, capsys, monkeypatch):
    import cs336.tokenizer.gpt2_format as fmt

    out = tmp_path / "tok"
    assert train_bpe(capsys, corpus, out)[0] == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(fmt, "write_merges", broken)  # after vocab.json was written
    code, _, err = train_bpe(capsys, corpus, out, "--overwrite", "--pattern", r"\S+|\s+")
    assert code == 1 and "disk full" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert not hidden(tmp_path)


def test_train_bpe_on_empty_input_is_an_error(tmp_path, capsys):
    (tmp_path / "empty.txt").write_text("")
    code, _, err = train_bpe(capsys, tmp_path / "empty.txt", tmp_path / "tok")
    assert code == 1 and "empty.txt is empty" in err
    assert not (tmp_path / "tok").exists()


def test_an_unreachable_vocabulary_is_a_warning_with_the_size_reached(corpus, tmp_path, capsys):
    argv = ["train-bpe", corpus, "--vocab-size", "100000", "--out", tmp_path / "tok", "--quiet"]
    code, out, err = run(capsys, *argv)
    vocab_size = Tokenizer.from_dir(tmp_path / "tok").vocab_size
    assert code == 0 and f"vocab size {vocab_size}" in out
    assert f"warning: the vocabulary reached {vocab_size:,} tokens, not the 100,000 asked" in err
    assert f"vocab_size = {vocab_size}" in err


# ---------------------------------------------------------------------------------------------
# plot


def fake_run(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    records = [{"step": s, "time": s / 10, "train_loss": 5 - s / 50} for s in range(0, 101, 10)]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return folder


@pytest.mark.parametrize(
    ("name", "magic"), [("a.png", b"\x89PNG"), ("a.pdf", b"%PDF"), ("A.SVG", b"<?xml")]
)
def test_plot_writes_the_format_its_name_says(tmp_path, capsys, name, magic):
    pytest.importorskip("matplotlib")
    out = tmp_path / "plots" / name
    assert run(capsys, "plot", fake_run(tmp_path / "run"), "--out", out)[0] == 0
    assert out.read_bytes().startswith(magic)


@pytest.mark.parametrize("name", ["loss.jpg", "loss", "loss.png.txt"])
def test_plot_refuses_a_name_of_another_format(tmp_path, capsys, name):
    code, _, err = run(capsys, "plot", fake_run(tmp_path / "run"), "--out", tmp_path / name)
    assert code == 1 and "written as .png, .pdf or .svg" in err
    assert not (tmp_path / name).exists()


def test_plot_refuses_an_existing_file_unless_overwrite(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    run_dir, out = fake_run(tmp_path / "run"), tmp_path / "loss.png"
    out.write_bytes(b"mine")
    code, _, err = run(capsys, "plot", run_dir, "--out", out)
    assert code == 1 and "already exists; pass --overwrite" in err and out.read_bytes() == b"mine"
    assert run(capsys, "plot", run_dir, "--out", out, "--overwrite")[0] == 0
    assert out.read_bytes().startswith(b"\x89PNG")
    code, _, err = run(capsys, "plot", run_dir, "--out", run_dir, "--overwrite")
    assert code == 1


# ---------------------------------------------------------------------------------------------
# demo

TINY = dict(d_model=16, num_layers=1, num_heads=2, d_ff=32, context_length=32)


@pytest.fixture
def tiny_demo(monkeypatch):
    import cs336.demo.pipeline as pipeline

    monkeypatch.setattr(pipeline, "DEMO_MODEL", TINY)
    monkeypatch.setattr(pipeline, "_seconds_per_step", lambda cfg: 1.0)  # a fixed 10 steps


def demo(capsys, out, *extra):
    return run(capsys, "demo", "--out", out, "--stories", "60", "--vocab-size", "270",
               "--minutes", "0.01", *extra)  # fmt: skip


def test_a_demo_that_fails_leaves_nothing(tmp_path, capsys, tiny_demo):
    for corpus, message in ((tmp_path / "missing.txt", "corpus not found"), (tmp_path, "folder")):
        code, _, err = demo(capsys, tmp_path / "d", "--corpus", corpus)
        assert code == 1 and message in err
    (tmp_path / "plain.txt").write_text("no separators " * 50)
    code, _, err = demo(capsys, tmp_path / "d", "--corpus", tmp_path / "plain.txt")
    assert code == 1 and "has no <|endoftext|>" in err
    assert listing(tmp_path) == ["plain.txt"]


def test_a_demo_folder_is_replaced_only_when_asked(tmp_path, capsys, tiny_demo):
    out = tmp_path / "d"
    assert demo(capsys, out)[0] == 0
    files = listing(out)
    assert {"loss.png", "run/checkpoint.pt", "tokenizer/vocab.json", "train.npy"} <= set(files)
    config = json.loads((out / "run" / "config.json").read_text())
    assert config["out_dir"] == str(out / "run")  # where it is, not where it was built
    assert config["data"]["train_path"] == str(out / "train.npy")
    stamp = (out / "run" / "checkpoint.pt").read_bytes()
    code, _, err = demo(capsys, out, "--seed", "1")
    assert code == 1 and "already exists; pass --overwrite" in err
    assert (out / "run" / "checkpoint.pt").read_bytes() == stamp
    assert demo(capsys, out, "--seed", "1", "--overwrite")[0] == 0
    assert (out / "run" / "checkpoint.pt").read_bytes() != stamp
    assert listing(tmp_path) == ["d", *[f"d/{f}" for f in files]]


def test_a_demo_never_replaces_its_corpus_or_other_files(tmp_path, capsys, tiny_demo):
    out = tmp_path / "d"
    out.mkdir()
    write_corpus(out / "mine.txt", 60)
    code, _, err = demo(capsys, out, "--corpus", out / "mine.txt", "--overwrite")
    assert code == 1 and "holds the input" in err
    code, _, err = demo(capsys, out, "--overwrite")
    assert code == 1 and "holds 'mine.txt'" in err
    assert listing(out) == ["mine.txt"]


# ---------------------------------------------------------------------------------------------
# export-hf, import-hf, generate


LLAMA = ModelConfig.preset(
    "cs336-2025", vocab_size=259, context_length=16, d_model=16, num_layers=1, num_heads=2
)


@pytest.fixture
def llama_run(tmp_path, tok) -> Path:
    save_checkpoint(TransformerLM.from_config(LLAMA), None, 0, tmp_path / "run" / "checkpoint.pt")
    return tmp_path / "run"


def test_export_never_replaces_its_inputs(llama_run, tok, tmp_path, capsys):
    base = ["export-hf", "--checkpoint", llama_run, "--tokenizer", tok, "--overwrite"]
    for out in (llama_run, tmp_path, tok):
        code, _, err = run(capsys, *base, "--out", out)
        assert code == 1 and ("holds the input" in err or "is the input" in err), err
    assert (llama_run / "checkpoint.pt").exists() and (tok / "vocab.json").exists()
    assert run(capsys, *base, "--out", tmp_path / "hf")[0] == 0  # a run folder is its checkpoint


def test_a_tokenizer_of_another_model_is_named(llama_run, tmp_path, capsys):
    small = tmp_path / "small"
    Tokenizer({i: bytes([i]) for i in range(256)}, [], [EOT]).save_dir(small)  # 257 tokens
    (tmp_path / "text.txt").write_text("the cat sat on the mat " * 20)
    text = ["--data", tmp_path / "text.txt"]
    for command in (["generate"], ["export-hf", "--out", tmp_path / "hf"], ["eval", *text]):
        code, _, err = run(capsys, *command, "--checkpoint", llama_run, "--tokenizer", small)
        assert code == 1
        assert "small does not belong to the model" in err and "257 tokens" in err
        assert "a vocabulary of 259" in err
    assert not (tmp_path / "hf").exists()


def test_generate_takes_a_run_folder_and_names_non_checkpoints(llama_run, tok, tmp_path, capsys):
    argv = ["generate", "--tokenizer", tok, "--prompt", "the", "--max-new-tokens", "2"]
    assert run(capsys, *argv, "--checkpoint", llama_run)[0] == 0
    (tmp_path / "notes.txt").write_text("these are my notes\n")
    code, _, err = run(capsys, *argv, "--checkpoint", tmp_path / "notes.txt")
    assert code == 1 and "notes.txt is not a checkpoint" in err and "weights_only" not in err
    code, _, err = run(capsys, *argv, "--checkpoint", tmp_path / "tok")
    assert code == 1 and "is a folder without checkpoint.pt or model.safetensors" in err


def test_import_hf_refuses_existing_outputs_and_its_own_files(llama_run, tok, tmp_path, capsys):
    pytest.importorskip("safetensors")
    hf = tmp_path / "hf"
    assert (
        run(capsys, "export-hf", "--checkpoint", llama_run, "--tokenizer", tok, "--out", hf)[0] == 0
    )
    weights = (hf / "model.safetensors").read_bytes()
    code, _, err = run(capsys, "import-hf", hf, "--out", hf / "model.safetensors", "--overwrite")
    assert (
        code == 1 and "is the input" in err and (hf / "model.safetensors").read_bytes() == weights
    )
    (tmp_path / "m.pt").write_bytes(b"mine")
    code, _, err = run(capsys, "import-hf", hf, "--out", tmp_path / "m.pt")
    assert code == 1 and "already exists; pass --overwrite" in err
    assert (tmp_path / "m.pt").read_bytes() == b"mine"
    assert run(capsys, "import-hf", hf, "--out", tmp_path / "m.pt", "--overwrite")[0] == 0
    code, _, err = run(capsys, "import-hf", hf, "--out", tmp_path / "m.bin")
    assert code == 1 and "must end in .pt" in err
    code, _, err = run(capsys, "import-hf", hf / "config.json", "--out", tmp_path / "x.pt")
    assert code == 1 and "config.json is a file" in err


# ---------------------------------------------------------------------------------------------
# train


@pytest.fixture
def train_config(tmp_path) -> Path:
    tokens = np.random.default_rng(0).integers(0, 32, 400)
    np.save(tmp_path / "train.npy", tokens.astype(np.int32))
    np.save(tmp_path / "val.npy", tokens[:100].astype(np.int32))
    config = {
        "max_steps": 2, "eval_interval": 0, "progress": False, "out_dir": str(tmp_path / "run"),
        "model": dict(vocab_size=32, context_length=8, d_model=16, num_layers=1, num_heads=2,
                      d_ff=32),
        "data": {"train_path": str(tmp_path / "train.npy"), "val_path": str(tmp_path / "val.npy"),
                 "batch_size": 2},
        "optim": {"warmup_iters": 0},
    }  # fmt: skip
    (tmp_path / "c.json").write_text(json.dumps(config))
    return tmp_path / "c.json"


def test_train_refuses_negative_ids_before_making_the_run_folder(train_config, tmp_path, capsys):
    tokens = np.load(tmp_path / "train.npy")
    tokens[7] = -3
    np.save(tmp_path / "train.npy", tokens)
    code, _, err = run(capsys, "train", train_config)
    assert code == 1 and "train.npy contains -3, which is no token id" in err
    assert err.count("\n") == 1 and not (tmp_path / "run").exists()


def test_train_names_a_run_folder_that_cannot_be(train_config, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    for out_dir, message in (("file", "is a file"), ("file/run", "cannot create it")):
        code, _, err = run(capsys, "train", train_config, "--out_dir", tmp_path / out_dir)
        assert code == 1 and message in err, err


def test_a_new_run_never_writes_into_a_folder_of_other_files(train_config, tmp_path, capsys):
    """`--out_dir .` where the user keeps a config.json and token files of their own."""
    before = train_config.read_bytes()
    code, _, err = run(capsys, "train", train_config, "--out_dir", tmp_path)
    assert code == 1 and "holds 'c.json', which is not a file of a run" in err
    assert train_config.read_bytes() == before and not (tmp_path / "metrics.jsonl").exists()
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.jsonl").write_text("")  # a run stopped before its checkpoint
    assert run(capsys, "train", train_config)[0] == 0


def test_resume_takes_a_run_folder(train_config, tmp_path, capsys):
    assert run(capsys, "train", train_config)[0] == 0
    code, out, _ = run(capsys, "train", train_config, "--max_steps", "3", "--resume",
                       tmp_path / "run")  # fmt: skip
    assert code == 0 and "resuming from step 2" in out


def test_train_without_a_config_says_what_to_give(capsys):
    code, _, err = run(capsys, "train")
    assert code == 1 and "give a config file, cs336 train CONFIG" in err


def test_train_bpe_refuses_an_empty_pattern(corpus, tmp_path, capsys):
    code, _, err = train_bpe(capsys, corpus, tmp_path / "tok", "--pattern", "")
    assert code == 1 and "--pattern is empty" in err and not (tmp_path / "tok").exists()
