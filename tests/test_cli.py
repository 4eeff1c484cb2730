"""The ``cs336`` entry point: every subcommand has working help, errors exit non-zero."""

from __future__ import annotations

import resource
import subprocess
import sys

import pytest

from cs336.cli import COMMANDS, main


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cs336", *args], capture_output=True, text=True, timeout=120
    )


def test_top_level_help_lists_every_command():
    result = run_cli("--help")
    assert result.returncode == 0
    for name in COMMANDS:
        assert name in result.stdout


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_command_has_help(name):
    with pytest.raises(SystemExit) as exc:
        main([name, "--help"])
    assert exc.value.code == 0


def test_unknown_command_is_an_error():
    result = run_cli("no-such-command")
    assert result.returncode != 0
    assert "invalid choice" in result.stderr


def test_missing_command_is_an_error():
    result = run_cli()
    assert result.returncode != 0
    assert "required" in result.stderr


def test_a_library_that_cannot_load_is_one_line_not_a_traceback(monkeypatch, capsys):
    """An ImportError while a command runs (or while its options are set up) is the
    command's one-line error, with the likely cause when the system refused the memory."""
    import cs336.cli.accounting as accounting

    def broken(*_args):
        raise ImportError("libtorch_cpu.so: failed to map segment from shared object")

    monkeypatch.setattr(accounting, "add_arguments", broken)
    assert main(["accounting", "--preset", "gpt2-small"]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    assert err.startswith("cs336 accounting: error: a library failed to load: libtorch_cpu.so")
    assert err.endswith("check the memory limit, ulimit -v)")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS (Linux)")
def test_under_an_address_space_limit_too_small_for_torch():
    """torch's libraries cannot be mapped in 1 GB of address space: the command says so
    in one line and exits 1 (or, were they to fit, runs), never a traceback."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, resource.RLIM_INFINITY))

    result = subprocess.run(
        [sys.executable, "-m", "cs336", "accounting", "--preset", "gpt2-small"],
        capture_output=True, text=True, timeout=120, preexec_fn=limit,
    )  # fmt: skip
    assert "Traceback" not in result.stderr, result.stderr
    if result.returncode != 0:
        assert result.returncode == 1
        assert result.stderr.startswith("cs336 accounting: error: "), result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
