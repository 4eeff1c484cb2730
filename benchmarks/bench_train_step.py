"""Training-step throughput: our TransformerLM (reference and fast paths) against a plain
PyTorch baseline of the same model, on the TinyStories config of the handout.

Paths (same architecture, same initial weights, same batch):

- ``reference``: ``cs336.TransformerLM`` as the handout writes it (reference attention,
  float32, no compile) with ``cs336.AdamW`` (per-parameter loop);
- ``fast``: ``attention="fused"``, bf16 autocast, ``torch.compile``, TF32,
  ``cs336.AdamW(foreach=True)``;
- ``fast+torch-adamw``: the fast model with ``torch.optim.AdamW(fused=True)``;
- ``baseline``: the model written the way a PyTorch user would (``nn.Linear``,
  ``nn.RMSNorm``, ``F.scaled_dot_product_attention(is_causal=True)``, ``F.gelu``), bf16
  autocast, ``torch.compile``, TF32, ``torch.optim.AdamW(fused=True)``.

A step is zero_grad, forward, cross-entropy, backward, clip to norm 1, optimizer step.
Prints a Markdown table: median step time over ``--steps`` timed steps (after
``--warmup`` untimed ones that include compilation), tokens/s, MFU against the bf16 dense
peak (``--peak-tflops``, or looked up from the GPU's name), speed relative to the
baseline, the first-step loss of each path (they start from identical weights, so they
must agree up to bf16 rounding; checked) and peak CUDA memory.

    PYTHONPATH=python python benchmarks/bench_train_step.py            # GPU
    PYTHONPATH=python python benchmarks/bench_train_step.py --device cpu --tiny  # smoke test
"""

from __future__ import annotations

import argparse
import contextlib
import math
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cs336 import AdamW, ModelConfig, TransformerLM, clip_grad_norm, cross_entropy
from cs336.accounting import peak_flops as device_peak_flops
from cs336.accounting import train_flops_per_token
from cs336.training.step import train_step

TINYSTORIES = ModelConfig(
    vocab_size=10000, context_length=256, d_model=512, num_layers=4, num_heads=16, d_ff=2048
)
TINY = ModelConfig(
    vocab_size=512, context_length=64, d_model=64, num_layers=2, num_heads=4, d_ff=256
)
PATHS = ("reference", "fast", "fast+torch-adamw", "baseline")
LR, WEIGHT_DECAY, LOSS_RTOL = 3e-4, 0.1, 0.02


# ---- the plain PyTorch baseline ----------------------------------------------------------


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        d = cfg.d_model
        self.n_heads = cfg.num_heads
        self.ln1 = nn.RMSNorm(d, eps=1e-5)
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.proj = nn.Linear(d, d, bias=False)
        self.ln2 = nn.RMSNorm(d, eps=1e-5)
        self.fc1 = nn.Linear(d, cfg.d_ff, bias=False)
        self.fc2 = nn.Linear(cfg.d_ff, d, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=-1)
        q, k, v = (z.view(b, t, self.n_heads, -1).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, d))
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class PlainGPT(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.tok = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos = nn.Embedding(cfg.context_length, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.num_layers))
        self.ln_f = nn.RMSNorm(cfg.d_model, eps=1e-5)
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)

    def forward(self, idx: Tensor) -> Tensor:
        x = self.tok(idx) + self.pos(torch.arange(idx.shape[1], device=idx.device))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))

    @torch.no_grad()
    def load_from(self, ours: TransformerLM) -> None:
        """Copy our weights (so both start identical): q/k/v stacked into one matrix."""
        self.tok.weight.copy_(ours.token_embeddings.weight)
        self.pos.weight.copy_(ours.position_embeddings.weight)
        for mine, theirs in zip(self.blocks, ours.layers, strict=True):
            a = theirs.attn
            mine.qkv.weight.copy_(torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight]))
            mine.proj.weight.copy_(a.output_proj.weight)
            mine.ln1.weight.copy_(theirs.ln1.weight)
            mine.ln2.weight.copy_(theirs.ln2.weight)
            mine.fc1.weight.copy_(theirs.ffn.w1.weight)
            mine.fc2.weight.copy_(theirs.ffn.w2.weight)
        self.ln_f.weight.copy_(ours.ln_final.weight)
        self.head.weight.copy_(ours.lm_head.weight)


# ---- one path ------------------------------------------------------------------------------


