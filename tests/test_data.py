"""Token files and batches: get_batch on a memmap (ranges, shift by one, dtype, device),
sequential validation batches, and every bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from cs336 import get_batch, open_tokens
from cs336.training.data import check_tokens, eval_batches, token_id_range


@pytest.fixture
def memmap(tmp_path):
    path = tmp_path / "tokens.npy"
    np.save(path, np.arange(1000, dtype=np.uint16))
    return open_tokens(path)


def test_open_tokens_is_a_read_only_memmap(memmap):
    assert isinstance(memmap, np.memmap)
    with pytest.raises(ValueError):
        memmap[0] = 1


def test_get_batch_on_a_memmap(memmap):
    x, y = get_batch(memmap, 16, 32, "cpu")
    assert x.shape == y.shape == (16, 32)
    assert x.dtype == y.dtype == torch.int64
    assert x.device.type == "cpu"
    # tokens are 0..999, so each row is start, start+1, ... and y is x shifted by one
    assert torch.equal(y, x + 1)
    assert torch.equal(x, x[:, :1] + torch.arange(32))


@given(
    n=st.integers(2, 300),
    batch=st.integers(1, 8),
    ctx=st.integers(1, 40),
    seed=st.integers(0, 2**31),
)
def test_starts_stay_in_range(n, batch, ctx, seed):
    tokens = np.arange(n, dtype=np.int64)
    if n < ctx + 1:
        with pytest.raises(ValueError, match="at least"):
            get_batch(tokens, batch, ctx, "cpu")
        return
    g = torch.Generator().manual_seed(seed)
    x, y = get_batch(tokens, batch, ctx, "cpu", generator=g)
    starts = x[:, 0]
    assert int(starts.min()) >= 0
    assert int(starts.max()) <= n - ctx - 1
    assert torch.equal(y, x + 1)


def test_every_start_is_reachable():
    tokens = np.arange(7)
    g = torch.Generator().manual_seed(0)
    x, _ = get_batch(tokens, 500, 4, "cpu", generator=g)
    assert set(x[:, 0].tolist()) == {0, 1, 2}  # [0, len - ctx - 1]


def test_a_seeded_generator_repeats_batches(memmap):
    a = get_batch(memmap, 4, 8, "cpu", generator=torch.Generator().manual_seed(3))
    b = get_batch(memmap, 4, 8, "cpu", generator=torch.Generator().manual_seed(3))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_unusable_device_surfaces_torchs_own_error(memmap):
    with pytest.raises(RuntimeError) as ours:
        get_batch(memmap, 2, 4, "not-a-device")
    with pytest.raises(RuntimeError) as torchs:
        torch.device("not-a-device")
    assert str(ours.value) == str(torchs.value)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_batches_arrive_on_the_device(memmap):
    x, y = get_batch(memmap, 4, 8, "cuda")
    assert x.is_cuda and y.is_cuda and torch.equal(y.cpu(), x.cpu() + 1)


@pytest.mark.parametrize(("batch", "ctx"), [(0, 4), (2, 0)])
def test_bad_sizes(memmap, batch, ctx):
    with pytest.raises(ValueError, match="must be >= 1"):
        get_batch(memmap, batch, ctx, "cpu")


def test_eval_batches_are_sequential_and_cover_the_file():
    tokens = np.arange(23)
    batches = list(eval_batches(tokens, 2, 4, "cpu"))
    starts = [row[0] for x, _ in batches for row in x.tolist()]
    assert starts == [0, 4, 8, 12, 16]  # (23 - 1) // 4 = 5 windows; the last batch has 1
    assert [len(x) for x, _ in batches] == [2, 2, 1]
    for x, y in batches:
        assert torch.equal(y, x + 1)
    assert len(list(eval_batches(tokens, 2, 4, "cpu", max_batches=1))) == 1


def test_open_tokens_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.npy"):
        open_tokens(tmp_path / "missing.npy")
    np.save(tmp_path / "2d.npy", np.zeros((2, 3), dtype=np.uint16))
    with pytest.raises(ValueError, match=r"1-D integer array.*\(2, 3\)"):
        open_tokens(tmp_path / "2d.npy")
    np.save(tmp_path / "float.npy", np.zeros(3, dtype=np.float32))
    with pytest.raises(ValueError, match="float32"):
        open_tokens(tmp_path / "float.npy")
    (tmp_path / "junk.npy").write_bytes(b"not an npy file at all")
    with pytest.raises(ValueError, match="not a readable .npy"):
        open_tokens(tmp_path / "junk.npy")


def test_check_tokens_names_the_id_beyond_the_vocabulary():
    tokens = np.array([1, 2, 300, 4, 5], dtype=np.uint16)
    check_tokens(tokens, 2, 301, "t.npy")
    with pytest.raises(ValueError, match=r"t.npy contains token id 300.*vocab_size is 300"):
        check_tokens(tokens, 2, 300, "t.npy")
    with pytest.raises(ValueError, match="has 5 tokens"):
        check_tokens(tokens, 5, 1000, "t.npy")
    assert token_id_range(tokens) == (1, 300)


@pytest.mark.parametrize("dtype", [np.int16, np.int32, np.int64])
def test_check_tokens_refuses_negative_ids_of_signed_files(dtype):
    """A signed file may hold negative numbers: they pass a vocabulary check by the largest
    id alone, then index the embedding from its end (or fail deep inside the model)."""
    tokens = np.array([1, 2, -3, 4, 5], dtype=dtype)
    with pytest.raises(ValueError, match=r"t.npy contains -3, which is no token id"):
        check_tokens(tokens, 2, 300, "t.npy")
    check_tokens(np.abs(tokens), 2, 300, "t.npy")


def test_the_id_range_is_read_in_chunks(monkeypatch):
    import cs336.training.data as data

    monkeypatch.setattr(data, "_SCAN_CHUNK", 3)
    tokens = np.array([5, 6, 7, 0, 9, 8, 4, 12], dtype=np.uint32)
    assert token_id_range(tokens) == (0, 12)
    assert token_id_range(tokens[:1]) == (5, 5)
    with pytest.raises(ValueError, match="empty"):
        token_id_range(tokens[:0])


@pytest.mark.parametrize("parts", [1, 2, 3])
def test_eval_batches_split_each_batch_over_processes(parts):
    """Process r of n gets the r-th slice of every batch (the size of its training
    micro-batch); together the processes see exactly the single-process windows."""
    tokens = np.arange(200)
    whole = [x[:, 0].tolist() for x, _ in eval_batches(tokens, 6, 4, "cpu", max_batches=5)]
    shares = [
        [
            x[:, 0].tolist()
            for x, _ in eval_batches(tokens, 6, 4, "cpu", max_batches=5, part=(r, parts))
        ]
        for r in range(parts)
    ]
    assert all(len(b) <= -(-6 // parts) for share in shares for b in share)
    assert sorted(s for share in shares for b in share for s in b) == sorted(
        s for b in whole for s in b
    )
    with pytest.raises(ValueError, match="part must be"):
        next(eval_batches(tokens, 6, 4, "cpu", part=(parts, parts)))


@pytest.mark.parametrize("dtype", [np.uint16, np.uint32, np.int32, np.int64, np.uint8])
def test_batches_keep_ids_of_every_width_including_the_top_bit(dtype):
    """Ids travel in the file's own width (viewed signed) and are widened on the device:
    the largest ids of uint16 / uint32 files must come back unchanged."""
    top = np.iinfo(dtype).max
    tokens = np.array([0, 1, top, top - 1, 2**7, top // 2 + 1, 5, top], dtype=dtype)
    from cs336.training.data import batch_at

    x, y = batch_at(tokens, np.array([0, 2]), 5, "cpu")
    assert x.dtype == y.dtype == torch.int64 and x.is_contiguous() and y.is_contiguous()
    assert x.tolist() == [tokens[0:5].tolist(), tokens[2:7].tolist()]
    assert y.tolist() == [tokens[1:6].tolist(), tokens[3:8].tolist()]
