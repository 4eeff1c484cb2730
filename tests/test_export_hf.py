"""Hugging Face transformers export and import: exported LLaMA-shaped models compute our
logits (full sequences, KV-cache decoding, greedy generation), AutoTokenizer encodes like
our Tokenizer, random LLaMA models import exactly, every unsupported feature is a clear
error and a failed export leaves nothing behind. Tiny models on the CPU; every config is
built here and nothing is downloaded (HF_HUB_OFFLINE)."""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from test_tiktoken_parity import PIECES, SPACES

from cs336 import Tokenizer, generate, train_bpe
from cs336.cli import main
from cs336.export import from_hf, hf, to_hf
from cs336.generation import load_model
from cs336.nn.model import TransformerLM
from cs336.training.checkpoint import save_checkpoint

transformers = pytest.importorskip("transformers")
pytest.importorskip("safetensors")

pytestmark = pytest.mark.usefixtures("one_torch_thread", "offline")

EOT = "<|endoftext|>"
VOCAB = 416  # more embedding rows than the tokenizer's 400 ids, as a padded model has
CTX = 24
FILES = {"config.json", "generation_config.json", "model.safetensors"}
TOKENIZER_FILES = {"tokenizer.json", "tokenizer_config.json"}


@pytest.fixture(scope="module")
def offline():
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("TRANSFORMERS_OFFLINE", "1")
        transformers.utils.logging.disable_progress_bar()
        yield


@pytest.fixture(scope="module")
def tokenizer(shared_data) -> Tokenizer:
    path = shared_data("multilingual/multilingual_mix.txt")
    return Tokenizer(*train_bpe(path, 400, [EOT, "<pad>"]), [EOT, "<pad>"])


