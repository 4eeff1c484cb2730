"""The fast path's kernels (cs336.nn.fused) against the reference (cs336.nn.functional)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import cs336.nn.fused as fused
from cs336.nn.functional import cross_entropy
from cs336.nn.fused import chunked_cross_entropy


@given(
    lead=st.lists(st.integers(1, 6), min_size=1, max_size=3).map(tuple),
    vocab=st.integers(2, 40),
    chunk_elements=st.sampled_from([1, 7, 64, 1 << 25]),
    seed=st.integers(0, 2**31 - 1),
    dtype=st.sampled_from([torch.float32, torch.float64]),
)
def test_chunked_cross_entropy_equals_the_reference(lead, vocab, chunk_elements, seed, dtype):
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn((*lead, vocab), generator=g, dtype=dtype) * 4).requires_grad_()
    targets = torch.randint(0, vocab, lead, generator=g)
    old, fused._CHUNK_ELEMENTS = fused._CHUNK_ELEMENTS, chunk_elements  # every chunk size
    try:
        ours = chunked_cross_entropy(logits, targets)
    finally:
        fused._CHUNK_ELEMENTS = old
    ref = cross_entropy(logits, targets)
    assert ours.dtype == ref.dtype == dtype
    torch.testing.assert_close(ours, ref)
    upstream = torch.rand((), generator=g, dtype=dtype) + 0.5
    (g_ours,) = torch.autograd.grad(ours * upstream, logits)
    (g_ref,) = torch.autograd.grad(ref * upstream, logits)
    torch.testing.assert_close(g_ours, g_ref)


def test_chunked_cross_entropy_of_bf16_logits_is_float32_with_a_bf16_gradient():
    g = torch.Generator().manual_seed(0)
    logits = (torch.randn(37, 101, generator=g) * 3).bfloat16().requires_grad_()
    targets = torch.randint(0, 101, (37,), generator=g)
    ours = chunked_cross_entropy(logits, targets)
    ref = cross_entropy(logits, targets)  # the reference upcasts the same bf16 values
    assert ours.dtype == torch.float32
    torch.testing.assert_close(ours, ref)
    (g_ours,) = torch.autograd.grad(ours, logits)
    (g_ref,) = torch.autograd.grad(ref, logits)
    assert g_ours.dtype == torch.bfloat16
    torch.testing.assert_close(g_ours.float(), g_ref.float(), atol=1e-5, rtol=1e-2)


def test_chunked_cross_entropy_is_stable_and_validates():
    logits = torch.tensor([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4]], requires_grad=True)
    loss = chunked_cross_entropy(logits, torch.tensor([0, 0]))
    torch.testing.assert_close(loss, cross_entropy(logits, torch.tensor([0, 0])))
    loss.backward()
    assert torch.isfinite(logits.grad).all()
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        chunked_cross_entropy(torch.zeros(2, 3, 5), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="integer"):
        chunked_cross_entropy(torch.zeros(2, 5), torch.zeros(2))
