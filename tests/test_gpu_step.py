"""The fast training step on CUDA (skipped without a GPU; benchmarks/gpu_check.sh runs
them on an H200): the compiled step against the eager float32 reference, the chunked loss
in bf16, the flat compiled AdamW update against the CPU's, and the claim that a step (batch
included) makes no host sync, checked with CUDA's sync debug mode.

Each test starts from fresh torch.compile caches, so they pass alone and in any order."""

from __future__ import annotations

import contextlib
import copy
import warnings
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from cs336 import AdamW, ModelConfig, TransformerLM
from cs336.nn.functional import cross_entropy
from cs336.nn.fused import chunked_cross_entropy
from cs336.training.config import TrainConfig
from cs336.training.data import batch_at, sample_starts
from cs336.training.step import (
    autocast_for,
    build_model,
    build_optimizer,
    compile_enabled,
    train_step,
    wrap_model,
)

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]
MODEL = dict(vocab_size=512, context_length=64, d_model=64, num_layers=2, num_heads=4, d_ff=256)


@pytest.fixture(autouse=True)
def fresh_compile_caches() -> Iterator[None]:
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@contextlib.contextmanager
def no_host_sync() -> Iterator[None]:
    """CUDA's sync debug mode at "error" (a synchronizing call raises), always restored.
    Setting the mode warns that it is a prototype; that one warning is expected."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*prototype", category=UserWarning)
        torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode("default")


def _config(**run) -> TrainConfig:
    model = {**MODEL, **run.pop("model", {})}
    data = {"train_path": "t.npy", "val_path": "v.npy", "batch_size": 8}
    return TrainConfig.from_dict({"model": model, "data": data, "device": "cuda", **run})


def _built(cfg: TrainConfig):
    device = torch.device("cuda")
    model = build_model(cfg, device)
    compiled = compile_enabled(cfg, device)
    opt = build_optimizer(cfg, model, device, compiled=compiled)
    return model, opt, wrap_model(model, device, compiled=compiled), autocast_for(cfg.dtype, device)


def _losses(cfg: TrainConfig, steps: int = 8) -> list[float]:
    _, opt, run, autocast = _built(cfg)
    g = torch.Generator().manual_seed(0)
    data = torch.randint(0, 512, (steps, 8, 65), generator=g).cuda()
    stats = [
        train_step(run, opt, [(d[:, :-1], d[:, 1:])], grad_clip=1.0, autocast=autocast)
        for d in data
    ]
    return [float(s.loss) for s in stats]


def test_the_default_cuda_step_compiles_and_tracks_the_fp32_reference():
    """Defaults on CUDA: bf16, fused kernels, blocks and head compiled, the flat AdamW
    update compiled; within bf16 rounding of the eager float32 reference kernels."""
    cfg = _config()
    assert compile_enabled(cfg, torch.device("cuda"))
    fast = _losses(cfg)  # a compile that fell back to eager would warn: an error here
    reference = _losses(_config(compile=False, dtype="float32", model={"kernels": "reference"}))
    assert all(np.isfinite(fast))
    assert abs(fast[0] - reference[0]) < 0.02 * reference[0]
    assert abs(fast[-1] - reference[-1]) < 0.05 * reference[0]
    torch_adamw = _losses(_config(optim={"impl": "torch"}))
    assert abs(torch_adamw[-1] - fast[-1]) < 0.05 * reference[0]


def test_a_compiled_step_with_its_batch_makes_no_host_sync():
    """What `cs336 train` does each step (draw window starts, copy the batch pinned and
    non-blocking, set the learning rate, the compiled step with clipping, the non-finite
    guard and the flat AdamW update) under CUDA's sync debug mode: after warm-up, nothing
    waits for the GPU."""
    cfg = _config()
    _, opt, run, autocast = _built(cfg)
    tokens = np.random.default_rng(0).integers(0, 512, 10_000).astype(np.uint16)
    sampler = torch.Generator().manual_seed(0)

    def step() -> None:
        for group in opt.param_groups:
            group["lr"] = 1e-3
        starts = sample_starts(len(tokens), 8, 64, generator=sampler)
        batch = batch_at(tokens, starts, 64, "cuda")
        train_step(run, opt, [batch], grad_clip=1.0, autocast=autocast)

    for _ in range(3):  # compiles
        step()
    torch.cuda.synchronize()
    with no_host_sync():
        for _ in range(3):
            step()
    torch.cuda.synchronize()


def test_a_non_finite_step_is_skipped_on_the_device_without_a_host_sync():
    torch.manual_seed(0)
    model = TransformerLM.from_config(ModelConfig(**MODEL)).cuda()
    opt = AdamW(model.parameters(), lr=1e-2, foreach=True)
    x = torch.randint(0, 512, (4, 65), device="cuda")
    train_step(model, opt, [(x[:, :-1], x[:, 1:])])
    before = copy.deepcopy(model.state_dict())
    hook = model.lm_head.register_forward_hook(lambda m, i, out: out * float("nan"))
    try:
        with no_host_sync():
            stats = train_step(model, opt, [(x[:, :-1], x[:, 1:])], grad_clip=1.0)
    finally:
        hook.remove()
    assert not bool(stats.applied)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_chunked_cross_entropy_in_bf16_on_cuda_matches_the_reference():
    g = torch.Generator(device="cuda").manual_seed(0)
    logits = (torch.randn(300, 1000, device="cuda", generator=g) * 3).bfloat16()
    logits.requires_grad_()
    targets = torch.randint(0, 1000, (300,), device="cuda", generator=g)
    ours, ref = chunked_cross_entropy(logits, targets), cross_entropy(logits, targets)
    torch.testing.assert_close(ours, ref)
    (g1,) = torch.autograd.grad(ours, logits)
    (g2,) = torch.autograd.grad(ref, logits)
    assert g1.dtype == torch.bfloat16
    torch.testing.assert_close(g1.float(), g2.float(), atol=1e-5, rtol=1e-2)


@pytest.mark.parametrize("flat", [False, True])
def test_the_compiled_adamw_update_on_cuda_equals_the_cpu_update(flat):
    torch.manual_seed(0)
    cpu = [torch.nn.Parameter(torch.randn(33, 17)) for _ in range(3)]
    gpu = [torch.nn.Parameter(p.detach().cuda()) for p in cpu]
    opt_cpu = AdamW(cpu, lr=3e-3, weight_decay=0.1)
    opt_gpu = AdamW(gpu, lr=3e-3, weight_decay=0.1, compile=True, flat=flat)
    for _ in range(5):
        for p, q in zip(cpu, gpu, strict=True):
            p.grad = torch.randn_like(p)
            q.grad = p.grad.cuda()
        opt_cpu.step(skip=torch.tensor(False))
        opt_gpu.step(skip=torch.tensor(False, device="cuda"))
    assert opt_gpu._gated_ran  # compiled, not the eager fallback
    for p, q in zip(cpu, gpu, strict=True):
        torch.testing.assert_close(q.detach().cpu(), p.detach(), atol=1e-6, rtol=1e-5)


def test_a_cuda_model_is_drawn_on_the_device_from_its_seed():
    """build_model draws a CUDA model's weights there (no CPU copy made first): the same
    seed gives the same weights, another seed others, and the weights have the handout's
    truncated normal (within 3 std of 0)."""
    device = torch.device("cuda")
    torch.cuda.synchronize()
    a = build_model(_config(seed=3), device)
    b = build_model(_config(seed=3), device)
    c = build_model(_config(seed=4), device)
    for (name, pa), pb, pc in zip(
        a.named_parameters(), b.parameters(), c.parameters(), strict=True
    ):
        assert pa.device.type == "cuda", name
        assert torch.equal(pa, pb), name
        if pa.dim() == 2:
            assert not torch.equal(pa, pc), name
    emb = a.token_embeddings.weight.detach()  # the default init: std 0.02, cut at 3 std
    assert float(emb.abs().max()) <= 0.06 + 1e-6 and 0.018 < float(emb.std()) < 0.022
