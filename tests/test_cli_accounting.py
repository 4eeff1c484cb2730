"""``cs336 accounting``: tables for presets, config files and flags; clear errors."""

from __future__ import annotations

import json

import pytest

from cs336.cli import main


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["accounting", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_without_a_model_it_compares_the_presets(capsys):
    code, out, _ = run(capsys)
    assert code == 0
    for name in ("gpt2-small", "gpt2-medium", "gpt2-large", "gpt2-xl"):
        assert name in out
    assert "1,637,176,000" in out and "162,935,040" in out
    assert "share of forward FLOPs" in out


def test_gpt2_xl_report_answers_the_handout_questions(capsys):
    code, out, _ = run(
        capsys,
        "--preset", "gpt2-xl", "--batch-size", "1024", "--memory-gb", "80",
        "--peak-tflops", "19.5", "--train-steps", "400000", "--tokens-per-second", "1000",
    )  # fmt: skip
    assert code == 0
    assert "total                1,637,176,000  100.0%" in out
    assert "3.5067e+12" in out  # forward FLOPs at context 1024
    assert "ffn" in out and "57.4%" in out
    assert "largest batch size in 80 GB: 3" in out
    assert "MFU at 1,000 tokens/s: 52.7%" in out
    assert "400,000 steps at 50% MFU of 19.5 TFLOP/s" in out and "days" in out


def test_context_length_override(capsys):
    code, out, _ = run(capsys, "--preset", "gpt2-xl", "--context-length", "16384")
    assert code == 0
    assert "context_length=16384" in out
    assert "one sequence of 16384 tokens" in out


def test_config_file_json_and_toml(capsys, tmp_path):
    model = dict(vocab_size=100, context_length=32, d_model=64, num_layers=2, num_heads=4, d_ff=128)
    path = tmp_path / "m.json"
    path.write_text(json.dumps(model))
    code, out, _ = run(capsys, "--config", str(path))
    assert code == 0 and "d_model=64" in out
    toml = tmp_path / "train.toml"
    toml.write_text("[model]\n" + "".join(f"{k} = {v}\n" for k, v in model.items()))
    code, out2, _ = run(capsys, "--config", str(toml), "--ffn", "swiglu")
    assert code == 0 and "ffn=swiglu" in out2


def test_config_files_are_read_by_the_one_config_reader(capsys, tmp_path, monkeypatch):
    """`--config` goes through cs336.training.config.read_config_file (tomli on Python
    3.10, the same errors as `cs336 train`), not a parser of its own."""
    import cs336.training.config as config

    seen = []
    real = config.read_config_file
    monkeypatch.setattr(config, "read_config_file", lambda p: seen.append(p) or real(p))
    path = tmp_path / "train.toml"
    path.write_text("[model]\nvocab_size = 10\ncontext_length = 8\nd_model = 8\n"
                    "num_layers = 1\nnum_heads = 2\nd_ff = 16\n")  # fmt: skip
    code, out, _ = run(capsys, "--config", str(path))
    assert code == 0 and "d_model=8" in out and [str(p) for p in seen] == [str(path)]
    bad = tmp_path / "m.yaml"
    bad.write_text("x")
    code, _, err = run(capsys, "--config", str(bad))
    assert code == 1 and "must end in .toml or .json" in err


def test_shape_flags_alone(capsys):
    flags = ["--vocab-size", "10000", "--context-length", "256", "--d-model", "512"]
    flags += ["--num-layers", "4", "--num-heads", "16", "--d-ff", "2048"]
    code, out, _ = run(capsys, *flags)
    assert code == 0 and "vocab_size=10000" in out
    code, _, err = run(capsys, *flags[:4])
    assert code == 1
    assert "also give --d-model, --num-layers, --num-heads, --d-ff" in err


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--preset", "gpt2-small", "--num-heads", "7"], "d_model (768) must be divisible"),
        (["--batch-size", "0"], "--batch-size must be positive, got 0"),
        (["--assumed-mfu", "1.5"], "--assumed-mfu must be in (0, 1], got 1.5"),
        (["--config", "missing.json"], "missing.json"),
    ],
)
def test_errors_exit_1_with_a_message(capsys, args, match):
    code, _, err = run(capsys, *args)
    assert code == 1
    assert match in err


def test_unknown_config_keys_are_named(capsys, tmp_path):
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"n_layer": 2}))
    code, _, err = run(capsys, "--config", str(path))
    assert code == 1 and "unknown model config keys: n_layer" in err


def test_edition_2025_compares_the_gpt2_shapes_with_swiglu_and_rope(capsys):
    code, out, _ = run(capsys, "--edition", "2025")
    assert code == 0
    assert "2025 architecture: SwiGLU FFN (3 matrices), RoPE" in out
    assert "2,127,057,600" in out and "190,460,160" in out  # XL and small


