"""Optimizers, clipping and param groups against torch.optim and torch.nn.utils."""

from __future__ import annotations

import io
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from cs336 import SGD, AdamW, TransformerLM, clip_grad_norm, param_groups

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _params(seed: int) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    shapes = [(3, 4), (5,), (2, 3, 2)]
    return [torch.nn.Parameter(torch.randn(s, generator=g, dtype=torch.float64)) for s in shapes]


def _run(opt_cls, params, steps, seed, **kw):
    """Minimise a fixed random quadratic-plus-quartic loss for ``steps`` steps."""
    opt = opt_cls(params, **kw)
    g = torch.Generator().manual_seed(seed + 1)
    targets = [torch.randn(p.shape, generator=g, dtype=p.dtype) for p in params]
    for _ in range(steps):
        opt.zero_grad()
        loss = sum(
            ((p - t) ** 2).sum() + (p**4).sum() * 0.1 for p, t in zip(params, targets, strict=True)
        )
        loss.backward()
        opt.step()
    return opt


@given(
    st.integers(0, 2**31 - 1),
    st.sampled_from([1e-3, 1e-2, 0.1]),
    st.sampled_from([(0.9, 0.999), (0.8, 0.95)]),
    st.sampled_from([0.0, 0.01, 0.1]),
    st.sampled_from([0.0, 1e-8]),
    st.booleans(),
)
def test_adamw_matches_torch(seed, lr, betas, weight_decay, eps, foreach):
    ours, theirs = _params(seed), _params(seed)
    kw = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
    steps = 8
    _run(AdamW, ours, steps, seed, foreach=foreach, **kw)
    _run(torch.optim.AdamW, theirs, steps, seed, **kw)
    # torch decays before the Adam step, the handout after it: each step differs by
    # lr * wd * (Adam update) = O(lr^2 wd). Torch adds eps to the bias-corrected
    # sqrt(v), the handout to sqrt(v): O(lr * eps / (sqrt(1 - beta2) |g|)) per step.
    atol = (1e-3 * lr if eps else 1e-12) + steps * 4 * lr**2 * weight_decay
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, atol=atol, rtol=0)


def test_adamw_foreach_equals_the_loop_exactly():
    a, b = _params(0), _params(0)
    _run(AdamW, a, 7, 0, lr=0.05, weight_decay=0.1)
    _run(AdamW, b, 7, 0, lr=0.05, weight_decay=0.1, foreach=True)
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y, atol=1e-15, rtol=1e-13)


def test_adamw_first_step_is_the_handout_formula():
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    opt = AdamW([p], lr=0.1, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.5)
    p.grad = torch.tensor([0.5, 3.0], dtype=torch.float64)
    opt.step()
    m, v = 0.1 * p.grad, 0.01 * p.grad**2
    alpha = 0.1 * math.sqrt(1 - 0.99) / (1 - 0.9)
    expected = torch.tensor([1.0, -2.0], dtype=torch.float64) - alpha * m / (v.sqrt() + 1e-8)
    expected = expected - 0.1 * 0.5 * expected
    torch.testing.assert_close(p.detach(), expected)
    assert opt.state[p]["step"] == 1