def build(path: str, cfg: ModelConfig, init: TransformerLM, device: str, compile_: bool):
    """Model, optimizer, loss function, autocast flag and the clip function for ``path``."""
    fast = path != "reference"
    if path == "baseline":
        model: nn.Module = PlainGPT(cfg)
        model.load_from(init)
    else:
        model = TransformerLM.from_config(
            ModelConfig(**{**cfg.to_dict(), "attention": "fused" if fast else "reference"})
        )
        model.load_state_dict(init.state_dict())
    model.to(device).train()
    fused = device.startswith("cuda")  # torch's fused AdamW is CUDA-only here
    if path in ("baseline", "fast+torch-adamw"):
        opt: torch.optim.Optimizer = torch.optim.AdamW(
            model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY, fused=fused
        )
        clip: Callable = torch.nn.utils.clip_grad_norm_
    else:
        opt = AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY, foreach=fast)
        clip = clip_grad_norm
    loss_fn: Callable = F.cross_entropy if path == "baseline" else cross_entropy
    if fast and compile_:
        model = torch.compile(model)
    return model, opt, loss_fn, fast, clip


def run_path(path: str, cfg: ModelConfig, init, x, y, args) -> dict[str, float]:
    device = args.device
    torch.set_float32_matmul_precision("high" if path != "reference" else "highest")
    model, opt, loss_fn, autocast, clip = build(path, cfg, init, device, args.compile)
    device_type = device.split(":")[0]

    def amp() -> contextlib.AbstractContextManager:
        if autocast:
            return torch.autocast(device_type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def step() -> torch.Tensor:
        if path != "baseline":  # the trainer's own step
            return train_step(model, opt, [(x, y)], grad_clip=1.0, autocast=amp).loss
        opt.zero_grad(set_to_none=True)
        with amp():
            logits = model(x)
            loss = loss_fn(logits.reshape(-1, cfg.vocab_size), y.reshape(-1))
        loss.backward()
        clip(model.parameters(), 1.0)
        opt.step()
        return loss.detach()

    def sync() -> None:
        if device_type == "cuda":
            torch.cuda.synchronize()

    if device_type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    first_loss = float(step())  # also the first warm-up step (compilation)
    for _ in range(args.warmup - 1):
        step()
    sync()
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    mem = torch.cuda.max_memory_allocated() / 2**30 if device_type == "cuda" else math.nan
    return {"seconds": seconds, "loss": first_loss, "mem_gib": mem}


def peak_flops(args) -> float | None:
    if args.peak_tflops is not None:
        return args.peak_tflops * 1e12
    if args.device.startswith("cuda"):
        return device_peak_flops(torch.cuda.get_device_name())
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="torch device (cuda)")
    parser.add_argument("--tiny", action="store_true", help="a tiny config (smoke test)")
    parser.add_argument("--batch-size", type=int, help="sequences per step (128; tiny: 8)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per path (20)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first (5)")
    parser.add_argument("--peak-tflops", type=float, help="bf16 peak TFLOP/s for MFU")
    parser.add_argument(
        "--no-compile", dest="compile", action="store_false", help="skip torch.compile"
    )
    parser.add_argument("--paths", nargs="+", choices=PATHS, default=list(PATHS))
    args = parser.parse_args()
    if args.warmup < 1 or args.steps < 1:
        parser.error("--warmup and --steps must be >= 1")

    cfg = TINY if args.tiny else TINYSTORIES
    batch = args.batch_size or (8 if args.tiny else 128)
    torch.manual_seed(0)
    init = TransformerLM.from_config(cfg)
    data = torch.randint(0, cfg.vocab_size, (batch, cfg.context_length + 1))
    x, y = data[:, :-1].to(args.device), data[:, 1:].to(args.device)
    peak = peak_flops(args)
    flops_per_token = train_flops_per_token(cfg)
    tokens = batch * cfg.context_length

    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else args.device
    print(f"device: {name}; torch {torch.__version__}; compile: {args.compile}")
    print(f"model: {cfg.to_dict()}; batch {batch}; {flops_per_token:.4e} train FLOPs/token")
    results = {}
    for p in args.paths:
        results[p] = run_path(p, cfg, init, x, y, args)
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()  # the previous path's model and optimizer are gone

    base = results.get("baseline")
    print("\n| path | step ms | tokens/s | MFU | vs baseline | first loss | peak GiB |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for p, r in results.items():
        tps = tokens / r["seconds"]
        mfu = f"{100 * tps * flops_per_token / peak:.1f}%" if peak else "n/a"
        ratio = f"{base['seconds'] / r['seconds']:.2f}x" if base else "n/a"
        print(
            f"| {p} | {1e3 * r['seconds']:.1f} | {tps:,.0f} | {mfu} | {ratio} "
            f"| {r['loss']:.5f} | {r['mem_gib']:.2f} |"
        )
    ref_loss = next(iter(results.values()))["loss"]
    bad = {
        p: r["loss"] for p, r in results.items() if abs(r["loss"] - ref_loss) > LOSS_RTOL * ref_loss
    }
    if bad:
        raise SystemExit(f"first-step losses disagree with {next(iter(results))}: {bad}")
    print(f"\nfirst-step losses agree within {100 * LOSS_RTOL:g}%")


if __name__ == "__main__":
    main()
