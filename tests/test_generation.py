"""Generation: KV-cached decoding equals full re-computation, temperature 0 / top-p edge
cases, end-of-text stop, seeded determinism, and bad arguments."""

from __future__ import annotations

import pytest
import torch

from cs336 import generate
from cs336.generation import sample_next
from cs336.nn.model import ModelConfig, TransformerLM


def tiny_model(**options) -> TransformerLM:
    torch.manual_seed(0)
    cfg = ModelConfig(
        vocab_size=40, context_length=24, d_model=32, num_layers=2, num_heads=4, d_ff=64, **options
    )
    model = TransformerLM.from_config(cfg)
    with torch.no_grad():  # sharper logits than the init, so greedy paths are not all ties
        model.lm_head.weight.mul_(20)
    return model


def greedy_without_cache(model, prompt, n):
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(n):
            logits = model(torch.tensor([ids]))[0, -1]
            ids.append(int(torch.argmax(logits)))
    return ids[len(prompt) :]


@pytest.mark.parametrize(
    "options", [{}, {"position": "rope"}, {"norm": "post"}, {"parallel": True}]
)
def test_cached_greedy_decoding_equals_full_recomputation(options):
    model = tiny_model(**options)
    prompt = [3, 14, 15, 9, 2]
    cached = generate(model, prompt, 19, temperature=0)
    assert cached == greedy_without_cache(model.eval(), prompt, 19)
    assert len(set(cached)) > 1


def test_seeded_sampling_is_deterministic():
    model = tiny_model()
    runs = [
        generate(model, [1, 2], 20, temperature=1.5, generator=torch.Generator().manual_seed(s))
        for s in (7, 7, 8)
    ]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_tiny_top_p_is_greedy():
    model = tiny_model()
    g = torch.Generator().manual_seed(0)
    sampled = generate(model, [5], 15, temperature=1.0, top_p=1e-9, generator=g)
    assert sampled == generate(model, [5], 15, temperature=0)


def test_nucleus_keeps_the_smallest_set_reaching_top_p():
    logits = torch.log(torch.tensor([0.1, 0.5, 0.3, 0.1]))
    g = torch.Generator().manual_seed(0)
    assert {sample_next(logits, 1.0, 0.75, g) for _ in range(300)} == {1, 2}  # 0.5 + 0.3
    assert {sample_next(logits, 1.0, 0.5, g) for _ in range(100)} == {1}  # 0.5 reaches it
    assert {sample_next(logits, 1.0, 1.0, g) for _ in range(400)} == {0, 1, 2, 3}
    assert sample_next(logits, 0.0) == 1


def test_low_temperature_concentrates_and_high_spreads():
    logits = torch.tensor([1.0, 2.0, 0.0])
    g = torch.Generator().manual_seed(0)
    cold = [sample_next(logits, 0.05, 1.0, g) for _ in range(200)]
    hot = [sample_next(logits, 100.0, 1.0, g) for _ in range(300)]
    assert set(cold) == {1}
    assert set(hot) == {0, 1, 2}


def test_stops_at_end_of_text_without_returning_it():
    model = tiny_model()
    greedy = generate(model, [1, 2, 3], 10, temperature=0)
    eos = greedy[4]
    stopped = generate(model, [1, 2, 3], 10, temperature=0, eos_id=eos)
    assert stopped == greedy[: greedy.index(eos)]
    assert eos not in stopped


def test_restores_training_mode_and_accepts_a_tensor_prompt():
    model = tiny_model().train()
    out = generate(model, torch.tensor([4, 5]), 3, temperature=0)
    assert model.training
    assert out == generate(model, [4, 5], 3, temperature=0)
    assert generate(model, [4], 0) == []