def test_edition_2025_answers_the_2025_handout_questions(capsys):
    code, out, _ = run(
        capsys,
        "--preset", "gpt2-xl", "--edition", "2025", "--batch-size", "1024",
        "--memory-gb", "80", "--peak-tflops", "19.5", "--train-steps", "400000",
    )  # fmt: skip
    assert code == 0
    assert "ffn=swiglu" in out and "position=rope" in out and "d_ff=6400" in out
    assert "total                2,127,057,600  100.0%" in out
    assert "position_embeddings              0" in out
    assert "4.5133e+12" in out and "66.9%" in out  # the FFN's share of forward FLOPs
    assert "memory = 18.0343 GB * batch_size + 34.0329 GB" in out
    assert "largest batch size in 80 GB: 2" in out
    assert "one AdamW step: 2.9779e+10 FLOPs" in out
    time = "400,000 steps at 50% MFU of 19.5 TFLOP/s: 5.6882e+08 s = 158,005.35 h = 6,583.6 days"
    assert time in out


def test_option_flags_override_the_edition(capsys):
    code, out, _ = run(capsys, "--preset", "gpt2-small", "--edition", "2025", "--ffn", "silu")
    assert code == 0 and "ffn=silu" in out and "position=rope" in out
    code, out, _ = run(capsys, "--preset", "gpt2-small", "--edition", "2024")
    assert code == 0 and "ffn=gelu" in out and "162,935,040" in out


def test_a_config_file_may_name_the_preset(capsys, tmp_path):
    path = tmp_path / "m.toml"
    path.write_text(
        '[model]\npreset = "cs336-2025"\nvocab_size = 10000\ncontext_length = 256\n'
        "d_model = 512\nnum_layers = 4\nnum_heads = 16\n"
    )
    code, out, _ = run(capsys, "--config", str(path))
    assert code == 0 and "d_ff=1344" in out and "22,696,448" in out


def test_edition_2026_answers_the_2026_handout_questions(capsys):
    """GPT-2 XL with d_ff 4,288, SwiGLU and no position embeddings; the MFU question's H100
    at 495 TFLOP/s (TF32)."""
    code, out, _ = run(
        capsys,
        "--preset", "gpt2-xl", "--edition", "2026", "--batch-size", "1024",
        "--memory-gb", "80", "--peak-tflops", "495", "--train-steps", "400000",
    )  # fmt: skip
    assert code == 0
    assert "ffn=swiglu" in out and "position=rope" in out and "d_ff=4288" in out
    assert "total                1,640,452,800  100.0%" in out
    assert "position_embeddings              0" in out
    assert "3.5168e+12" in out and "57.5%" in out  # forward FLOPs; the FFN's share
    assert "memory = 16.3734 GB * batch_size + 26.2472 GB" in out
    assert "largest batch size in 80 GB: 3" in out
    assert "one AdamW step: 2.2966e+10 FLOPs" in out
    time = "400,000 steps at 50% MFU of 495 TFLOP/s: 1.7460e+07 s = 4,850.06 h = 202.1 days"
    assert time in out


def test_edition_2026_compares_the_gpt2_shapes_with_their_own_d_ff(capsys):
    code, out, _ = run(capsys, "--edition", "2026")
    assert code == 0
    assert "d_ff = 8/3 d_model rounded to a multiple of 64" in out
    assert "1,640,452,800" in out and " 4288 " in out and " 2048 " in out  # XL; small's d_ff


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--preset", "gpt2-xl", "--tokens-per-second", "1000"],
         "--tokens-per-second needs --peak-tflops"),
        (["--preset", "gpt2-xl", "--train-steps", "10"], "--train-steps needs --peak-tflops"),
        (["--preset", "gpt2-xl", "--peak-tflops", "10", "--assumed-mfu", "0.3"],
         "--assumed-mfu needs --train-steps"),
        (["--memory-gb", "80"], "--memory-gb is about one model: give --preset"),
        (["--batch-size", "8"], "--batch-size is about one model"),
        (["--preset", "gpt2-xl", "--memory-gb", "0"], "--memory-gb must be positive"),
        (["--preset", "gpt2-xl", "--peak-tflops", "10", "--train-steps", "-5"],
         "--train-steps must be positive"),
    ],
)  # fmt: skip
def test_a_flag_that_nothing_would_use_is_an_error(capsys, args, match):
    code, out, err = run(capsys, *args)
    assert code == 1 and match in err and out == ""


def test_a_training_config_gives_the_batch_size(capsys, tmp_path):
    path = tmp_path / "train.toml"
    path.write_text(
        "[model]\nvocab_size = 100\ncontext_length = 32\nd_model = 64\nnum_layers = 2\n"
        'num_heads = 4\nd_ff = 128\n[data]\ntrain_path = "t.npy"\nval_path = "v.npy"\n'
        "batch_size = 48\n"
    )
    code, out, _ = run(capsys, "--config", str(path))
    assert code == 0 and "batch size 48: data.batch_size of" in out
    assert "training memory, batch 48 x 32 tokens" in out
    code, out, _ = run(capsys, "--config", str(path), "--batch-size", "2")
    assert code == 0 and "training memory, batch 2 x 32 tokens" in out
