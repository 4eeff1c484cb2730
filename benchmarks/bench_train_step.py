"""Training throughput of what ``cs336 train`` runs, against plain PyTorch baselines.

Two measurements (``--mode``):

- ``step``: in one process, cs336's own ``train_step`` built from a ``TrainConfig`` the
  way ``cs336 train`` builds it (``build_model``, ``build_optimizer``, ``wrap_model``,
  ``autocast_for``): the defaults first, then each option (or experiment) alone; and the
  baselines of ``plain_gpt.py``: eager, compiled with the loss outside the graph, and
  nanoGPT's step (loss inside the compiled forward, fused AdamW, ``clip_grad_norm_``). All
  start from the same weights and train on the same batch. Steps run back to back (the
  GPU is synchronised once per block of ``--steps``), variants take turns over
  ``--repeats`` blocks; the table has the median step time, tokens/s, MFU against the
  device's bf16 peak, the ratio to the fastest baseline, the first-step loss (checked
  against the baseline's: they start identical) and the peak CUDA memory. ``--profile``
  adds a torch.profiler table of the default's and nanoGPT's kernels.
- ``e2e``: ``cs336 train`` in its own process on a token file (tokens/s from its
  metrics.jsonl), and the baselines' own training loop in their own processes on the same
  file: the ratio a user sees.

    PYTHONPATH=python python benchmarks/bench_train_step.py --device cpu --shape cpu
    PYTHONPATH=python python benchmarks/bench_train_step.py --mode e2e --shape cpu
    PYTHONPATH=python python benchmarks/bench_train_step.py --device cuda --shape tinystories
    PYTHONPATH=python python benchmarks/bench_train_step.py --device cpu --shape tiny  # smoke
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from plain_gpt import BASELINES, baseline_step
from torch import Tensor

from cs336 import AdamW, ModelConfig, TransformerLM, param_groups
from cs336.accounting import peak_flops, train_flops_per_token
from cs336.training.allocator import keep_freed_memory
from cs336.training.config import DataConfig, TrainConfig, apply_overrides
from cs336.training.data import batch_at, sample_starts
from cs336.training.step import (
    autocast_for,
    build_model,
    build_optimizer,
    compile_backend,
    compile_enabled,
    train_step,
    wrap_model,
)

ROOT = Path(__file__).resolve().parent.parent
# name -> (model fields, batch size)
SHAPES: dict[str, tuple[dict, int]] = {
    # the CPU shape of issue 11: d 192, 4 layers, 6 heads, d_ff 768, vocab 4096, ctx 128
    "cpu": (dict(vocab_size=4096, context_length=128, d_model=192, num_layers=4,
                 num_heads=6, d_ff=768), 16),
    # the 2024 handout's TinyStories model (GELU, learned positions)
    "tinystories": (dict(vocab_size=10000, context_length=256, d_model=512, num_layers=4,
                         num_heads=16, d_ff=2048), 128),
    # the 2025 handout's (SwiGLU d_ff 1344, RoPE)
    "tinystories-2025": (dict(vocab_size=10000, context_length=256, d_model=512,
                              num_layers=4, num_heads=16, d_ff=1344, ffn="swiglu",
                              position="rope"), 128),
    # GPT-2 small's shape with a 32K vocabulary (configs/2024/gpt2_small.toml)
    "gpt2-small": (dict(vocab_size=32000, context_length=1024, d_model=768, num_layers=12,
                        num_heads=12, d_ff=3072), 32),
    "tiny": (dict(vocab_size=512, context_length=64, d_model=64, num_layers=2, num_heads=4,
                  d_ff=256), 8),
}  # fmt: skip
# variant -> TrainConfig overrides applied alone over the defaults
VARIANTS: dict[str, dict[str, object]] = {
    "default": {},
    "reference kernels": {"model.kernels": "reference"},
    "compile=true": {"compile": True},
    "compile=false": {"compile": False},
    "optim.impl=torch": {"optim.impl": "torch"},
    "dtype=float32": {"dtype": "float32"},
}
LOSS_RTOL = 0.02  # first-step losses: same weights, bf16 rounding at most


def _whole_model(model, cfg, device, optimizer):
    """The model compiled as one graph (torch.compile of the whole TransformerLM)."""
    return torch.compile(model, backend=compile_backend(device.type)), optimizer


def _block_by_block(model, cfg, device, optimizer):
    """Each block compiled once and reused, and the head with the loss (CompiledLM)."""
    from cs336.nn.compiled import CompiledLM

    return CompiledLM(model, compile_backend(device.type)), optimizer


def _per_tensor_adamw(model, cfg, device, optimizer):
    """AdamW multi-tensor over the separate parameters (not flat), compiled."""
    groups = param_groups(model, cfg.optim.weight_decay)
    opt = AdamW(groups, lr=cfg.optim.lr, betas=cfg.optim.betas, foreach=True, compile=True)
    return wrap_model(model, device, compiled=True), opt


def _torch_cross_entropy(model, cfg, device, optimizer):
    """The loss as F.cross_entropy on the logits inside the compiled head (nanoGPT's)."""
    model._loss = lambda logits, t: F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), t.reshape(-1)
    )
    return wrap_model(model, device, compiled=True), optimizer