def _handout_adamw_float64(w0, xs, lr, wd, betas=(0.9, 0.999), eps=1e-8):
    """The handout's toy problem (a bias-free Linear(3, 2) fitting y = (x0 + x1, -x2))
    under the handout's AdamW, computed in float64 from the same float32 data."""
    w = w0.double()
    m, v = torch.zeros_like(w), torch.zeros_like(w)
    beta1, beta2 = betas
    for t, x in enumerate(xs, 1):
        x = x.double()
        grad = -2 * torch.outer(torch.stack([x[0] + x[1], -x[2]]) - w @ x, x)
        m = beta1 * m + (1 - beta1) * grad
        v = beta2 * v + (1 - beta2) * grad**2
        w = w - lr * math.sqrt(1 - beta2**t) / (1 - beta1**t) * m / (v.sqrt() + eps)
        w = w - lr * wd * w
    return w


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize(("lr", "wd"), [(1e-3, 0.01), (1e-5, 0.01), (1e-3, 0.1)])
def test_adamw_is_the_handout_formula_over_1000_float32_steps(lr, wd, foreach):
    """The float32 optimizer ends within 1e-6 of the formula computed exactly, also when
    lr * wd (1e-7) is below the weights' float32 spacing."""
    torch.manual_seed(42)
    model = torch.nn.Linear(3, 2, bias=False)
    w0 = model.weight.detach().clone()
    xs = [torch.rand(3) for _ in range(1000)]
    opt = AdamW(model.parameters(), lr=lr, weight_decay=wd, foreach=foreach)
    for x in xs:
        opt.zero_grad()
        ((torch.stack([x[0] + x[1], -x[2]]) - model(x)) ** 2).sum().backward()
        opt.step()
    expected = _handout_adamw_float64(w0, xs, lr, wd)
    torch.testing.assert_close(model.weight.detach().double(), expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("opt_cls", [AdamW, SGD])
@pytest.mark.parametrize("foreach", [False, True])
def test_a_skipped_step_changes_nothing_and_an_unskipped_one_is_a_normal_step(opt_cls, foreach):
    kw = {"foreach": foreach, "weight_decay": 0.1} if opt_cls is AdamW else {}
    a, b = _params(5), _params(5)
    opt_a, opt_b = opt_cls(a, lr=0.05, **kw), opt_cls(b, lr=0.05, **kw)
    for params, opt in ((a, opt_a), (b, opt_b)):  # one normal step: moments are non-zero
        for p in params:
            p.grad = torch.ones_like(p)
        opt.step()
    before = [p.detach().clone() for p in a]
    moments = [[t.clone() for t in opt_a.state[p].values() if torch.is_tensor(t)] for p in a]
    for p in a:
        p.grad = torch.full_like(p, float("nan"))
    opt_a.step(skip=torch.tensor(True))
    assert all(torch.equal(p, q) for p, q in zip(a, before, strict=True))
    after = [[t for t in opt_a.state[p].values() if torch.is_tensor(t)] for p in a]
    assert all(
        torch.equal(x, y)
        for m, n in zip(moments, after, strict=True)
        for x, y in zip(m, n, strict=True)
    )
    # not skipped: exactly a plain step (the skipped one still advanced the counter)
    counter = "step" if opt_cls is AdamW else "t"
    for params, opt in ((a, opt_a), (b, opt_b)):
        assert opt.state[params[0]][counter] == (2 if opt is opt_a else 1)
        for p in params:
            p.grad = torch.full_like(p, 0.25)
            opt.state[p][counter] += opt is opt_b
    opt_a.step(skip=torch.tensor(False))
    opt_b.step()
    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))


def test_adamw_state_dict_round_trip_continues_identically():
    a = _params(3)
    opt_a = _run(AdamW, a, 5, 3, lr=0.01, weight_decay=0.1)
    buffer = io.BytesIO()
    torch.save(opt_a.state_dict(), buffer)
    b = [torch.nn.Parameter(p.detach().clone()) for p in a]
    opt_b = AdamW(b, lr=0.01, weight_decay=0.1)
    buffer.seek(0)
    opt_b.load_state_dict(torch.load(buffer))
    assert opt_b.state[b[0]]["step"] == 5
    for params, opt in ((a, opt_a), (b, opt_b)):
        grads = [torch.full_like(p, 0.3) for p in params]
        for p, g in zip(params, grads, strict=True):
            p.grad = g
        opt.step()
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x, y)


def test_adamw_param_groups_use_their_own_hyperparameters():
    p, q = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2))
    opt = AdamW([{"params": [p]}, {"params": [q], "weight_decay": 0.0, "lr": 0.5}], lr=0.1)
    p.grad, q.grad = torch.zeros(2), torch.zeros(2)
    opt.step()  # zero gradient: only the decay moves p
    torch.testing.assert_close(p.detach(), torch.full((2,), 1 - 0.1 * 0.01))
    assert torch.equal(q.detach(), torch.ones(2))


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"lr": -1.0}, "lr must be >= 0, got -1.0"),
        ({"eps": float("nan")}, "eps must be >= 0"),
        ({"betas": (0.9, 1.0)}, r"betas\[1\] must be in \[0, 1\), got 1.0"),
        ({"weight_decay": -0.1}, "weight_decay must be >= 0"),
    ],
)
def test_adamw_rejects_bad_hyperparameters(kw, match):
    with pytest.raises(ValueError, match=match):
        AdamW(_params(0), **kw)


