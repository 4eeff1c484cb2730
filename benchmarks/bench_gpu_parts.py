"""The pieces of a training step on a GPU, timed alone: the levers ``bench_train_step.py``
measures in the whole step, one at a time, at the shapes of the handouts' runs.

- the machine's two ceilings: a device-to-device copy (bytes read + written) and a large
  bf16 matrix product;
- attention forward + backward (bf16, causal) with each ``scaled_dot_product_attention``
  backend, and FlexAttention where it compiles;
- the LM head with the loss, forward + backward, compiled: cs336's chunked cross-entropy
  against ``F.cross_entropy`` on the logits;
- the AdamW update of the TinyStories model's parameters: cs336's compiled update over flat
  buffers, the same per tensor (multi-tensor), and ``torch.optim.AdamW(fused=True)``;
- FP8 matrix products (``torch._scaled_mm``, e4m3, per-tensor scales) against bf16 at the
  feed-forward shapes, with and without the cost of quantizing the activation.

Times are medians of CUDA-event-timed repeats after warm-up.

    PYTHONPATH=python python benchmarks/bench_gpu_parts.py [--only attention,loss,...]
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable

import torch
import torch.nn.functional as F

from cs336 import AdamW, TransformerLM, param_groups
from cs336.nn.fused import chunked_cross_entropy

PARTS = ("ceilings", "head", "attention", "loss", "adamw", "fp8")


def timed(fn: Callable[[], object], repeats: int = 20, warmup: int = 3) -> float:
    """Median milliseconds of ``fn()`` over ``repeats`` CUDA-event-timed calls."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def row(*cells: object) -> None:
    print("| " + " | ".join(str(c) for c in cells) + " |", flush=True)


def ceilings() -> None:
    print("\n### ceilings\n")
    row("what", "ms", "rate")
    row("---", "---:", "---:")
    a = torch.empty(2**30, dtype=torch.uint8, device="cuda").random_()
    b = torch.empty_like(a)
    ms = timed(lambda: b.copy_(a))
    row("copy 1 GiB (read + write)", f"{ms:.3f}", f"{2 * 2**30 / ms / 1e9:.2f} TB/s")
    x = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    ms = timed(lambda: x @ x)
    row("bf16 8192^3 matmul", f"{ms:.3f}", f"{2 * 8192**3 / ms / 1e9:.0f} TFLOP/s")


def head() -> None:
    print("\n### LM head matmuls (forward, grad input, grad weight), bf16, by vocabulary size\n")
    row("rows x d -> vocab", "fwd ms", "dx ms", "dW ms", "TFLOP/s")
    row("---", "---:", "---:", "---:", "---:")
    for d, vocabs in [(512, (10000, 10048, 10240)), (768, (32000, 32064, 32768))]:
        h = torch.randn(32768, d, device="cuda", dtype=torch.bfloat16)
        for vocab in vocabs:
            w = torch.randn(vocab, d, device="cuda", dtype=torch.bfloat16)
            g = torch.randn(32768, vocab, device="cuda", dtype=torch.bfloat16)
            fwd = timed(lambda h=h, w=w: h @ w.T)
            dx = timed(lambda g=g, w=w: g @ w)
            dw = timed(lambda g=g, h=h: g.T @ h)
            rate = 3 * 2 * 32768 * d * vocab / (fwd + dx + dw) / 1e9
            row(f"32768 x {d} -> {vocab}", f"{fwd:.3f}", f"{dx:.3f}", f"{dw:.3f}", f"{rate:.0f}")


def attention() -> None:
    from torch.nn.attention import SDPBackend, sdpa_kernel

    print("\n### attention, bf16, causal, forward + backward\n")
    row("shape (B, H, T, d)", "backend", "ms", "TFLOP/s (causal)")
    row("---", "---", "---:", "---:")
    for b, h, t, d in [(128, 16, 256, 32), (32, 12, 1024, 64)]:
        q, k, v = (
            torch.randn(b, h, t, d, device="cuda", dtype=torch.bfloat16, requires_grad=True)
            for _ in range(3)
        )
        grad = torch.randn_like(q)
        flops = 3.5 * 2 * 2 * b * h * t * t * d / 2  # fwd 2 matmuls, bwd 2.5x, causal half
        backends = {
            "cudnn": SDPBackend.CUDNN_ATTENTION,
            "flash": SDPBackend.FLASH_ATTENTION,
            "efficient": SDPBackend.EFFICIENT_ATTENTION,
        }
        for name, backend in backends.items():

            def run(backend=backend, q=q, k=k, v=v, grad=grad) -> None:
                with sdpa_kernel(backend):
                    out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
                out.backward(grad)

            try:
                ms = timed(run)
                row((b, h, t, d), name, f"{ms:.3f}", f"{flops / ms / 1e9:.0f}")
            except RuntimeError as e:
                row((b, h, t, d), name, "n/a", str(e).splitlines()[0][:60])
        try:
            from torch.nn.attention.flex_attention import create_block_mask, flex_attention

            mask = create_block_mask(lambda b, h, q, kv: q >= kv, None, None, t, t)
            flex = torch.compile(flex_attention)

            def run_flex(flex=flex, q=q, k=k, v=v, mask=mask, grad=grad) -> None:
                flex(q, k, v, block_mask=mask).backward(grad)

            ms = timed(run_flex)
            row((b, h, t, d), "flex (compiled)", f"{ms:.3f}", f"{flops / ms / 1e9:.0f}")
        except Exception as e:  # noqa: BLE001 - a table row, whatever failed
            row((b, h, t, d), "flex (compiled)", "n/a", f"{type(e).__name__}"[:60])


