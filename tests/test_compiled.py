"""Regional compilation (:class:`cs336.nn.compiled.CompiledLM`) and which granularity the
training step compiles (:func:`cs336.training.step.wrap_model`)."""

from __future__ import annotations

import pytest
import torch

from cs336 import TransformerLM
from cs336.nn.compiled import CompiledLM
from cs336.training.checkpoint import unwrap_model
from cs336.training.step import WHOLE_GRAPH_MAX_LAYERS, wrap_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _model(layers: int = 3, **kw) -> TransformerLM:
    torch.manual_seed(0)
    return TransformerLM(64, 16, 32, layers, 4, 64, **kw)


@pytest.mark.parametrize("position", ["learned", "rope"])
def test_compiled_lm_computes_the_models_loss_and_gradients(position):
    ref, fast = _model(position=position), _model(position=position)
    compiled = CompiledLM(fast, backend="aot_eager")
    x = torch.randint(0, 64, (3, 16))
    loss_ref, loss_fast = ref(x, targets=x), compiled(x, targets=x)
    torch.testing.assert_close(loss_fast, loss_ref)
    loss_ref.backward()
    loss_fast.backward()
    for (name, p), q in zip(ref.named_parameters(), fast.parameters(), strict=True):
        torch.testing.assert_close(q.grad, p.grad, msg=name)
    torch.testing.assert_close(compiled(x), ref(x))  # logits without targets
    assert unwrap_model(compiled) is fast
    assert list(compiled.state_dict()) == [f"_orig_mod.{k}" for k in fast.state_dict()]


def test_every_block_runs_one_compiled_graph(monkeypatch):
    graphs = []

    def backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    torch._dynamo.reset()
    compiled = CompiledLM(_model(layers=4), backend=backend)
    x = torch.randint(0, 64, (2, 16))
    compiled(x, targets=x).backward()
    compiled(x, targets=x).backward()
    assert len(graphs) == 2  # one block (reused by all four) and the head with the loss


@pytest.mark.parametrize(
    ("layers", "device", "granularity"),
    [
        (WHOLE_GRAPH_MAX_LAYERS, "cuda", "whole"),
        (WHOLE_GRAPH_MAX_LAYERS + 1, "cuda", "blocks"),
        (WHOLE_GRAPH_MAX_LAYERS, "cpu", "blocks"),
    ],
)
def test_the_step_compiles_shallow_models_whole_on_a_gpu_and_blocks_otherwise(
    layers, device, granularity
):
    model = _model(layers=layers)  # compiling is lazy: nothing runs on the device here
    wrapped = wrap_model(model, torch.device(device), compiled=True)
    assert isinstance(wrapped, CompiledLM) == (granularity == "blocks")
    assert unwrap_model(wrapped) is model
    assert wrap_model(model, torch.device(device)) is model  # not compiled