def _cuda_graphs(model, cfg, device, optimizer):
    """Blocks and head compiled with mode="reduce-overhead" (CUDA graphs: no launch gaps)."""
    from cs336.nn.compiled import CompiledLM

    run = CompiledLM(model, compile_backend(device.type))
    run._blocks = [torch.compile(layer, mode="reduce-overhead") for layer in model.layers]
    run._head = torch.compile(model.head, mode="reduce-overhead")
    return run, optimizer


#: Experiments: levers measured against the default, not config options. Each builds the
#: default's model and optimizer, then changes one thing.
EXPERIMENTS: dict[str, Callable] = {
    "exp: whole-model compile": _whole_model,
    "exp: block-by-block compile": _block_by_block,
    "exp: AdamW per tensor (not flat)": _per_tensor_adamw,
    "exp: loss F.cross_entropy in graph": _torch_cross_entropy,
    "exp: CUDA graphs (reduce-overhead)": _cuda_graphs,
}


# ---- cs336: what `cs336 train` builds -------------------------------------------------------


def train_config(model: dict, batch: int, device: str, overrides: dict[str, object]) -> TrainConfig:
    d = {
        "model": model,
        "data": {"train_path": "unused.npy", "val_path": "unused.npy", "batch_size": batch},
        "device": device,
        "optim": {"lr": 3e-4},
    }
    return TrainConfig.from_dict(apply_overrides(d, overrides))


def cs336_step(
    cfg: TrainConfig, device: torch.device, init: TransformerLM, experiment: Callable | None = None
):
    model = build_model(cfg, device)
    model.load_state_dict(init.state_dict())
    compiled = compile_enabled(cfg, device)
    optimizer = build_optimizer(cfg, model, device, compiled=compiled)
    if experiment is None:
        run = wrap_model(model, device, compiled=compiled)
    else:
        run, optimizer = experiment(model, cfg, device, optimizer)
    autocast = autocast_for(cfg.dtype, device)

    def step(x: Tensor, y: Tensor) -> Tensor:
        return train_step(
            run, optimizer, [(x, y)], grad_clip=cfg.optim.grad_clip, autocast=autocast
        ).loss

    return step


# ---- step mode -------------------------------------------------------------------------------


