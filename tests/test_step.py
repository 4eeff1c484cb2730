"""train_step and evaluate: accumulation, clipping, the device-side non-finite guard."""

from __future__ import annotations

import copy

import pytest
import torch

from cs336 import SGD, AdamW, ModelConfig, TransformerLM
from cs336.training.step import evaluate, train_step

CFG = ModelConfig(vocab_size=40, context_length=12, d_model=32, num_layers=2, num_heads=4, d_ff=64)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _model() -> TransformerLM:
    torch.manual_seed(0)
    return TransformerLM.from_config(CFG)


def _batch(n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    data = torch.randint(0, 40, (n, 13), generator=torch.Generator().manual_seed(1))
    return data[:, :-1], data[:, 1:]


@pytest.mark.parametrize("opt_cls", [SGD, AdamW])
def test_accumulated_micro_batches_equal_one_big_batch(opt_cls):
    """Four micro-batches of 2 give the gradient (norm) and the step of one batch of 8:
    each micro-batch loss is divided by their number."""
    x, y = _batch()
    big, small = _model(), _model()
    opt_big, opt_small = opt_cls(big.parameters(), lr=0.1), opt_cls(small.parameters(), lr=0.1)
    a = train_step(big, opt_big, [(x, y)])
    micro = [(x[i : i + 2], y[i : i + 2]) for i in range(0, 8, 2)]
    b = train_step(small, opt_small, micro)
    torch.testing.assert_close(b.loss, a.loss)
    torch.testing.assert_close(b.grad_norm, a.grad_norm)
    atol = 1e-6 if opt_cls is SGD else 1e-4  # Adam's first step divides g by |g|
    for p, q in zip(big.parameters(), small.parameters(), strict=True):
        torch.testing.assert_close(q, p, atol=atol, rtol=1e-5)
    assert all(p.grad is None for p in small.parameters())  # released after the step


def test_gradients_are_clipped_to_the_global_norm():
    x, y = _batch()
    clipped, free = _model(), _model()
    free_copy = copy.deepcopy(free)
    stats = train_step(free, SGD(free.parameters(), lr=1.0), [(x, y)])
    train_step(clipped, SGD(clipped.parameters(), lr=1.0), [(x, y)], grad_clip=0.5)
    assert stats.grad_norm > 0.5
    scale = 0.5 / (float(stats.grad_norm) + 1e-6)  # the handout's rule
    for p0, p1, pc in zip(
        free_copy.parameters(), free.parameters(), clipped.parameters(), strict=True
    ):
        torch.testing.assert_close(pc - p0, (p1 - p0) * scale, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("where", ["loss", "gradient"])
def test_a_non_finite_step_changes_no_weight_and_no_moment(where):
    x, y = _batch()
    model = _model()
    opt = AdamW(model.parameters(), lr=0.1)
    train_step(model, opt, [(x, y)])  # moments are non-zero now
    weights = copy.deepcopy(model.state_dict())
    moments = copy.deepcopy(opt.state_dict()["state"])
    if where == "loss":
        hook = model.lm_head.register_forward_hook(lambda m, i, out: out * float("nan"))
    else:  # a finite loss whose gradient overflows
        hook = model.lm_head.weight.register_hook(lambda g: g * float("inf"))
    stats = train_step(model, opt, [(x, y)], grad_clip=1.0)
    hook.remove()
    assert not bool(stats.applied)
    assert bool(torch.isfinite(stats.loss)) == (where == "gradient")
    assert not bool(torch.isfinite(stats.grad_norm))
    for k, v in model.state_dict().items():
        assert torch.equal(v, weights[k]), k
    for i, state in opt.state_dict()["state"].items():
        for k in ("exp_avg", "exp_avg_sq"):
            assert torch.equal(state[k], moments[i][k])
    assert bool(train_step(model, opt, [(x, y)]).applied)  # and training goes on


def test_torchs_fused_adamw_skips_a_non_finite_step_on_the_device():
    x, y = _batch()
    model = _model()
    opt = torch.optim.AdamW(model.parameters(), lr=0.1, fused=True)
    assert bool(train_step(model, opt, [(x, y)]).applied)
    before = copy.deepcopy(model.state_dict())
    moments = copy.deepcopy(opt.state_dict()["state"])
    hook = model.lm_head.register_forward_hook(lambda m, i, out: out * float("nan"))
    assert not bool(train_step(model, opt, [(x, y)]).applied)
    hook.remove()
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    for i, state in opt.state_dict()["state"].items():
        assert all(torch.equal(state[k], moments[i][k]) for k in state)
    assert not hasattr(opt, "found_inf")


def test_another_optimizer_is_stepped_only_when_the_step_is_finite():
    x, y = _batch()
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = copy.deepcopy(model.state_dict())
    hook = model.lm_head.register_forward_hook(lambda m, i, out: out * float("nan"))
    assert not bool(train_step(model, opt, [(x, y)]).applied)
    hook.remove()
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_evaluate_sums_token_losses_in_eval_mode():
    x, y = _batch()
    model = TransformerLM.from_config(ModelConfig(**{**CFG.to_dict(), "residual_pdrop": 0.5}))
    model.train()
    totals = evaluate(model, [(x[:3], y[:3]), (x[3:], y[3:])])
    with torch.no_grad():
        expected = model.eval()(x, targets=y).double() * y.numel()
    torch.testing.assert_close(totals, torch.stack([expected, torch.tensor(96.0).double()]))
    assert model.training is False  # it was in eval mode above; evaluate restored that
    with pytest.raises(ValueError, match="at least one micro-batch"):
        train_step(model, SGD(model.parameters()), [])
