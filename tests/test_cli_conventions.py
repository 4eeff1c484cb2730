"""One convention in every subcommand: --a-b and --a_b name the same option, no
abbreviations, unknown options and commands answered with "did you mean", every config
field (the model preset included) a flag of `train`, `cs336 --version`, the same --device
default wherever there is one, and a quiet exit on a closed output pipe."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cs336.cli import COMMANDS, _spelled_as_registered, build_parser, main
from cs336.training.checkpoint import read_checkpoint

ROOT = Path(__file__).resolve().parent.parent


def cli(*args: str, **kwargs) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "python")}
    kwargs = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, **kwargs}
    return subprocess.run(
        [sys.executable, "-m", "cs336", *args], text=True, timeout=120, env=env, **kwargs
    )


def long_options(command: str) -> list[tuple[str, str]]:
    """(option string, dest) of every long option of ``command``."""
    _, parser = build_parser([command])
    assert parser is not None
    return [(o, a.dest) for a in parser._actions for o in a.option_strings if o.startswith("--")]


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_option_takes_dashes_and_underscores(command):
    _, parser = build_parser([command])
    assert parser is not None
    options = long_options(command)
    assert options
    for option, _ in options:
        for spelling in (option.replace("_", "-"), option.replace("-", "_").replace("__", "--")):
            registered = _spelled_as_registered([spelling], parser)[0]
            assert registered == option, (spelling, registered)


def test_the_other_spelling_runs(tmp_path, capsys):
    corpus = tmp_path / "c.txt"
    corpus.write_text("low lower lowest " * 20)
    argv = ["train-bpe", str(corpus), "--vocab_size", "260", "--out", str(tmp_path / "t")]
    assert main([*argv, "--max_token_length=4", "--quiet"]) == 0
    code = main(["accounting", "--preset", "gpt2-small", "--batch_size", "2", "--memory_gb=80"])
    assert code == 0 and "largest batch size in 80 GB" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "hint"),
    [
        (["train", "--optim.lrr", "3e-3"], "did you mean --optim.lr?"),
        (["train", "--max-step", "3"], "did you mean --max_steps?"),
        (["train-bpe", "x.txt", "--out", "t", "--vocab-sise", "300"], "did you mean --vocab-size"),
        (["accounting", "--presets", "gpt2-xl"], "did you mean --preset?"),
        (["generate", "--checkpoint", "c", "--tokenizer", "t", "--temprature", "0"],
         "did you mean --temperature?"),
        (["plot", "run", "--out", "x.png", "--log_yy"], "did you mean --log-y?"),
        (["tokenize", "x.txt", "--tokenizer", "t", "--out", "x.npy", "--thread", "2"],
         "did you mean --threads?"),
    ],
)  # fmt: skip
def test_unknown_options_get_did_you_mean_from_their_command(capsys, argv, hint):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert f"cs336 {argv[0]}: error: unrecognized arguments: " in err and hint in err, err
    assert err.startswith(f"usage: cs336 {argv[0]}")


@pytest.mark.parametrize(
    "argv",
    [
        ["train-bpe", "x.txt", "--out", "t", "--vocab", "300"],
        ["generate", "--checkpoint", "c", "--tokenizer", "t", "--temp", "0"],
        ["train", "--optim.l", "1"],
    ],
)
def test_options_are_never_abbreviated(capsys, argv):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2 and "did you mean" in capsys.readouterr().err


def test_an_unknown_command_gets_did_you_mean():
    result = cli("trian", "x.toml")
    assert result.returncode == 2
    assert "invalid choice: 'trian' (did you mean 'train'?" in result.stderr


def test_version():
    import cs336

    result = cli("--version")
    assert result.returncode == 0 and result.stdout == f"cs336 {cs336.__version__}\n"


def test_the_device_default_is_the_same_everywhere():
    defaults = {}
    for command in set(COMMANDS) - {"train"}:  # train's flags default to the config file's
        _, parser = build_parser([command])
        assert parser is not None
        for action in parser._actions:
            if "--device" in action.option_strings:
                defaults[command] = action.default
    _, train = build_parser(["train"])
    assert train is not None
    train_default = next(a for a in train._actions if "--device" in a.option_strings)
    assert "generate" in defaults and set(defaults.values()) == {"auto"}
    assert "auto" in train_default.help


def test_a_device_this_machine_lacks_is_named(capsys, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    code = main(["generate", "--checkpoint", "c.pt", "--tokenizer", "t", "--device", "cuda"])
    assert code == 1 and "no CUDA device" in capsys.readouterr().err
    code = main(["generate", "--checkpoint", "c.pt", "--tokenizer", "t", "--device", "gpu7"])
    assert code == 1 and "'gpu7' is not a torch device" in capsys.readouterr().err


def test_every_config_field_and_the_preset_is_a_train_flag(tmp_path, capsys):
    from cs336.training.config import field_specs

    flags = {o for o, _ in long_options("train")}
    assert {f"--{s.name}" for s in field_specs()} <= flags and "--model.preset" in flags
    loop = np.random.default_rng(0).integers(0, 64, 200).astype(np.uint16)
    np.save(tmp_path / "t.npy", loop)
    argv = ["train", "--model.preset", "cs336-2025", "--model.vocab_size", "64"]
    argv += ["--model.context_length", "8", "--model.d_model", "16", "--model.num_layers", "1"]
    argv += ["--model.num_heads", "2", "--data.train_path", str(tmp_path / "t.npy")]
    argv += ["--data.val_path", str(tmp_path / "t.npy"), "--data.batch_size", "2"]
    argv += ["--max_steps", "1", "--optim.warmup_iters", "0", "--eval_interval", "0"]
    argv += ["--progress", "false", "--out_dir", str(tmp_path / "run")]
    assert main(argv) == 0
    config = read_checkpoint(tmp_path / "run")["model_config"]
    assert config["ffn"] == "swiglu" and config["position"] == "rope" and config["d_ff"] == 64
    code = main([*argv[:1], "--model.preset", "cs336-2099", *argv[3:]])
    assert code == 1 and "must be one of cs336-2024, cs336-2025" in capsys.readouterr().err


@pytest.mark.parametrize("args", [["accounting"], ["accounting", "--preset", "gpt2-xl"],
                                  ["--version"], ["plot", "--help"]])  # fmt: skip
@pytest.mark.parametrize("buffered", [True, False])
def test_a_closed_output_pipe_ends_quietly(args, buffered, monkeypatch):
    """`cs336 accounting | head -0`: the reader is gone before the first line. Buffered
    (the usual case), the error comes when the output is flushed at the end."""
    if buffered:
        monkeypatch.delenv("PYTHONUNBUFFERED", raising=False)
    else:
        monkeypatch.setenv("PYTHONUNBUFFERED", "1")
    read, write = os.pipe()
    os.close(read)
    try:
        result = cli(*args, stdout=write, stderr=subprocess.PIPE)
    finally:
        os.close(write)
    assert result.returncode in (0, 141) and result.stderr == "", result.stderr
    assert result.returncode == 141 or args[-1] == "--help"  # argparse's help ignores it


def test_every_help_is_one_parse_away_and_names_the_conventions():
    result = cli("train", "--help")
    assert result.returncode == 0 and "--model.preset" in result.stdout
    usage = result.stdout.split("\n\n")[0]
    assert usage.count("\n") <= 2, usage  # a short usage line, not every flag
    for command in ("tokenize", "train-bpe", "plot", "demo", "export-hf", "import-hf"):
        assert "--overwrite" in cli(command, "--help").stdout, command