def _profile(name: str, step: Callable, x: Tensor, y: Tensor, steps: int, rows: int) -> None:
    """torch.profiler over ``steps`` steps: the kernels by total device time per step."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU, ProfilerActivity.CUDA]
    torch.cuda.synchronize()
    with profile(activities=activities) as prof:
        for _ in range(steps):
            step(x, y)
        torch.cuda.synchronize()
    events = [e for e in prof.key_averages() if e.device_type.name == "CUDA"]
    total = sum(e.self_device_time_total for e in events)
    print(f"\n### profile: {name} ({steps} steps; per step: {total / steps / 1e3:.2f} ms of "
          f"kernels, {sum(e.count for e in events) / steps:.0f} launches)\n")  # fmt: skip
    print("| kernel | ms/step | calls/step | share |")
    print("|---|---:|---:|---:|")
    for e in sorted(events, key=lambda e: -e.self_device_time_total)[:rows]:
        ms, share = e.self_device_time_total / steps / 1e3, 100 * e.self_device_time_total / total
        name = e.key[:90].replace("|", "/")
        print(f"| {name} | {ms:.3f} | {e.count / steps:.0f} | {share:.1f}% |")


def step_batch(
    path: str | None, vocab_size: int, batch: int, ctx: int, device: torch.device
) -> tuple[Tensor, Tensor]:
    """The one batch every step runs, inputs and targets ``(batch, ctx)`` on ``device``:
    uniform random ids, or windows of a token file drawn as ``cs336 train`` draws them
    (real text: a few ids are far more frequent than the rest, which is what the
    embedding's backward pass sees in a run)."""
    if path is None:  # the global generator, seeded by the caller
        data = torch.randint(0, vocab_size, (batch, ctx + 1))
        return data[:, :-1].to(device), data[:, 1:].to(device)
    tokens = np.load(path, mmap_mode="r")
    starts = sample_starts(len(tokens), batch, ctx, generator=torch.Generator().manual_seed(0))
    x, y = batch_at(tokens, starts, ctx, device)
    top = max(int(x.max()), int(y.max()))
    if top >= vocab_size:
        raise SystemExit(f"--batch-from {path}: token id {top} >= vocab {vocab_size}")
    return x, y


def bench_steps(args: argparse.Namespace) -> None:
    device = torch.device(args.device)
    model_fields, default_batch = SHAPES[args.shape]
    batch = args.batch_size or default_batch
    keep_freed_memory()  # what cs336 train does on the CPU; the baseline shares the process
    torch.manual_seed(0)
    base_cfg = train_config(model_fields, batch, args.device, {})
    init = build_model(base_cfg, torch.device("cpu"))
    ctx = base_cfg.context_length
    x, y = step_batch(args.batch_from, base_cfg.model.vocab_size, batch, ctx, device)
    steps: dict[str, Callable[[Tensor, Tensor], Tensor]] = {}
    for name in args.variants:
        overrides = VARIANTS.get(name, {})
        cfg = train_config(model_fields, batch, args.device, overrides)
        steps[name] = cs336_step(cfg, device, init, EXPERIMENTS.get(name))
    for name in args.baselines:
        steps[name] = baseline_step(base_cfg.model, device, BASELINES[name], init)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    first, peak_mem, warmup, times = {}, {}, {}, {name: [] for name in steps}
    for name, step in list(steps.items()):  # warm-up: compilation, allocator, first loss
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        try:
            first[name] = float(step(x, y))
            for _ in range(args.warmup - 1):
                step(x, y)
            sync()
        except Exception as e:  # an experiment that does not run: say so, measure the rest
            print(f"| {name} | failed: {type(e).__name__}: {str(e).splitlines()[0][:150]} |")
            del steps[name], times[name]
            continue
        warmup[name] = time.perf_counter() - start
        if name == args.variants[0] and compile_enabled(base_cfg, device):
            from torch._dynamo.utils import compile_times

            print(f"compile times of {name} (s):\n{compile_times()}", file=sys.stderr, flush=True)
        print(f"warm-up {name}: {warmup[name]:.1f} s", file=sys.stderr, flush=True)
        peak_mem[name] = (
            torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
        )
    for _ in range(args.repeats):
        for name, step in steps.items():
            sync()
            start = time.perf_counter()
            for _ in range(args.steps):
                loss = step(x, y)
            float(loss)  # one read per block, as cs336 train reads once per log interval
            times[name].append((time.perf_counter() - start) / args.steps)

    tokens = batch * ctx
    flops = train_flops_per_token(dataclasses.replace(base_cfg.model, context_length=ctx))
    peak = (
        args.peak_tflops * 1e12
        if args.peak_tflops
        else (peak_flops(torch.cuda.get_device_name(device)) if device.type == "cuda" else None)
    )
    medians = {name: statistics.median(t) for name, t in times.items()}
    best_base = min(v for k, v in medians.items() if k in BASELINES)
    name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"cpu x{torch.get_num_threads()}"
    )
    print(
        f"device: {name}; torch {torch.__version__}; shape {args.shape}: {base_cfg.model.to_dict()}"
    )
    print(
        f"batch {batch} x {ctx} tokens "
        f"({'windows of ' + args.batch_from if args.batch_from else 'uniform random ids'}); "
        f"{flops:.4e} train FLOPs/token; "
        f"{args.repeats} blocks of {args.steps} steps after {args.warmup} warm-up steps "
        f"(warm-up s: compilation, in this process's order)\n"
    )
    print(
        "| variant | step ms | tokens/s | MFU | vs fastest baseline | first loss | peak GiB "
        "| warm-up s |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for k, sec in medians.items():
        tps = tokens / sec
        mfu = f"{100 * tps * flops / peak:.1f}%" if peak else "n/a"
        print(
            f"| {k} | {1e3 * sec:.2f} | {tps:,.0f} | {mfu} | {best_base / sec:.2f}x "
            f"| {first[k]:.5f} | {peak_mem[k]:.2f} | {warmup[k]:.1f} |"
        )
    ref = first[next(k for k in BASELINES if k in first)]
    bad = {k: v for k, v in first.items() if abs(v - ref) > LOSS_RTOL * ref}
    if bad:
        raise SystemExit(f"first-step losses disagree with the baseline's {ref:.5f}: {bad}")
    print(f"\nfirst-step losses agree with the baseline's within {100 * LOSS_RTOL:g}%")
    if args.profile and device.type == "cuda":
        for name in (args.variants[0], args.baselines[-1]):
            _profile(name, steps[name], x, y, args.profile, args.profile_rows)


# ---- e2e mode -------------------------------------------------------------------------------


def _token_files(out: Path, vocab_size: int) -> tuple[Path, Path]:
    """Train and validation tokens: a BPE of ``vocab_size`` trained here on TinyStories
    from ../shared when present, else on the built-in stories."""
    from cs336 import BPETrainer
    from cs336.demo.stories import write_corpus

    text = out / "corpus.txt"
    shared = ROOT.parent / "shared" / "data" / "tinystories" / "tinystories.txt.gz"
    if shared.exists():
        import gzip

        text.write_bytes(gzip.decompress(shared.read_bytes()))
    else:
        write_corpus(text, 20000, seed=0)
    tok = BPETrainer(vocab_size, ["<|endoftext|>"]).train(text)
    train, val = out / "train.npy", out / "val.npy"
    tok.encode_file(text, train)
    np.save(val, np.load(train, mmap_mode="r")[:100_000])
    return train, val


def _cli_tokens_per_s(cfg: dict, out: Path, steps: int) -> float:
    """``cs336 train`` on ``cfg`` (its own max_steps: what decides compile=auto) until
    ``steps`` steps are logged, then SIGINT (it saves and exits 130, as a user's Ctrl-C)."""
    from cs336.training.metrics import read_metrics

    path = out / "config.json"
    path.write_text(json.dumps(cfg))
    metrics = Path(cfg["out_dir"]) / "metrics.jsonl"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "python")}
    proc = subprocess.Popen([sys.executable, "-m", "cs336", "train", str(path)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        while proc.poll() is None:
            time.sleep(1)
            done = metrics.exists() and any(
                r.get("step", 0) >= steps for r in read_metrics(metrics) if "train_loss" in r
            )
            if done:
                proc.send_signal(signal.SIGINT)
                proc.wait(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    if proc.returncode not in (0, 130):
        raise SystemExit(f"cs336 train failed (exit {proc.returncode})")
    rates = [r["tokens_per_s"] for r in read_metrics(metrics) if "tokens_per_s" in r][1:]
    return statistics.median(rates)  # the first window holds start-up and compilation


def _baseline_tokens_per_s(args: argparse.Namespace, train: Path, kind: str) -> float:
    cmd = [sys.executable, __file__, "--mode", "baseline-run", "--shape", args.shape,
           "--device", args.device, "--tokens", str(train), "--train-steps", str(args.train_steps),
           "--log-interval", str(args.log_interval)]  # fmt: skip
    if args.batch_size:
        cmd += ["--batch-size", str(args.batch_size)]
    cmd += ["--baseline-kind", kind]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "python")}
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return float(json.loads(out.strip().splitlines()[-1])["tokens_per_s"])


def bench_e2e(args: argparse.Namespace) -> None:
    model_fields, default_batch = SHAPES[args.shape]
    batch = args.batch_size or default_batch
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        train, val = _token_files(out, model_fields["vocab_size"])
        cfg = train_config(model_fields, batch, args.device, {}).to_dict()  # max_steps 5000
        cfg.update(log_interval=args.log_interval, eval_interval=0, eval_batches=1,
                   checkpoint_interval=0, progress=False, out_dir=str(out / "run"))  # fmt: skip
        cfg["data"] = dataclasses.asdict(DataConfig(str(train), str(val), batch_size=batch))
        results = {"cs336 train (defaults)": _cli_tokens_per_s(cfg, out, args.train_steps)}
        for name in args.baselines:
            results[name] = _baseline_tokens_per_s(args, train, BASELINES[name])
    best = max(v for k, v in results.items() if k.startswith("baseline"))
    print(
        f"shape {args.shape}, batch {batch}, {args.train_steps} steps on {args.device}; "
        f"tokens/s = median over log windows of {args.log_interval} steps, the first left out "
        f"(cs336 train runs its default max_steps and is stopped with SIGINT)\n"
    )
    print("| run (own process) | tokens/s | vs faster baseline |")
    print("|---|---:|---:|")
    for k, v in results.items():
        print(f"| {k} | {v:,.0f} | {v / best:.2f}x |")


def baseline_run(args: argparse.Namespace) -> None:
    """The baseline's own training loop on a token file (nanoGPT's get_batch)."""
    device = torch.device(args.device)
    model_fields, default_batch = SHAPES[args.shape]
    batch = args.batch_size or default_batch
    cfg = ModelConfig(**model_fields)
    torch.manual_seed(0)
    step = baseline_step(cfg, device, args.baseline_kind, None)
    data = np.load(args.tokens, mmap_mode="r")
    ctx = cfg.context_length
    rates, start = [], time.perf_counter()
    for i in range(1, args.train_steps + 1):
        ix = torch.randint(len(data) - ctx - 1, (batch,))
        xy = torch.stack([torch.from_numpy(data[j : j + ctx + 1].astype(np.int64)) for j in ix])
        loss = step(xy[:, :-1].to(device), xy[:, 1:].to(device))
        if i % args.log_interval == 0:
            float(loss)  # the loss is printed at each log step
            now = time.perf_counter()
            rates.append(args.log_interval * batch * ctx / (now - start))
            start = now
    print(json.dumps({"tokens_per_s": statistics.median(rates[1:] or rates)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=["step", "e2e", "baseline-run"], default="step")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="cpu")
    parser.add_argument("--batch-size", type=int, help="sequences per step (the shape's default)")
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=[*VARIANTS, *EXPERIMENTS],
        help="cs336 variants and experiments (step mode)",
    )
    parser.add_argument(
        "--baselines",
        nargs="+",
        choices=list(BASELINES),
        default=list(BASELINES),
        help="plain PyTorch baselines (step mode; default all)",
    )
    parser.add_argument(
        "--batch-from",
        metavar="TOKENS.npy",
        help="step mode: draw the batch from this token file (default: uniform random ids)",
    )
    parser.add_argument("--profile", type=int, default=0, help="profile N steps (CUDA)")
    parser.add_argument("--profile-rows", type=int, default=25, help="kernels in the table")
    parser.add_argument("--steps", type=int, default=5, help="steps per timed block (5)")
    parser.add_argument("--repeats", type=int, default=5, help="timed blocks per variant (5)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (3)")
    parser.add_argument("--peak-tflops", type=float, help="bf16 peak TFLOP/s for MFU")
    parser.add_argument("--train-steps", type=int, default=60, help="e2e: steps per run (60)")
    parser.add_argument("--log-interval", type=int, default=10, help="e2e: steps per window (10)")
    parser.add_argument("--tokens", help=argparse.SUPPRESS)
    parser.add_argument("--baseline-kind", choices=list(BASELINES.values()), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variants is None:
        cuda = args.device.startswith("cuda")
        args.variants = ["default", "reference kernels", "optim.impl=torch"] + (
            ["compile=false", "dtype=float32"] if cuda else ["compile=true"]
        )
    {"step": bench_steps, "e2e": bench_e2e, "baseline-run": baseline_run}[args.mode](args)


if __name__ == "__main__":
    main()
