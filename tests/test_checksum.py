"""Checkpoint and weights-file checksums: written with every save, checked on every load
(load_checkpoint, generate, --resume, --init_from, export-hf, import-hf), a mismatch is an
error naming the file; computed over each tensor's own bytes, so parameters that are views
into one flat buffer save, load and hash as separate tensors would."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cs336 import Tokenizer, load_checkpoint, save_checkpoint
from cs336.cli import main
from cs336.generation import load_model
from cs336.nn.model import ModelConfig, TransformerLM
from cs336.optim import AdamW
from cs336.training.checkpoint import (
    CorruptCheckpointError,
    content_checksum,
    read_checkpoint,
    save_weights,
)

pytest.importorskip("safetensors")

CFG = ModelConfig(vocab_size=300, context_length=16, d_model=32, num_layers=1, num_heads=2, d_ff=64)
LLAMA = ModelConfig.preset(
    "cs336-2025", vocab_size=300, context_length=16, d_model=32, num_layers=1, num_heads=2
)


def model_and_optimizer(cfg: ModelConfig = CFG) -> tuple[TransformerLM, AdamW]:
    torch.manual_seed(0)
    model = TransformerLM.from_config(cfg)
    opt = AdamW(model.parameters(), lr=1e-2)
    model(torch.randint(0, cfg.vocab_size, (2, 8))).sum().backward()
    opt.step()
    return model, opt


def flip_16_bytes(path: Path, tensor: torch.Tensor) -> None:
    """Flip 16 bytes of ``tensor``'s data where the file stores it (a disk error, a bad
    copy): everything around it stays readable."""
    data = bytearray(path.read_bytes())
    needle = tensor.detach().float().contiguous().numpy().tobytes()[:64]
    at = data.find(needle)
    assert at >= 0, "the tensor's bytes are not in the file"
    data[at + 16 : at + 32] = bytes(b ^ 0xFF for b in data[at + 16 : at + 32])
    path.write_bytes(bytes(data))


def test_the_checksum_sees_every_byte_dtype_shape_and_value():
    base = {"w": torch.arange(6.0).reshape(2, 3), "step": 3, "betas": (0.9, 0.95)}
    same = {"w": torch.arange(6.0).reshape(2, 3), "step": 3, "betas": [0.9, 0.95]}
    assert content_checksum(base) == content_checksum(same)
    changed = [
        {**base, "w": base["w"].clone().index_fill_(1, torch.tensor([2]), 7.0)},
        {**base, "w": base["w"].double()},
        {**base, "w": base["w"].reshape(3, 2)},
        {**base, "step": 4},
        {**base, "betas": (0.9, 0.96)},
        {"step": 3, "w": base["w"], "betas": (0.9, 0.95)},  # another order of the keys
    ]
    assert len({content_checksum(c) for c in [base, *changed]}) == len(changed) + 1
    assert content_checksum({"w": base["w"].t()}) == content_checksum({"w": base["w"].t().clone()})


def flat_buffer_model() -> TransformerLM:
    """A model whose parameters are views into one flat buffer (as a fused optimizer or
    the GPU fast path makes them)."""
    model, _ = model_and_optimizer()
    params = list(model.parameters())
    flat = torch.cat([p.detach().reshape(-1) for p in params])
    offset = 0
    for p in params:
        p.data = flat[offset : offset + p.numel()].view_as(p)
        offset += p.numel()
    assert len({p.untyped_storage().data_ptr() for p in model.parameters()}) == 1
    return model


def test_views_into_one_flat_buffer_hash_save_and_load_as_separate_tensors(tmp_path):
    model = flat_buffer_model()
    separate = {k: v.clone() for k, v in model.state_dict().items()}
    assert content_checksum(model.state_dict()) == content_checksum(separate)
    save_checkpoint(model, None, 1, tmp_path / "c.pt")
    save_weights(model, tmp_path / "w.safetensors")  # safetensors refuses shared memory
    for path in ("c.pt", "w.safetensors"):
        back = load_model(tmp_path / path)
        assert all(torch.equal(back.state_dict()[k], v) for k, v in separate.items())


@pytest.mark.parametrize("part", ["model", "optimizer"])
def test_a_checkpoint_with_16_bytes_flipped_is_refused_naming_the_file(tmp_path, part):
    model, opt = model_and_optimizer()
    path = tmp_path / "ckpt.pt"
    save_checkpoint(model, opt, 7, path)
    moments = [t for s in opt.state_dict()["state"].values() for t in s.values()]
    largest = max((t for t in moments if torch.is_tensor(t)), key=lambda t: t.numel())
    inside = model.lm_head.weight if part == "model" else largest
    flip_16_bytes(path, inside)
    with pytest.raises(CorruptCheckpointError, match=r"ckpt.pt is corrupt: its content does"):
        read_checkpoint(path)
    with pytest.raises(ValueError, match="ckpt.pt is corrupt"):
        load_checkpoint(path, model, opt)


@pytest.mark.parametrize("alone", [True, False])
def test_a_weights_file_with_16_bytes_flipped_is_refused_naming_it(tmp_path, alone):
    model, opt = model_and_optimizer()
    weights = tmp_path / "model.safetensors"
    if alone:
        save_weights(model, weights)
    else:
        save_checkpoint(model, opt, 3, tmp_path / "checkpoint.pt", weights=weights)
    flip_16_bytes(weights, model.lm_head.weight)
    with pytest.raises(CorruptCheckpointError, match="model.safetensors is corrupt"):
        read_checkpoint(weights if alone else tmp_path / "checkpoint.pt")


def test_a_checkpoint_from_before_checksums_still_loads(tmp_path):
    model, opt = model_and_optimizer()
    save_checkpoint(model, opt, 2, tmp_path / "c.pt")
    payload = torch.load(tmp_path / "c.pt", weights_only=True)
    del payload["checksum"]
    torch.save(payload, tmp_path / "old.pt")
    assert load_checkpoint(tmp_path / "old.pt", model, opt) == 2


@pytest.fixture
def corrupt_run(tmp_path):
    """A trained run folder (checkpoint, tokenizer, token files) whose checkpoint then had
    16 bytes flipped."""
    tokens = np.random.default_rng(0).integers(0, 300, 2000).astype(np.uint16)
    np.save(tmp_path / "train.npy", tokens)
    np.save(tmp_path / "val.npy", tokens[:500])
    Tokenizer({i: bytes([i]) for i in range(256)}, [], [f"<s{i}>" for i in range(44)]).save_dir(
        tmp_path / "tok"
    )
    model, opt = model_and_optimizer(LLAMA)
    run = tmp_path / "run"
    save_checkpoint(model, opt, 1, run / "checkpoint.pt")
    flip_16_bytes(run / "checkpoint.pt", model.lm_head.weight)
    config = {
        "max_steps": 3, "progress": False, "model": LLAMA.to_dict(), "out_dir": str(run),
        "optim": {"warmup_iters": 1},
        "data": {"train_path": str(tmp_path / "train.npy"), "val_path": str(tmp_path / "val.npy"),
                 "batch_size": 2},
    }  # fmt: skip
    (tmp_path / "config.json").write_text(json.dumps(config))
    return tmp_path


@pytest.mark.parametrize(
    "argv",
    [
        ["generate", "--checkpoint", "{d}/run/checkpoint.pt", "--tokenizer", "{d}/tok"],
        ["generate", "--checkpoint", "{d}/run", "--tokenizer", "{d}/tok"],  # a run folder
        ["export-hf", "--checkpoint", "{d}/run", "--tokenizer", "{d}/tok", "--out", "{d}/hf"],
        ["train", "{d}/config.json", "--resume"],
        ["train", "{d}/config.json", "--init_from", "{d}/run", "--out_dir", "{d}/new"],
    ],
)
def test_every_command_that_loads_a_checkpoint_checks_it(corrupt_run, capsys, argv):
    assert main([a.format(d=corrupt_run) for a in argv]) == 1
    err = capsys.readouterr().err
    assert f"error: {corrupt_run}/run/checkpoint.pt is corrupt" in err, err
    assert not (corrupt_run / "hf").exists() and not (corrupt_run / "new").exists()


def test_import_hf_checks_the_checksum_of_an_export(tmp_path, capsys):
    model, _ = model_and_optimizer(LLAMA)
    save_checkpoint(model, None, 0, tmp_path / "c.pt")
    assert main(["export-hf", "--checkpoint", str(tmp_path / "c.pt"), "--tokenizer",
                 str(_tokenizer(tmp_path)), "--out", str(tmp_path / "hf")]) == 0  # fmt: skip
    weights = tmp_path / "hf" / "model.safetensors"
    from safetensors import safe_open

    with safe_open(weights, framework="pt") as f:
        assert f.metadata()["checksum"].startswith("sha256:")
    flip_16_bytes(weights, model.token_embeddings.weight)
    assert main(["import-hf", str(tmp_path / "hf"), "--out", str(tmp_path / "back.pt")]) == 1
    assert "model.safetensors is corrupt" in capsys.readouterr().err
    assert not (tmp_path / "back.pt").exists()


def _tokenizer(tmp_path: Path) -> Path:
    vocab = {i: bytes([i]) for i in range(256)}
    Tokenizer(vocab, [], [f"<s{i}>" for i in range(44)]).save_dir(tmp_path / "tok")
    return tmp_path / "tok"
