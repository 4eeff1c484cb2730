"""Checkpoints whose weights are a safetensors file beside them (``checkpoint_format =
"safetensors"``): round trips, weights files read alone without pickle, a crash between the
two writes, mismatched or missing files, training and resuming with them, and ``init_from``."""

from __future__ import annotations

import dataclasses
import json
import os
import sys

import pytest
import torch
from test_training import make_config

from cs336 import train
from cs336.generation import load_model
from cs336.nn.model import ModelConfig, TransformerLM
from cs336.optim import AdamW
from cs336.training.checkpoint import (
    load_checkpoint,
    read_checkpoint,
    read_weights,
    save_checkpoint,
    save_weights,
)

safetensors = pytest.importorskip("safetensors.torch")

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CFG = ModelConfig.preset(
    "cs336-2025", vocab_size=50, context_length=8, d_model=16, num_layers=1, num_heads=2
)


def trained(seed=0, **options):
    torch.manual_seed(seed)
    model = TransformerLM.from_config(ModelConfig.from_dict({**CFG.to_dict(), **options}))
    opt = AdamW(model.parameters(), lr=1e-2)
    model(torch.randint(0, 50, (2, 8))).sum().backward()
    opt.step()
    return model, opt


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_the_weights_go_beside_the_checkpoint_and_come_back(tmp_path):
    model, opt = trained()
    save_checkpoint(model, opt, 7, tmp_path / "ckpt.pt", weights=tmp_path / "model.safetensors")
    assert sorted(os.listdir(tmp_path)) == ["ckpt.pt", "model.safetensors"]
    raw = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    assert raw["model"] is None and raw["weights"]["file"] == "model.safetensors"
    fresh, fresh_opt = trained(seed=1)
    assert not same_weights(model, fresh)
    assert load_checkpoint(tmp_path / "ckpt.pt", fresh, fresh_opt) == 7
    assert same_weights(model, fresh)
    assert fresh_opt.state_dict()["state"].keys() == opt.state_dict()["state"].keys()


@pytest.mark.parametrize("tied", [False, True])
def test_a_weights_file_alone_is_a_complete_model(tmp_path, tied, monkeypatch):
    model, _ = trained(tie_embeddings=tied)
    save_weights(model, tmp_path / "model.safetensors", iteration=3)
    tensors = safetensors.load_file(tmp_path / "model.safetensors")
    assert ("lm_head.weight" in tensors) is not tied  # a tied matrix is stored once

    def no_pickle(*args, **kwargs):
        raise AssertionError("torch.load called")

    monkeypatch.setattr(torch, "load", no_pickle)
    loaded = load_model(tmp_path / "model.safetensors")
    assert same_weights(model, loaded) and loaded.config == model.config
    assert (loaded.lm_head.weight is loaded.token_embeddings.weight) is tied
    assert read_checkpoint(tmp_path / "model.safetensors")["iteration"] == 3


def test_a_crash_between_the_two_writes_keeps_a_consistent_checkpoint(tmp_path, monkeypatch):
    ckpt, weights = tmp_path / "ckpt.pt", tmp_path / "model.safetensors"
    first, opt = trained(seed=0)
    save_checkpoint(first, opt, 1, ckpt, weights=weights)
    second, opt2 = trained(seed=1)
    real_replace = os.replace

    def crash_on(suffix):
        def replace(src, dst):
            if os.fspath(src).endswith(suffix) or os.fspath(dst).endswith(suffix):
                raise KeyboardInterrupt  # the process dies here
            real_replace(src, dst)

        return replace

    # dies before the checkpoint is committed: the old pair is read
    monkeypatch.setattr(os, "replace", crash_on("ckpt.pt"))
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(second, opt2, 2, ckpt, weights=weights)
    payload = read_checkpoint(ckpt)
    assert payload["iteration"] == 1
    assert all(torch.equal(payload["model"][k], v) for k, v in first.state_dict().items())
    # dies after the commit, before the weights are renamed: the new pair is read
    monkeypatch.setattr(os, "replace", crash_on("model.safetensors"))
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(second, opt2, 2, ckpt, weights=weights)
    assert (tmp_path / "model.safetensors.pending").is_file()
    payload = read_checkpoint(ckpt)
    assert payload["iteration"] == 2
    assert all(torch.equal(payload["model"][k], v) for k, v in second.state_dict().items())
    monkeypatch.setattr(os, "replace", real_replace)
    save_checkpoint(second, opt2, 3, ckpt, weights=weights)
    assert sorted(os.listdir(tmp_path)) == ["ckpt.pt", "model.safetensors"]