def loss() -> None:
    print("\n### LM head + loss, compiled, forward + backward (bf16 autocast)\n")
    row("rows x d -> vocab", "loss", "ms", "peak GiB")
    row("---", "---", "---:", "---:")
    for n, d, vocab in [(32768, 512, 10000), (32768, 768, 32000)]:
        h = torch.randn(n, d, device="cuda", requires_grad=True)
        w = (torch.randn(vocab, d, device="cuda") * 0.02).requires_grad_()
        t = torch.randint(0, vocab, (n,), device="cuda")
        variants = {
            "chunked (cs336)": chunked_cross_entropy,
            "F.cross_entropy": lambda x, y: F.cross_entropy(x, y),
        }
        for name, fn in variants.items():

            def head(x: torch.Tensor, y: torch.Tensor, fn=fn, w=w) -> torch.Tensor:
                return fn(x @ w.T, y)

            compiled = torch.compile(head)

            def run(compiled=compiled, h=h, t=t) -> None:
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    out = compiled(h, t)
                out.backward()

            torch.cuda.reset_peak_memory_stats()
            ms = timed(run, repeats=10)
            peak = torch.cuda.max_memory_allocated() / 2**30
            row(f"{n} x {d} -> {vocab}", name, f"{ms:.3f}", f"{peak:.2f}")


def adamw() -> None:
    print("\n### AdamW update (+ clip), TinyStories 2024 model (22.7M parameters)\n")
    row("optimizer", "ms", "GB/s (28 B/param)")
    row("---", "---:", "---:")
    from cs336 import clip_grad_norm

    for name in ("cs336 flat, compiled", "cs336 per tensor, compiled", "torch fused"):
        torch.manual_seed(0)
        model = TransformerLM(10000, 256, 512, 4, 16, 2048).cuda()
        groups = param_groups(model, 0.1)
        if name == "torch fused":
            opt: torch.optim.Optimizer = torch.optim.AdamW(groups, lr=1e-3, fused=True)
        else:
            opt = AdamW(groups, lr=1e-3, compile=True, flat="flat" in name, foreach=True)
        params = list(model.parameters())
        grads = [torch.randn_like(p) * 1e-3 for p in params]
        n = sum(p.numel() for p in params)
        skip = torch.tensor(False, device="cuda")

        def run(opt=opt, params=params, grads=grads, skip=skip) -> None:
            for p, g in zip(params, grads, strict=True):
                p.grad = g
            clip_grad_norm(params, 1.0)
            if isinstance(opt, AdamW):
                opt.step(skip=skip)
            else:
                opt.step()

        ms = timed(run)
        row(name, f"{ms:.3f}", f"{28 * n / ms / 1e6:.0f}")


def fp8() -> None:
    print("\n### FP8 (e4m3, per-tensor scales) vs bf16 matmul, forward shapes\n")
    row("M x K x N", "bf16 ms", "fp8 ms", "fp8 + quantize x ms", "speed-up (with quantize)")
    row("---", "---:", "---:", "---:", "---:")
    e4m3 = torch.float8_e4m3fn
    quantize = torch.compile(lambda x: (x * (448.0 / x.abs().amax().clamp(min=1e-12))).to(e4m3))
    for m, k, n in [(32768, 512, 2048), (32768, 2048, 512), (32768, 768, 3072), (32768, 3072, 768)]:
        x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
        w = torch.randn(n, k, device="cuda", dtype=torch.bfloat16)
        bf16 = timed(lambda x=x, w=w: x @ w.T)
        x8, w8 = x.to(e4m3), w.to(e4m3)
        one = torch.ones((), device="cuda")

        def mm(x8=x8, w8=w8, one=one) -> torch.Tensor:
            return torch._scaled_mm(x8, w8.T, scale_a=one, scale_b=one, out_dtype=torch.bfloat16)

        try:
            f8 = timed(mm)
            f8q = timed(lambda x=x, w8=w8, one=one: torch._scaled_mm(
                quantize(x), w8.T, scale_a=one, scale_b=one, out_dtype=torch.bfloat16))  # fmt: skip
            row(f"{m} x {k} x {n}", f"{bf16:.3f}", f"{f8:.3f}", f"{f8q:.3f}",
                f"{bf16 / f8:.2f}x ({bf16 / f8q:.2f}x)")  # fmt: skip
        except RuntimeError as e:
            row(f"{m} x {k} x {n}", f"{bf16:.3f}", "n/a", "n/a", str(e).splitlines()[0][:60])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(PARTS), help=f"comma list of {PARTS}")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench_gpu_parts.py needs CUDA")
    print(f"{torch.cuda.get_device_name()}; torch {torch.__version__}")
    parts = {"ceilings": ceilings, "head": head, "attention": attention, "loss": loss,
             "adamw": adamw, "fp8": fp8}  # fmt: skip
    for part in args.only.split(","):
        try:
            parts[part]()
        except Exception as e:  # noqa: BLE001 - report it and measure the other parts
            print(f"\n{part} failed: {type(e).__name__}: {str(e).splitlines()[0][:300]}")


if __name__ == "__main__":
    main()
