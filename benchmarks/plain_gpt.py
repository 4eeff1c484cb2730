"""The plain PyTorch GPT that ``bench_train_step.py`` measures cs336 against: the model a
PyTorch user writes (``nn.Embedding``, ``nn.Linear`` with one QKV matrix, ``nn.RMSNorm``,
``F.scaled_dot_product_attention(is_causal=True)``, ``F.gelu`` or SwiGLU with ``F.silu``,
``F.cross_entropy``) and its training steps (:data:`BASELINES`).
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cs336 import ModelConfig, TransformerLM


class PlainBlock(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        d = cfg.d_model
        self.n_heads, self.swiglu = cfg.num_heads, cfg.ffn == "swiglu"
        self.ln1 = nn.RMSNorm(d, eps=1e-5)
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.proj = nn.Linear(d, d, bias=False)
        self.ln2 = nn.RMSNorm(d, eps=1e-5)
        self.fc1 = nn.Linear(d, cfg.d_ff, bias=False)
        self.fc3 = nn.Linear(d, cfg.d_ff, bias=False) if self.swiglu else None
        self.fc2 = nn.Linear(cfg.d_ff, d, bias=False)

    def forward(self, x: Tensor, rope: tuple[Tensor, Tensor] | None) -> Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=-1)
        q, k, v = (z.view(b, t, self.n_heads, -1).transpose(1, 2) for z in (q, k, v))
        if rope is not None:
            q, k = rotate(q, *rope), rotate(k, *rope)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, d))
        h = self.ln2(x)
        if self.fc3 is not None:
            return x + self.fc2(F.silu(self.fc1(h)) * self.fc3(h))
        return x + self.fc2(F.gelu(self.fc1(h)))


def rotate(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """RoPE on adjacent pairs (as the handout writes it), the way a user would."""
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2)


class PlainGPT(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.tok = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos = (
            nn.Embedding(cfg.context_length, cfg.d_model) if cfg.position == "learned" else None
        )
        self.blocks = nn.ModuleList(PlainBlock(cfg) for _ in range(cfg.num_layers))
        self.ln_f = nn.RMSNorm(cfg.d_model, eps=1e-5)
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        d_k = cfg.d_model // cfg.num_heads
        freq = cfg.rope_theta ** (-torch.arange(0, d_k, 2).double() / d_k)
        angles = torch.outer(torch.arange(cfg.context_length).double(), freq)
        self.register_buffer("cos", angles.cos().float(), persistent=False)
        self.register_buffer("sin", angles.sin().float(), persistent=False)

    def forward(self, idx: Tensor, targets: Tensor | None = None) -> Tensor:
        """Logits, or with ``targets`` the mean cross-entropy (nanoGPT's way: the loss in
        the same, compiled, forward)."""
        t = idx.shape[1]
        x = self.tok(idx)
        rope = None
        if self.pos is not None:
            x = x + self.pos(torch.arange(t, device=idx.device))
        else:
            rope = (self.cos[:t], self.sin[:t])
        for block in self.blocks:
            x = block(x, rope)
        logits = self.head(self.ln_f(x))
        if targets is None:
            return logits
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.reshape(-1))

    @torch.no_grad()
    def load_from(self, ours: TransformerLM) -> None:
        """Copy our weights (so both start identical): q/k/v stacked into one matrix."""
        self.tok.weight.copy_(ours.token_embeddings.weight)
        if self.pos is not None:
            self.pos.weight.copy_(ours.position_embeddings.weight)
        for mine, theirs in zip(self.blocks, ours.layers, strict=True):
            a = theirs.attn
            mine.qkv.weight.copy_(torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight]))
            mine.proj.weight.copy_(a.output_proj.weight)
            mine.ln1.weight.copy_(theirs.ln1.weight)
            mine.ln2.weight.copy_(theirs.ln2.weight)
            mine.fc1.weight.copy_(theirs.ffn.w1.weight)
            mine.fc2.weight.copy_(theirs.ffn.w2.weight)
            if mine.fc3 is not None:
                mine.fc3.weight.copy_(theirs.ffn.w3.weight)
        self.ln_f.weight.copy_(ours.ln_final.weight)
        self.head.weight.copy_(ours.lm_head.weight)


#: The baselines: eager, compiled with the loss outside the graph on a float32 copy of the
#: logits (what this benchmark used to compare against), and nanoGPT's step: the loss in the
#: compiled forward, ``torch.optim.AdamW(fused=True)`` with nanoGPT's decay groups (2-D
#: weights), ``clip_grad_norm_``. The strongest plain PyTorch a user would write.
BASELINES = {
    "baseline eager": "eager",
    "baseline compiled (loss outside)": "compiled",
    "baseline nanoGPT (loss in graph, fused AdamW)": "nanogpt",
}


def baseline_step(cfg: ModelConfig, device: torch.device, kind: str, init: TransformerLM | None):
    """The baseline's step function (zero_grad, forward, loss, backward, clip, AdamW)."""
    model = PlainGPT(cfg)
    if init is not None:
        model.load_from(init)
    model.to(device).train()
    cuda = device.type == "cuda"
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=3e-4, fused=cuda or None)
    run = torch.compile(model) if kind != "eager" else model
    amp = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if cuda else contextlib.nullcontext

    def step(x: Tensor, y: Tensor) -> Tensor:
        opt.zero_grad(set_to_none=True)
        with amp():
            if kind == "nanogpt":
                loss = run(x, y)
            else:
                logits = run(x)
        if kind != "nanogpt":
            loss = F.cross_entropy(logits.float().view(-1, cfg.vocab_size), y.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss.detach()

    return step
