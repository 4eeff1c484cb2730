"""The ``cs336 accounting`` reports as text: :func:`model_report` (parameters, forward
FLOPs by component, training memory, AdamW's step, time and MFU for one model) and
:func:`presets_report` (the GPT-2 presets side by side). The numbers come from
:mod:`cs336.accounting.costs`; the command line only parses flags and prints."""

from __future__ import annotations

from cs336.accounting import costs as acc
from cs336.nn.config import ModelConfig

__all__ = ["model_report", "presets_report"]


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]

    def line(cells: list[str]) -> str:
        # first column left-aligned (labels), the others right-aligned (numbers)
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    return "\n".join([line(headers), "  ".join("-" * w for w in widths), *map(line, rows)])


def _si(x: float, unit: str = "") -> str:
    for factor, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= factor:
            return f"{x / factor:.3f} {prefix}{unit}"
    return f"{x:.0f} {unit}".rstrip()


def _pct(part: float, total: float) -> str:
    return f"{100 * part / total:.1f}%"


def _describe(cfg: ModelConfig) -> str:
    d = cfg.to_dict()
    return ", ".join(f"{k}={v}" for k, v in d.items())


def model_report(
    cfg: ModelConfig,
    *,
    batch_size: int | None = None,
    bytes_per_number: int | None = None,
    memory_gb: float | None = None,
    peak_tflops: float | None = None,
    tokens_per_second: float | None = None,
    train_steps: int | None = None,
    assumed_mfu: float | None = None,
) -> str:
    """The report of one model: parameters by part, forward FLOPs by component, training
    memory at ``batch_size`` (1) with ``bytes_per_number`` (4) per number, the largest batch
    in ``memory_gb``, one AdamW step, and with ``peak_tflops`` the MFU at
    ``tokens_per_second`` and the time of ``train_steps`` steps at ``assumed_mfu`` (0.5)."""
    out: list[str] = []
    out.append(f"model: {_describe(cfg)}\n")
    params = acc.count_parameters(cfg)
    total = params["total"]
    rows = [[k, f"{v:,}", _pct(v, total)] for k, v in params.items() if k != "total"]
    rows.append(["total", f"{total:,}", "100.0%"])
    out.append(_table(["parameters", "count", "share"], rows))
    out.append(f"fp32 weights: {total * 4 / 1e9:.2f} GB ({total * 4 / 2**30:.2f} GiB)\n")

    flops = acc.forward_flops(cfg)
    ftotal = flops["total"]
    rows = [[k, f"{v:.4e}", _si(v, "FLOP"), _pct(v, ftotal)] for k, v in flops.items()]
    rows[-1][3] = "100.0%"
    out.append(f"forward pass, one sequence of {cfg.context_length} tokens (matmuls, 2mnp each):")
    out.append(_table(["component", "FLOPs", "(SI)", "share"], rows))
    per_token = acc.train_flops_per_token(cfg)
    out.append(f"training (3x forward): {per_token:.4e} FLOPs per token\n")

    b = batch_size or 1
    nbytes = bytes_per_number or 4
    mem = acc.training_memory(
        cfg, b, param_bytes=nbytes, grad_bytes=nbytes, state_bytes=nbytes,
        activation_bytes=nbytes,
    )  # fmt: skip
    one = acc.training_memory(
        cfg, 1, param_bytes=nbytes, grad_bytes=nbytes, state_bytes=nbytes,
        activation_bytes=nbytes,
    )  # fmt: skip
    rows = [[k, f"{v:,}", f"{v / 1e9:.2f}"] for k, v in mem.items()]
    out.append(f"training memory, batch {b} x {cfg.context_length} tokens, {nbytes} bytes/number:")
    out.append(_table(["part", "bytes", "(GB)"], rows))
    a_per_seq = one["activations"]
    fixed = one["total"] - a_per_seq
    out.append(f"memory = {a_per_seq / 1e9:.4f} GB * batch_size + {fixed / 1e9:.4f} GB")
    if memory_gb is not None:
        n = acc.max_batch_size(
            cfg, memory_gb * 1e9, param_bytes=nbytes, grad_bytes=nbytes,
            state_bytes=nbytes, activation_bytes=nbytes,
        )  # fmt: skip
        out.append(f"largest batch size in {memory_gb:g} GB: {n}")
    step = acc.adamw_step_flops(cfg)
    out.append(f"one AdamW step: {step:.4e} FLOPs (14 per parameter)\n")

    step_flops = b * cfg.context_length * per_token
    out.append(f"one training step (batch {b}): {step_flops:.4e} FLOPs")
    if peak_tflops is not None:
        peak = peak_tflops * 1e12
        if tokens_per_second is not None:
            u = acc.mfu(tokens_per_second, cfg, peak)
            out.append(f"MFU at {tokens_per_second:,.0f} tokens/s: {100 * u:.1f}%")
        if train_steps is not None:
            assumed = assumed_mfu or 0.5
            seconds = train_steps * step_flops / (assumed * peak)
            out.append(
                f"{train_steps:,} steps at {100 * assumed:g}% MFU of "
                f"{peak_tflops:g} TFLOP/s: {seconds:.4e} s = {seconds / 3600:,.2f} h = "
                f"{seconds / 86400:,.1f} days"
            )
    return "\n".join(out)


_ARCHITECTURE = {
    None: "d_ff = 4 d_model",
    "2024": "d_ff = 4 d_model, 2024 architecture: GELU FFN, learned positions",
    "2025": "d_ff = 4 d_model, 2025 architecture: SwiGLU FFN (3 matrices), RoPE",
    "2026": "2026 architecture: SwiGLU FFN (3 matrices) with d_ff = 8/3 d_model rounded to "
    "a multiple of 64, RoPE",
}


def presets_report(edition: str | None = None) -> str:
    """The GPT-2 presets side by side (shape, parameters, forward FLOPs, and the share of
    each component), in ``edition``'s architecture (2024, 2025, 2026) or as given."""
    out: list[str] = []
    names = list(acc.PRESETS)
    cfgs = [acc.PRESETS[n] for n in names]
    if edition:
        cfgs = [acc.with_edition(c, edition) for c in cfgs]
    params = [acc.count_parameters(c)["total"] for c in cfgs]
    flops = [acc.forward_flops(c) for c in cfgs]
    out.append(f"GPT-2 presets (vocab 50257, context 1024, {_ARCHITECTURE[edition]}):\n")
    rows = [
        [n, str(c.num_layers), str(c.d_model), str(c.num_heads), str(c.d_ff), f"{p:,}"]
        + [_si(f["total"], "FLOP")]
        for n, c, p, f in zip(names, cfgs, params, flops, strict=True)
    ]
    headers = ["preset", "layers", "d_model", "heads", "d_ff", "parameters", "forward"]
    out.append(_table(headers, rows))
    out.append("\nshare of forward FLOPs by component:")
    components = [k for k in flops[0] if k != "total"]
    rows = [[k] + [_pct(f[k], f["total"]) for f in flops] for k in components]
    out.append(_table(["component", *names], rows))
    return "\n".join(out)