def randomize_norms(model: torch.nn.Module) -> None:
    """RMSNorm gains start at ones: make them differ, so a swapped norm shows."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1:
                assert "norm" in name or "ln" in name, name
                p.uniform_(0.5, 1.5)


def llama_shaped(vocab_size=VOCAB, d_model=32, **options) -> TransformerLM:
    """A cs336-2025 model with theta 500 (not transformers' default) and GPT-2's small init,
    where RMSNorm's eps matters."""
    torch.manual_seed(0)
    fields = dict(vocab_size=vocab_size, context_length=CTX, d_model=d_model, num_layers=2)
    fields.update(num_heads=4, d_ff=64, rope_theta=500.0, init="gpt2")
    fields.update(options)
    model = TransformerLM.from_preset("cs336-2025", **fields)
    randomize_norms(model)
    with torch.no_grad():  # sharp logits: greedy paths have no near-ties
        model.lm_head.weight.mul_(20)
    return model.eval()


def load_hf(directory):
    return transformers.AutoModelForCausalLM.from_pretrained(directory).eval()


@pytest.fixture(scope="module", params=[False, True], ids=["untied", "tied"])
def exported(request, tmp_path_factory, tokenizer):
    model = llama_shaped(tie_embeddings=request.param)
    out = to_hf(model, tmp_path_factory.mktemp("hf") / "model", tokenizer=tokenizer)
    return model, out, load_hf(out)


# ---------------------------------------------------------------------------------------------
# Export: the same numbers in transformers


def test_exported_logits_equal_ours(exported):
    model, _, lm = exported
    ids = torch.randint(0, VOCAB, (3, CTX), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours, theirs = model(ids), lm(ids).logits
    assert type(lm).__name__ == "LlamaForCausalLM"
    assert theirs.dtype == torch.float32
    assert (ours - theirs).abs().max().item() < 1e-5


def test_a_models_norm_eps_is_exported(tmp_path):
    """ModelConfig.norm_eps (LLaMA's 1e-6 here) is config.json's rms_norm_eps."""
    model = llama_shaped(norm_eps=1e-6)
    out = to_hf(model, tmp_path / "model")
    assert json.loads((out / "config.json").read_text())["rms_norm_eps"] == 1e-6
    ids = torch.randint(0, VOCAB, (2, CTX), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert (model(ids) - load_hf(out)(ids).logits).abs().max().item() < 1e-5


def test_exported_logits_equal_ours_in_kv_cache_decoding(exported):
    model, _, lm = exported
    ids = torch.randint(0, VOCAB, (2, 12), generator=torch.Generator().manual_seed(2))
    cache = model.init_kv_cache(2)
    theirs_cache = transformers.DynamicCache()  # filled in place, step by step
    # transformers 5 calls the argument `cache`, 4 `past_key_values`
    name = "cache" if "cache" in inspect.signature(lm.forward).parameters else "past_key_values"
    with torch.no_grad():
        ours = [model(ids[:, :5], kv_cache=cache)[:, -1]]
        theirs = [lm(ids[:, :5], use_cache=True, **{name: theirs_cache}).logits[:, -1]]
        for t in range(5, 12):
            ours.append(model(ids[:, t : t + 1], kv_cache=cache)[:, -1])
            out = lm(ids[:, t : t + 1], use_cache=True, **{name: theirs_cache})
            theirs.append(out.logits[:, -1])
    assert theirs_cache.get_seq_length() == 12
    assert (torch.stack(ours) - torch.stack(theirs)).abs().max().item() < 1e-5


def test_greedy_generation_gives_our_ids(exported, tokenizer):
    model, _, lm = exported
    eot = tokenizer.special_token_ids[EOT]
    for prompt in ([eot], tokenizer.encode("Once upon a time"), [7, 300, 12, 99]):
        n = CTX + 1 - len(prompt)  # fill the context
        ours = generate(model, prompt, n, temperature=0, eos_id=eot)
        with torch.no_grad():
            out = lm.generate(torch.tensor([prompt]), max_new_tokens=n, do_sample=False)
        theirs = out[0, len(prompt) :].tolist()
        assert theirs[: len(ours)] == ours  # theirs ends in <|endoftext|> if it stopped there
        assert theirs[len(ours) :] in ([], [eot])


def test_exported_files_and_config(exported, tokenizer):
    model, out, lm = exported
    assert {p.name for p in out.iterdir()} == FILES | TOKENIZER_FILES
    config = json.loads((out / "config.json").read_text())
    eot = tokenizer.special_token_ids[EOT]
    cfg = model.config
    assert config["vocab_size"] == model.token_embeddings.weight.shape[0] == VOCAB
    assert config["max_position_embeddings"] == CTX
    assert config["rms_norm_eps"] == 1e-5 and lm.config.rms_norm_eps == 1e-5
    assert config["head_dim"] == cfg.d_k and config["num_key_value_heads"] == cfg.num_heads
    assert config["tie_word_embeddings"] is cfg.tie_embeddings
    assert lm.config.tie_word_embeddings is cfg.tie_embeddings
    assert config["rope_theta"] == 500.0 and lm.config.rope_parameters["rope_theta"] == 500.0
    assert config["bos_token_id"] == config["eos_token_id"] == eot
    assert json.loads((out / "generation_config.json").read_text())["eos_token_id"] == eot
    tied = lm.lm_head.weight.data_ptr() == lm.model.embed_tokens.weight.data_ptr()
    assert tied is cfg.tie_embeddings
    assert not any(p.name.startswith(".") for p in out.parent.iterdir())  # no temporary left


def test_auto_tokenizer_encodes_like_ours(exported, tokenizer, shared_data):
    _, out, _ = exported
    auto = transformers.AutoTokenizer.from_pretrained(out)
    # the generic class (4: PreTrainedTokenizerFast, 5: TokenizersBackend), not a LLaMA one
    # that would add its own bos token
    assert type(auto).__name__ in ("PreTrainedTokenizerFast", "TokenizersBackend")
    assert auto.eos_token == auto.bos_token == EOT
    assert auto.eos_token_id == tokenizer.special_token_ids[EOT]
    text = shared_data("multilingual/multilingual_mix.txt").read_text(encoding="utf-8")
    for case in (text, "".join(SPACES), " ".join(SPACES) + EOT + "\n\n  \t" + EOT + "<pad>"):
        ids = auto(case)["input_ids"]  # no bos added
        assert ids == tokenizer.encode(case)
        assert auto.decode(ids) == case


@pytest.fixture(scope="module")
def gpt2_export(tmp_path_factory, shared_data):
    gpt2 = Tokenizer.from_files(
        shared_data("gpt2/vocab.json"), shared_data("gpt2/merges.txt"), [EOT]
    )
    model = llama_shaped(vocab_size=50304, d_model=8)
    out = to_hf(model, tmp_path_factory.mktemp("gpt2") / "model", tokenizer=gpt2)
    return gpt2, transformers.AutoTokenizer.from_pretrained(out)


def test_auto_tokenizer_of_gpt2_encodes_like_ours(gpt2_export, shared_data):
    gpt2, auto = gpt2_export
    text = shared_data("multilingual/multilingual_mix.txt").read_text(encoding="utf-8")
    assert auto(text)["input_ids"] == gpt2.encode(text)
    assert auto.eos_token_id == 50256


@settings(max_examples=40)
@given(text=st.lists(PIECES, max_size=30).map("".join))
def test_auto_tokenizer_encodes_whitespace_like_ours(gpt2_export, text):
    gpt2, auto = gpt2_export
    assert auto(text)["input_ids"] == gpt2.encode(text)


def test_bfloat16_export_loads_in_bfloat16(tmp_path, tokenizer):
    model = llama_shaped()
    out = to_hf(model, tmp_path / "bf16", tokenizer=tokenizer, dtype="bfloat16")
    from safetensors.torch import load_file

    assert {t.dtype for t in load_file(out / "model.safetensors").values()} == {torch.bfloat16}
    assert json.loads((out / "config.json").read_text())["torch_dtype"] == "bfloat16"
    lm = load_hf(out)  # in bfloat16 (transformers 5) or upcast to float32 (4)
    ids = torch.randint(0, VOCAB, (1, CTX))
    with torch.no_grad():
        assert torch.allclose(lm(ids).logits.float(), model(ids), atol=0.5)


# ---------------------------------------------------------------------------------------------
# Export: what cannot be exported, and nothing half-written


@pytest.mark.parametrize(
    "options, feature",
    [
        ({"position": "learned"}, "position='learned' (learned absolute positions"),
        ({"position": "none"}, "position='none' (no positions (NoPE)"),
        ({"ffn": "gelu"}, "ffn='gelu' (a GELU feed-forward"),
        ({"ffn": "silu"}, "ffn='silu' (an ungated SiLU feed-forward"),
        ({"norm": "post"}, "norm='post' (post-norm"),
        ({"norm": "none"}, "norm='none' (no RMSNorm"),
        ({"parallel": True}, "parallel=True (parallel attention and feed-forward"),
        ({"position": "learned", "ffn": "gelu"}, "position='learned' (learned absolute"),
    ],
)
def test_unsupported_models_raise_naming_the_feature_and_write_nothing(
    tmp_path, tokenizer, options, feature
):
    model = llama_shaped(**options)
    with pytest.raises(ValueError, match="cannot be exported to transformers exactly") as e:
        to_hf(model, tmp_path / "out", tokenizer=tokenizer)
    assert feature in str(e.value)
    assert list(tmp_path.iterdir()) == []


def test_dropout_and_the_attention_kernel_do_not_stop_an_export(tmp_path):
    model = llama_shaped(attn_pdrop=0.1, residual_pdrop=0.1, kernels="reference")
    out = to_hf(model, tmp_path / "out")
    assert {p.name for p in out.iterdir()} == FILES  # no tokenizer given
    assert json.loads((out / "config.json").read_text())["attention_dropout"] == 0.1
    ids = torch.randint(0, VOCAB, (1, CTX))
    with torch.no_grad():
        assert (load_hf(out)(ids).logits - model(ids)).abs().max().item() < 1e-5


def test_a_failure_while_writing_leaves_nothing(tmp_path, tokenizer, monkeypatch):
    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(hf, "atomic_save_safetensors", fail)
    with pytest.raises(OSError, match="disk full"):
        to_hf(llama_shaped(), tmp_path / "out", tokenizer=tokenizer)
    assert list(tmp_path.iterdir()) == []


def test_a_tokenizer_larger_than_the_model_is_refused(tmp_path, tokenizer):
    with pytest.raises(ValueError, match="token id 399 but the model's vocab_size is 300"):
        to_hf(llama_shaped(vocab_size=300), tmp_path / "out", tokenizer=tokenizer)
    assert list(tmp_path.iterdir()) == []


def test_an_existing_export_is_kept_unless_overwrite(tmp_path, tokenizer):
    out = tmp_path / "out"
    out.mkdir()  # an empty directory is fine
    to_hf(llama_shaped(), out, tokenizer=tokenizer)
    first = (out / "model.safetensors").read_bytes()
    with pytest.raises(FileExistsError, match="already exists; pass --overwrite"):
        to_hf(llama_shaped(tie_embeddings=True), out)
    assert (out / "model.safetensors").read_bytes() == first
    to_hf(llama_shaped(tie_embeddings=True), out, overwrite=True)
    assert {p.name for p in out.iterdir()} == FILES  # the old tokenizer files are gone
    assert json.loads((out / "config.json").read_text())["tie_word_embeddings"] is True
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    with pytest.raises(ValueError, match="dtype must be one of"):
        to_hf(llama_shaped(), tmp_path / "x", dtype="int8")


# ---------------------------------------------------------------------------------------------
# Import: random LLaMA models from a LlamaConfig


def random_llama(tmp_path, **options):
    """A random LlamaForCausalLM saved by transformers itself, and its directory."""
    fields = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2)
    fields.update(num_attention_heads=4, max_position_embeddings=CTX, rms_norm_eps=1e-5)
    # RoPE's base as transformers 5 (rope_parameters) and 4 (rope_theta) take it
    fields.update(rope_parameters={"rope_type": "default", "rope_theta": 300.0}, rope_theta=300.0)
    fields.update(options)
    torch.manual_seed(0)
    lm = transformers.LlamaForCausalLM(transformers.LlamaConfig(**fields)).eval()
    randomize_norms(lm)
    lm.save_pretrained(tmp_path / "llama")
    return lm, tmp_path / "llama"


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"tie_word_embeddings": True},
        {"num_key_value_heads": 2},
        {"num_key_value_heads": 1},
        {"rms_norm_eps": 1e-6},
    ],
    ids=["untied", "tied", "gqa-2", "mqa", "llama-eps"],
)
def test_imported_llama_logits_equal_transformers(tmp_path, options):
    lm, directory = random_llama(tmp_path, **options)
    model = from_hf(directory)
    cfg = model.config
    assert cfg.norm_eps == options.get("rms_norm_eps", 1e-5)
    assert (cfg.d_model, cfg.num_heads, cfg.d_ff, cfg.rope_theta) == (32, 4, 64, 300.0)
    assert cfg.tie_embeddings is bool(options.get("tie_word_embeddings"))
    assert (cfg.vocab_size, cfg.context_length, cfg.position, cfg.ffn) == (
        VOCAB,
        CTX,
        "rope",
        "swiglu",
    )
    ids = torch.randint(0, VOCAB, (2, CTX), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert (model(ids) - lm(ids).logits).abs().max().item() < 1e-5
    cache = model.init_kv_cache(2)
    with torch.no_grad():
        model(ids[:, :7], kv_cache=cache)
        step = model(ids[:, 7:8], kv_cache=cache)[:, -1]
        assert (step - lm(ids[:, :8]).logits[:, -1]).abs().max().item() < 1e-5


def test_export_then_import_gives_back_the_same_weights(tmp_path):
    for tied in (False, True):
        model = llama_shaped(tie_embeddings=tied)
        directory = to_hf(model, tmp_path / f"t{tied}")
        before = torch.get_rng_state()
        back = from_hf(directory)
        assert torch.equal(torch.get_rng_state(), before)  # no init drawn to be overwritten
        assert dataclasses.replace(back.config, init="gpt2") == model.config
        ours, theirs = model.state_dict(), back.state_dict()
        assert ours.keys() == theirs.keys()
        assert all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_sharded_checkpoints_import(tmp_path):
    lm, _ = random_llama(tmp_path)
    lm.save_pretrained(tmp_path / "sharded", max_shard_size="20KB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").is_file()
    ids = torch.randint(0, VOCAB, (1, CTX))
    with torch.no_grad():
        assert (from_hf(tmp_path / "sharded")(ids) - lm(ids).logits).abs().max().item() < 1e-5


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    return random_llama(tmp_path_factory.mktemp("llama"))[1]


@pytest.mark.parametrize(
    "change, message",
    [
        ({"model_type": "mistral"}, "model_type 'mistral' is not supported"),
        ({"architectures": ["LlamaForSequenceClassification"]}, "architectures"),
        ({"attention_bias": True}, "attention_bias=true"),
        ({"mlp_bias": True}, "mlp_bias=true"),
        ({"hidden_act": "gelu"}, "hidden_act='gelu'"),
        ({"head_dim": 16}, "head_dim=16 with hidden_size=32 and 4 heads"),
        ({"num_key_value_heads": 3}, "num_key_value_heads=3 does not divide"),
        (
            {"rope_parameters": {"rope_type": "linear", "factor": 2.0, "rope_theta": 1e4}},
            "RoPE scaling rope_type='linear'",
        ),
        (
            {"rope_parameters": None, "rope_scaling": {"type": "dynamic", "factor": 2.0}},
            "RoPE scaling rope_type='dynamic'",
        ),
        ({"partial_rotary_factor": 0.5}, "partial_rotary_factor=0.5"),
        ({"sliding_window": 16}, "sliding_window=16"),
        ({"quantization_config": {"quant_method": "gptq"}}, "quantization_config"),
        ({"rms_norm_eps": -1e-6}, "rms_norm_eps=-1e-06 (it must be a positive number)"),
        ({"rope_theta": 1e4}, "rope_theta=10000.0 and rope_parameters' rope_theta=300.0 differ"),
    ],
)
def test_unsupported_llama_features_raise_naming_them(tmp_path, llama_dir, change, message):
    directory = tmp_path / "copy"
    shutil.copytree(llama_dir, directory)
    config = json.loads((directory / "config.json").read_text())
    config.update(change)
    (directory / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="not supported|cannot import") as e:
        from_hf(directory)
    assert message in str(e.value)


def test_import_needs_config_and_safetensors_weights(tmp_path, llama_dir):
    with pytest.raises(FileNotFoundError, match="config.json not found"):
        from_hf(tmp_path)
    shutil.copy(llama_dir / "config.json", tmp_path / "config.json")
    (tmp_path / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(FileNotFoundError, match="reads only safetensors"):
        from_hf(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    del config["hidden_size"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="lacks integer hidden_size"):
        from_hf(tmp_path)


def test_weights_that_do_not_match_the_config_are_an_error(tmp_path, llama_dir):
    directory = tmp_path / "copy"
    shutil.copytree(llama_dir, directory)
    config = json.loads((directory / "config.json").read_text())
    config["num_hidden_layers"] = 3
    (directory / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="lacks 9 parameters"):
        from_hf(directory)
    config.update(num_hidden_layers=2, intermediate_size=48)
    (directory / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="do not match its config.json"):
        from_hf(directory)


# ---------------------------------------------------------------------------------------------
# The commands, and optional imports


def test_export_and_import_commands(tmp_path, tokenizer, capsys):
    model = llama_shaped(vocab_size=400)
    save_checkpoint(model, None, 5, tmp_path / "ckpt.pt")
    tokenizer.save_dir(tmp_path / "tok")
    out = tmp_path / "hf"
    args = ["--checkpoint", str(tmp_path / "ckpt.pt"), "--tokenizer", str(tmp_path / "tok")]
    assert main(["export-hf", *args, "--out", str(out)]) == 0
    assert "LlamaForCausalLM" in capsys.readouterr().out
    assert main(["export-hf", *args, "--out", str(out)]) == 1
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    ids = torch.randint(0, 400, (1, CTX))
    for name in ("back.pt", "back.safetensors"):
        assert main(["import-hf", str(out), "--out", str(tmp_path / name)]) == 0
        assert "tie_embeddings = false" in capsys.readouterr().out
        with torch.no_grad():
            assert torch.equal(load_model(tmp_path / name)(ids), model(ids))
    argv = ["--checkpoint", str(tmp_path / "back.safetensors"), "--tokenizer"]
    argv += [str(tmp_path / "tok"), "--prompt", "Once", "--temperature", "0"]
    argv += ["--max-new-tokens", "5"]
    assert main(["generate", *argv]) == 0
    assert capsys.readouterr().out.startswith("Once")
    bad = ["export-hf", *args[:2], "--tokenizer", str(tmp_path), "--out", str(tmp_path / "x")]
    assert main(bad) == 1
    assert "vocab.json" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_importing_cs336_never_imports_transformers_or_safetensors():
    code = (
        "import sys, cs336, cs336.export, cs336.generation, cs336.training, cs336.cli;"
        "from cs336.cli import export_hf, import_hf;"
        "print(sorted(m for m in ('transformers', 'safetensors') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=os.environ
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
