"""Checkpoints: round trips (path and file object), unwrapping compile/DDP, atomic writes,
clear errors on corrupt files, and RNG states for an exact resume."""

from __future__ import annotations

import io
import os
import random

import numpy as np
import pytest
import torch

from cs336 import load_checkpoint, save_checkpoint
from cs336.nn.model import ModelConfig, TransformerLM
from cs336.optim import AdamW
from cs336.training.checkpoint import read_checkpoint, unwrap_model

CFG = ModelConfig(vocab_size=50, context_length=8, d_model=16, num_layers=1, num_heads=2, d_ff=32)


def trained():
    torch.manual_seed(0)
    model = TransformerLM.from_config(CFG)
    opt = AdamW(model.parameters(), lr=1e-2)
    x = torch.randint(0, 50, (2, 8))
    model(x).sum().backward()
    opt.step()
    return model, opt


def assert_same(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("kind", ["path", "file"])
def test_round_trip(tmp_path, kind):
    model, opt = trained()
    target = tmp_path / "ckpt.pt" if kind == "path" else io.BytesIO()
    save_checkpoint(model, opt, 42, target)
    if kind == "file":
        target.seek(0)
    fresh = TransformerLM.from_config(CFG)
    fresh_opt = AdamW(fresh.parameters(), lr=1e-2)
    assert load_checkpoint(target, fresh, fresh_opt) == 42
    assert_same(model, fresh)
    a, b = opt.state_dict()["state"], fresh_opt.state_dict()["state"]
    assert a.keys() == b.keys()
    for k in a:
        for name in a[k]:
            assert torch.equal(torch.as_tensor(a[k][name]), torch.as_tensor(b[k][name]))
    assert (
        read_checkpoint(tmp_path / "ckpt.pt" if kind == "path" else _rewind(target))["model_config"]
        == CFG.to_dict()
    )


def _rewind(f):
    f.seek(0)
    return f


def test_compiled_model_is_saved_unwrapped(tmp_path):
    model, opt = trained()
    compiled = torch.compile(model)
    assert any(k.startswith("_orig_mod.") for k in compiled.state_dict())
    save_checkpoint(compiled, opt, 1, tmp_path / "c.pt")
    keys = read_checkpoint(tmp_path / "c.pt")["model"].keys()
    assert not any(k.startswith("_orig_mod.") for k in keys)
    assert "lm_head.weight" in keys
    fresh = torch.compile(TransformerLM.from_config(CFG))
    load_checkpoint(tmp_path / "c.pt", fresh, None)
    assert_same(model, unwrap_model(fresh))


def test_ddp_model_is_saved_unwrapped(tmp_path):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        model, opt = trained()
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        save_checkpoint(ddp, opt, 3, tmp_path / "d.pt")
    finally:
        dist.destroy_process_group()
    keys = read_checkpoint(tmp_path / "d.pt")["model"].keys()
    assert not any(k.startswith("module.") for k in keys)


def test_a_failed_save_leaves_the_old_checkpoint_and_no_temp_file(tmp_path, monkeypatch):
    model, opt = trained()
    path = tmp_path / "ckpt.pt"
    save_checkpoint(model, opt, 1, path)
    before = path.read_bytes()

    def crash(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(model, opt, 2, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]


def test_corrupt_and_truncated_files_give_a_clear_error(tmp_path):
    model, opt = trained()
    path = tmp_path / "ckpt.pt"
    save_checkpoint(model, opt, 1, path)
    data = path.read_bytes()
    (tmp_path / "truncated.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk.pt").write_bytes(b"\x00garbage" * 100)
    with pytest.raises(ValueError, match="truncated.pt is corrupt or truncated"):
        load_checkpoint(tmp_path / "truncated.pt", model, opt)
    with pytest.raises(ValueError, match="junk.pt is not a checkpoint"):
        load_checkpoint(tmp_path / "junk.pt", model, opt)
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a cs336 checkpoint"):
        load_checkpoint(tmp_path / "other.pt", model, opt)
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_checkpoint(tmp_path / "nope.pt", model, opt)


def test_loading_into_a_different_model_fails(tmp_path):
    model, opt = trained()
    save_checkpoint(model, opt, 1, tmp_path / "c.pt")
    other = TransformerLM(50, 8, 32, 1, 2, 32)
    with pytest.raises(RuntimeError, match="size mismatch"):
        load_checkpoint(tmp_path / "c.pt", other, None)


def test_missing_optimizer_state_is_named(tmp_path):
    model, _ = trained()
    save_checkpoint(model, None, 5, tmp_path / "c.pt")
    assert load_checkpoint(tmp_path / "c.pt", model, None) == 5
    with pytest.raises(ValueError, match="no optimizer state"):
        load_checkpoint(tmp_path / "c.pt", model, AdamW(model.parameters()))


def test_bad_iteration():
    model, opt = trained()
    with pytest.raises(ValueError, match="iteration"):
        save_checkpoint(model, opt, -1, io.BytesIO())


def draws():
    return (random.random(), float(np.random.rand()), float(torch.rand(())), np.random.randn())


def test_checkpoint_files_get_the_usual_permissions(tmp_path):
    model, opt = trained()
    save_checkpoint(model, opt, 1, tmp_path / "c.pt")
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "c.pt").stat().st_mode & 0o777 == 0o666 & ~mask


@pytest.mark.parametrize("preset", ["cs336-2024", "cs336-2025"])
def test_load_model_draws_no_weights_it_then_overwrites(tmp_path, preset):
    """A model read from a checkpoint is built without its random init (every weight is
    loaded next, strictly): the generator is not advanced, and the weights are the saved
    ones, bit for bit; a model built normally does draw."""
    from cs336.generation import load_model
    from cs336.nn.layers import no_weight_init

    cfg = ModelConfig.preset(
        preset, vocab_size=64, context_length=16, d_model=32, num_layers=2, num_heads=2
    )
    model = TransformerLM.from_config(cfg)
    save_checkpoint(model, None, 0, tmp_path / "c.pt")
    before = torch.get_rng_state()
    loaded = load_model(tmp_path / "c.pt")
    assert torch.equal(torch.get_rng_state(), before)
    assert_same(model, loaded)
    with no_weight_init():
        TransformerLM.from_config(cfg)
    assert torch.equal(torch.get_rng_state(), before)
    TransformerLM.from_config(cfg)  # outside the block: initialized
    assert not torch.equal(torch.get_rng_state(), before)
    with no_weight_init(), pytest.raises(RuntimeError, match="Missing key"):
        TransformerLM.from_config(cfg).load_state_dict({}, strict=True)