def test_sgd_uses_the_decaying_step():
    p = torch.nn.Parameter(torch.tensor([5.0]))
    opt = SGD([p], lr=1.0)
    expected = 5.0
    for t in range(4):
        p.grad = torch.tensor([2.0])
        opt.step()
        expected -= 1.0 / math.sqrt(t + 1) * 2.0
        assert p.item() == pytest.approx(expected)
    with pytest.raises(ValueError, match="lr must be >= 0"):
        SGD([p], lr=-1)


@given(st.integers(0, 2**31 - 1), st.sampled_from([0.01, 1.0, 5.0, 1e3]))
def test_clip_grad_norm_matches_torch(seed, max_norm):
    ours, theirs = _params(seed), _params(seed)
    g = torch.Generator().manual_seed(seed)
    for a, b in zip(ours, theirs, strict=True):
        a.grad = torch.randn(a.shape, generator=g, dtype=a.dtype)
        b.grad = a.grad.clone()
    extra = torch.nn.Parameter(torch.ones(3))  # no grad: ignored
    norm = clip_grad_norm([*ours, extra], max_norm)
    expected = torch.nn.utils.clip_grad_norm_(theirs, max_norm)
    torch.testing.assert_close(norm, expected)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a.grad, b.grad)
    assert extra.grad is None


def test_clip_grad_norm_leaves_small_gradients_alone_and_validates():
    p = torch.nn.Parameter(torch.zeros(2))
    p.grad = torch.tensor([0.3, 0.4])
    assert clip_grad_norm([p], 1.0).item() == pytest.approx(0.5)
    assert torch.equal(p.grad, torch.tensor([0.3, 0.4]))
    assert clip_grad_norm([torch.nn.Parameter(torch.zeros(1))], 1.0).item() == 0.0
    with pytest.raises(ValueError, match="max_norm must be >= 0, got -1"):
        clip_grad_norm([p], -1)


def test_param_groups_skip_decay_on_norms_and_embeddings():
    model = TransformerLM(50, 8, 16, 2, 2, 32)
    decay, no_decay = param_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = sorted(names[id(p)] for p in decay["params"])
    kept = sorted(names[id(p)] for p in no_decay["params"])
    assert kept == sorted(
        ["token_embeddings.weight", "position_embeddings.weight", "ln_final.weight"]
        + [f"layers.{i}.ln{j}.weight" for i in range(2) for j in (1, 2)]
    )
    assert "lm_head.weight" in decayed and len(decayed) + len(kept) == len(names)
    tied = TransformerLM(50, 8, 16, 2, 2, 32, tie_embeddings=True)
    groups = param_groups(tied, 0.1)
    assert sum(len(g["params"]) for g in groups) == len(list(tied.parameters()))
    AdamW(groups)  # every parameter appears exactly once, so torch accepts the groups


def test_clip_grad_norm_accumulates_bf16_gradients_in_float32():
    p = torch.nn.Parameter(torch.zeros(1000, dtype=torch.bfloat16))
    p.grad = torch.full((1000,), 3.0, dtype=torch.bfloat16)
    q = torch.nn.Parameter(torch.zeros(3))
    q.grad = torch.ones(3)
    norm = clip_grad_norm([p, q], 1.0)
    assert norm.dtype == torch.float32
    assert norm.item() == pytest.approx((9 * 1000 + 3) ** 0.5, rel=1e-6)
    assert p.grad.dtype == torch.bfloat16