def test_a_prompt_of_the_whole_context_gets_one_more_token():
    """context_length 24: the model sees at most 24 tokens, the 25th is only sampled."""
    model = tiny_model()
    assert len(generate(model, [1] * 24, 1, temperature=0)) == 1
    assert len(generate(model, [1, 2], 23, temperature=0)) == 23
    full = generate(model, list(range(1, 13)), 13, temperature=0)  # up to position 24
    assert len(full) == 13


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"prompt_ids": []}, "at least one token"),
        ({"prompt_ids": [40]}, r"token id 40 is outside the vocabulary \(size 40\)"),
        ({"prompt_ids": [-1]}, "token id -1"),
        ({"temperature": -0.1}, "temperature must be >= 0"),
        ({"top_p": 0.0}, r"top_p must be in \(0, 1\]"),
        ({"top_p": 1.5}, r"top_p must be in \(0, 1\]"),
        ({"max_new_tokens": -1}, "max_new_tokens must be >= 0"),
        ({"max_new_tokens": 24}, r"prompt \(2 tokens\) \+ max_new_tokens \(24\) is longer"),
        ({"prompt_ids": [1] * 25, "max_new_tokens": 0}, r"prompt \(25 tokens\)"),
    ],
)
def test_bad_arguments(kwargs, message):
    args = {"prompt_ids": [1, 2], "max_new_tokens": 4, **kwargs}
    with pytest.raises(ValueError, match=message):
        generate(tiny_model(), **args)


# ---------------------------------------------------------------------------------------------
# `cs336 generate` from a checkpoint and a tokenizer


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from cs336 import BPETrainer, TrainConfig, train
    from cs336.demo.stories import EOT, write_corpus

    d = tmp_path_factory.mktemp("gen")
    write_corpus(d / "stories.txt", 100, seed=0)
    tokenizer = BPETrainer(300, special_tokens=[EOT]).train([d / "stories.txt"])
    tokenizer.save_dir(d / "tok")
    tokenizer.encode_file(d / "stories.txt", d / "tokens.npy")
    big = BPETrainer(400, special_tokens=[EOT]).train([d / "stories.txt"])
    big.save_dir(d / "big_tok")
    cfg = {
        "max_steps": 2,
        "eval_interval": 0,
        "progress": False,
        "out_dir": str(d / "run"),
        "model": dict(
            vocab_size=300, context_length=32, d_model=16, num_layers=1, num_heads=2, d_ff=32
        ),
        "data": dict(train_path=str(d / "tokens.npy"), val_path=str(d / "tokens.npy")),
        "optim": dict(warmup_iters=0),
    }
    train(TrainConfig.from_dict(cfg))
    return d


def test_generate_cli_is_seeded(trained, capsys):
    from cs336.cli import main

    argv = ["generate", "--checkpoint", str(trained / "run" / "checkpoint.pt")]
    argv += ["--tokenizer", str(trained / "tok"), "--prompt", "Once upon", "--seed", "3"]
    outputs = []
    for _ in range(2):
        assert main([*argv, "--max-new-tokens", "8"]) == 0
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1] and outputs[0].startswith("Once upon")
    assert main([*argv[:-4], "--temperature", "0"]) == 0  # empty prompt: a new document


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"--checkpoint": "{d}/missing.pt"}, "checkpoint not found"),
        ({"--checkpoint": "{d}/tokens.npy"}, "corrupt or truncated"),
        ({"--tokenizer": "{d}/big_tok"}, "tokenizer has 400 tokens but the model.s vocab_size"),
        ({"--tokenizer": "{d}/nowhere"}, "nowhere"),
        ({"--prompt": "Once upon a time " * 20}, "model's context_length is 32"),
        ({"--top-p": "0"}, r"top_p must be in \(0, 1\]"),
    ],
)  # fmt: skip
def test_generate_cli_errors(trained, capsys, change, message):
    import re

    from cs336.cli import main

    args = {
        "--checkpoint": str(trained / "run" / "checkpoint.pt"),
        "--tokenizer": str(trained / "tok"),
        "--prompt": "Once",
    }
    args.update({k: v.format(d=trained) for k, v in change.items()})
    argv = ["generate", *[x for kv in args.items() for x in kv]]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("cs336 generate: error:") and re.search(message, err), err