def test_weights_that_belong_to_another_checkpoint_or_are_missing(tmp_path):
    model, opt = trained()
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        save_checkpoint(model, opt, 1, tmp_path / name / "c.pt", weights=tmp_path / name / "w.st")
    os.replace(tmp_path / "b" / "w.st", tmp_path / "a" / "w.st")
    with pytest.raises(ValueError, match="does not hold the weights of"):
        read_checkpoint(tmp_path / "a" / "c.pt")
    with pytest.raises(FileNotFoundError, match="keeps its weights in .*w.st, which is missing"):
        read_checkpoint(tmp_path / "b" / "c.pt")


def test_file_objects_and_foreign_safetensors_files(tmp_path):
    import io

    model, opt = trained()
    with pytest.raises(ValueError, match="must be saved to a path"):
        save_checkpoint(model, opt, 1, io.BytesIO(), weights=tmp_path / "w.safetensors")
    save_checkpoint(model, opt, 1, tmp_path / "c.pt", weights=tmp_path / "w.safetensors")
    with (
        open(tmp_path / "c.pt", "rb") as f,
        pytest.raises(
            ValueError, match="keeps its weights in w.safetensors: read it from its path"
        ),
    ):
        read_checkpoint(f)
    safetensors.save_file({"x": torch.zeros(2)}, tmp_path / "other.safetensors")
    with pytest.raises(ValueError, match="not a cs336 weights file"):
        read_weights(tmp_path / "other.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        load_model(tmp_path / "bad.safetensors")
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "missing.safetensors")


def test_without_safetensors_the_error_says_what_to_install(tmp_path, monkeypatch):
    model, opt = trained()
    monkeypatch.setitem(sys.modules, "safetensors", None)
    monkeypatch.setitem(sys.modules, "safetensors.torch", None)
    with pytest.raises(RuntimeError, match=r"pip install safetensors"):
        save_checkpoint(model, opt, 1, tmp_path / "c.pt", weights=tmp_path / "w.safetensors")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(RuntimeError, match="needs the safetensors package"):
        train(make_config(tmp_path, checkpoint_format="safetensors"))
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------------------------
# Training with checkpoint_format = "safetensors", and init_from


def test_training_writes_safetensors_and_resumes_exactly(tmp_path):
    over = {"optim.cosine_cycle_iters": 8, "checkpoint_format": "safetensors"}
    straight = train(make_config(tmp_path, out_dir=str(tmp_path / "straight"), **over))
    train(make_config(tmp_path, max_steps=4, **over))
    run = tmp_path / "run"
    assert {"checkpoint.pt", "model.safetensors"} <= {p.name for p in run.iterdir()}
    assert torch.load(run / "checkpoint.pt", weights_only=True)["model"] is None
    resumed = train(make_config(tmp_path, **over), resume="auto")
    assert resumed.train_losses == {k: straight.train_losses[k] for k in range(5, 9)}
    a = read_checkpoint(tmp_path / "straight" / "checkpoint.pt")["model"]
    b = read_checkpoint(run / "model.safetensors")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((run / "config.json").read_text())["checkpoint_format"] == "safetensors"


def test_init_from_starts_a_fresh_run_from_the_weights(tmp_path):
    first = train(make_config(tmp_path, out_dir=str(tmp_path / "first")))
    weights = tmp_path / "first.safetensors"
    save_weights(load_model(tmp_path / "first" / "checkpoint.pt"), weights)
    for source in (tmp_path / "first" / "checkpoint.pt", weights):
        out = tmp_path / f"from-{source.suffix[1:]}"
        result = train(make_config(tmp_path, out_dir=str(out), init_from=str(source)))
        assert result.val_losses[0] == pytest.approx(first.val_losses[8], rel=1e-5)
        assert read_checkpoint(out / "checkpoint.pt")["iteration"] == 8  # a run of its own
    other = make_config(
        tmp_path, out_dir=str(tmp_path / "x"), init_from=str(weights), **{"model.d_ff": 32}
    )
    with pytest.raises(ValueError, match=r"holds a different model \(d_ff: 64 vs 32\); init_from"):
        train(other)
    with pytest.raises(ValueError, match="init_from must be a checkpoint path"):
        make_config(tmp_path, init_from="")


def test_checkpoint_format_is_checked(tmp_path):
    with pytest.raises(ValueError, match="checkpoint_format must be one of torch, safetensors"):
        make_config(tmp_path, checkpoint_format="pickle")
    cfg = make_config(tmp_path)
    with pytest.raises(ValueError, match="checkpoint_format must be torch or safetensors"):
        dataclasses.replace(cfg, checkpoint_format="pickle")