@pytest.mark.parametrize("flat", [False, True])
def test_compiled_adamw_update_matches_foreach_and_compiles_once(monkeypatch, flat):
    """compile=True traces the update once (fullgraph; the per-step numbers are tensors;
    flat: every group's buffers in one graph) and agrees with the eager update; a
    recording backend stands in for inductor."""
    calls = []
    real = torch.compile

    def counting(fn, **kwargs):
        def backend(gm, example_inputs):
            calls.append(gm)
            return gm.forward

        return real(fn, **{**kwargs, "backend": backend})

    monkeypatch.setattr(torch, "compile", counting)
    a, b = _params(7), _params(7)
    groups = [{"params": b[:2]}, {"params": b[2:], "weight_decay": 0.0}]
    eager, compiled = (
        AdamW([{"params": a[:2]}, {"params": a[2:], "weight_decay": 0.0}], lr=0.02,
              weight_decay=0.1, foreach=True),
        AdamW(groups, lr=0.02, weight_decay=0.1, compile=True, flat=flat),
    )  # fmt: skip
    for i in range(4):
        for p, q in zip(a, b, strict=True):
            p.grad = torch.full_like(p, 0.1 * (i + 1))
            q.grad = p.grad.clone()
        skip = torch.tensor(i == 2)
        eager.step(skip=skip)
        compiled.step(skip=skip)
    assert len(calls) == (1 if flat else 2)  # multi-tensor: one graph per group's list
    for p, q in zip(a, b, strict=True):
        torch.testing.assert_close(q, p, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("skip", [False, True])
def test_the_device_gated_update_equals_the_plain_one(skip):
    """The update an accelerator runs (numbers as device tensors, no host read of the
    flag), here on the CPU: the same as the plain update, or nothing when skipped."""
    a, b = _params(11), _params(11)
    plain, gated = AdamW(a, lr=0.03, weight_decay=0.1), AdamW(b, lr=0.03, weight_decay=0.1)
    gated._compiled = True  # what compile=True (or a GPU's flag) selects, without compiling
    for step in range(3):
        for p, q in zip(a, b, strict=True):
            p.grad = torch.full_like(p, 0.2 * (step + 1))
            q.grad = p.grad.clone()
        flag = torch.tensor(skip and step == 2)
        if skip and step == 2:
            before = [q.detach().clone() for q in b]
            for q in b:
                q.grad[0] = float("nan")
        else:
            plain.step()
        gated.step(skip=flag)
    if skip:
        assert all(torch.equal(q, r) for q, r in zip(b, before, strict=True))
    for p, q in zip(a, b, strict=True):
        torch.testing.assert_close(q, p, atol=1e-12, rtol=1e-12)


def _handout_2026_adamw_float64(w0, xs, lr, wd, betas=(0.9, 0.999), eps=1e-8):
    """The toy problem under the 2026 handout's AdamW (decay first), in float64."""
    w = w0.double()
    m, v = torch.zeros_like(w), torch.zeros_like(w)
    beta1, beta2 = betas
    for t, x in enumerate(xs, 1):
        x = x.double()
        grad = -2 * torch.outer(torch.stack([x[0] + x[1], -x[2]]) - w @ x, x)
        w = w - lr * wd * w
        m = beta1 * m + (1 - beta1) * grad
        v = beta2 * v + (1 - beta2) * grad**2
        w = w - lr * math.sqrt(1 - beta2**t) / (1 - beta1**t) * m / (v.sqrt() + eps)
    return w


@pytest.mark.parametrize("flat", [False, True])
@pytest.mark.parametrize(("lr", "wd"), [(1e-3, 0.01), (1e-5, 0.01), (1e-2, 0.1)])
def test_decay_before_is_the_2026_handout_formula_over_1000_float32_steps(lr, wd, flat):
    torch.manual_seed(42)
    model = torch.nn.Linear(3, 2, bias=False)
    w0 = model.weight.detach().clone()
    xs = [torch.rand(3) for _ in range(1000)]
    opt = AdamW(model.parameters(), lr=lr, weight_decay=wd, decay="before", flat=flat)
    for x in xs:
        opt.zero_grad()
        ((torch.stack([x[0] + x[1], -x[2]]) - model(x)) ** 2).sum().backward()
        opt.step()
    expected = _handout_2026_adamw_float64(w0, xs, lr, wd)
    torch.testing.assert_close(model.weight.detach().double(), expected, atol=1e-6, rtol=0)
    if lr * wd > 1e-4:  # the orders differ by more than the tolerance: the test can fail
        after = _handout_adamw_float64(w0, xs, lr, wd)
        assert (after - expected).abs().max() > 1e-5


def _two_groups(seed: int) -> tuple[list[torch.nn.Parameter], list[dict]]:
    g = torch.Generator().manual_seed(seed)
    shapes = [(7, 5), (33,), (2, 3, 4), (65,)]
    params = [torch.nn.Parameter(torch.randn(s, generator=g)) for s in shapes]
    return params, [{"params": params[:3]}, {"params": params[3:], "weight_decay": 0.0}]


def _train(opt, params, steps, seed, missing_grad_at=None):
    g = torch.Generator().manual_seed(seed)
    for step in range(steps):
        for i, p in enumerate(params):
            p.grad = None if (i, step) == missing_grad_at else torch.randn(p.shape, generator=g)
        opt.step()


@pytest.mark.parametrize("decay", ["after", "before"])
@pytest.mark.parametrize("missing_grad_at", [None, (1, 2)])
def test_the_flat_update_is_the_loop_bit_for_bit(decay, missing_grad_at):
    """flat=True keeps each group in one buffer (the parameters become views of it) and
    updates it in one pass: in float32 exactly the loop's numbers, also across a step where
    one parameter has no gradient (that group is then updated tensor by tensor)."""
    a, groups_a = _two_groups(0)
    b, groups_b = _two_groups(0)
    kw = dict(lr=0.03, betas=(0.8, 0.95), weight_decay=0.1, decay=decay)
    loop, flat = AdamW(groups_a, **kw), AdamW(groups_b, flat=True, **kw)
    storages = {p.untyped_storage().data_ptr() for p in b}
    assert len(storages) == 2  # one buffer per group
    _train(loop, a, 6, 1, missing_grad_at)
    _train(flat, b, 6, 1, missing_grad_at)
    for p, q in zip(a, b, strict=True):
        assert torch.equal(p, q)
        assert torch.equal(loop.state[p]["exp_avg_sq"], flat.state[q]["exp_avg_sq"])


def test_flat_state_dicts_load_into_any_adamw_and_continue_identically():
    a, groups_a = _two_groups(3)
    b, groups_b = _two_groups(3)
    flat, loop = AdamW(groups_a, lr=0.02, flat=True), AdamW(groups_b, lr=0.02)
    _train(flat, a, 3, 4)
    _train(loop, b, 3, 4)
    # flat -> plain and plain -> flat, through torch.save
    saved_flat, saved_loop = io.BytesIO(), io.BytesIO()
    torch.save(flat.state_dict(), saved_flat)
    torch.save(loop.state_dict(), saved_loop)
    c, groups_c = _two_groups(3)
    d, groups_d = _two_groups(3)
    with torch.no_grad():
        for x, y, p, q in zip(c, d, a, b, strict=True):
            x.copy_(q)
            y.copy_(p)
    plain_from_flat, flat_from_plain = AdamW(groups_d, lr=0.02), AdamW(groups_c, lr=0.02, flat=True)
    plain_from_flat.load_state_dict(torch.load(io.BytesIO(saved_flat.getvalue())))
    flat_from_plain.load_state_dict(torch.load(io.BytesIO(saved_loop.getvalue())))
    for opt, params in [(flat, a), (loop, b), (plain_from_flat, d), (flat_from_plain, c)]:
        _train(opt, params, 3, 5)
    for p, q, x, y in zip(a, b, c, d, strict=True):
        assert torch.equal(p, q) and torch.equal(x, q) and torch.equal(y, q)


def test_flat_adamw_refuses_mixed_groups_and_moved_parameters():
    with pytest.raises(ValueError, match="one dtype on one device"):
        AdamW([torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2).double())],
              flat=True)  # fmt: skip
    p = torch.nn.Parameter(torch.ones(3))
    opt = AdamW([p], flat=True)
    p.data = torch.zeros(3)  # replaced behind the optimizer's back
    p.grad = torch.ones(3)
    with pytest.raises(RuntimeError, match="no longer live in the optimizer's buffer"):
        opt.step()


@pytest.mark.parametrize("skip", [False, True])
def test_the_gated_flat_update_equals_the_plain_one(skip):
    a, groups_a = _two_groups(8)
    b, groups_b = _two_groups(8)
    plain, gated = AdamW(groups_a, lr=0.03), AdamW(groups_b, lr=0.03, flat=True)
    gated._compiled = True  # the device-gated path, without compiling
    for step in range(3):
        skipped = skip and step == 2
        for p, q in zip(a, b, strict=True):
            p.grad = torch.full_like(p, 0.3 * (step + 1))
            q.grad = torch.full_like(q, float("nan")) if skipped else p.grad.clone()
        before = [q.detach().clone() for q in b]
        if not skipped:
            plain.step()
        gated.step(skip=torch.tensor(skipped))
        if skipped:
            assert all(torch.equal(q, r) for q, r in zip(b, before, strict=True))
    for p, q in zip(a, b, strict=True):
        torch.testing.assert_close(q, p, atol=1e-6, rtol=1e-6)
