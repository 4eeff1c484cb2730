"""The ``cs336`` command line: one subcommand per module in ``cs336.cli``.

Each subcommand module is a thin argparse front to a typed library function and defines
``add_arguments(parser)`` and ``run(args) -> int``; its one-line help is in
:data:`COMMANDS`. Modules are imported only when needed, so ``cs336 train-bpe --help``
never imports torch.

Conventions of every subcommand: an option may be written with dashes or underscores
(``--vocab-size`` or ``--vocab_size``), never abbreviated, and an unknown one is answered
with the closest known one. Errors in the user's input print one line, ``cs336 COMMAND:
error: ...``, and exit 1 (2 for a command line argparse rejects); Ctrl-C or SIGTERM at any
moment prints one line and exits 130 / 143 (see :mod:`cs336.cli._signals`); a closed
output pipe (``cs336 accounting | head -1``) ends the command quietly with status 141, as
for other Unix tools.
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any, NoReturn

from cs336 import _files
from cs336.cli import _signals

# subcommand -> (module in cs336.cli, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "download": (
        "download",
        "download TinyStories or the OWT sample (or any URL), resumably; --prepare tokenizes",
    ),
    "train-bpe": ("train_bpe", "train a byte-level BPE tokenizer on text files"),
    "tokenize": ("tokenize", "encode a text file into a .npy array of token ids"),
    "train": ("train", "train a Transformer language model"),
    "generate": ("generate", "sample text from a trained checkpoint"),
    "eval": ("eval", "mean loss and perplexity of a checkpoint over a whole token or text file"),
    "export-hf": ("export_hf", "export a LLaMA-shaped model as a Hugging Face model directory"),
    "import-hf": ("import_hf", "import a Hugging Face LLaMA model directory as a checkpoint"),
    "accounting": ("accounting", "parameters, FLOPs, memory and MFU of a model config"),
    "plot": ("plot", "plot loss curves of training runs (PNG, PDF or SVG)"),
    "demo": ("demo", "the whole pipeline on a built-in or given corpus"),
}


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` without abbreviations, whose errors name the command."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)  # `--optim.l` must not mean `--optim.lr`
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


class _Version(argparse.Action):
    """``--version``: reads the installed version only when asked (it costs an import)."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> NoReturn:
        import cs336

        print(f"cs336 {cs336.__version__}")
        parser.exit()


def build_parser(argv: Sequence[str]) -> tuple[Parser, Parser | None]:
    """The top-level parser and the chosen subcommand's parser (None when none is given).
    Only the chosen subcommand's module is imported; the others get a stub parser."""
    parser = Parser(
        prog="cs336",
        description="Train GPT-style language models from raw text.",
        epilog="In every command an option takes dashes or underscores (--vocab-size, "
        "--vocab_size). A command that writes refuses an existing output unless --overwrite, "
        "and never writes over its own inputs. Errors print one line and exit 1; Ctrl-C "
        "prints one line and exits 130. cs336 COMMAND --help for the options of a command.",
    )
    parser.add_argument("--version", action=_Version)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    chosen_name = next((a for a in argv if not a.startswith("-")), None)
    chosen = None
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen_name:
            module = _command_module(module_name)
            module.add_arguments(p)
            p.set_defaults(_run=module.run)
            chosen = p
    return parser, chosen


def _command_module(name: str) -> ModuleType:
    """The module of subcommand ``name`` (a key's module in :data:`COMMANDS`), imported
    now: import by import, so every edge of the import graph is in plain sight."""
    match name:
        case "download":
            from cs336.cli import download

            return download
        case "train_bpe":
            from cs336.cli import train_bpe

            return train_bpe
        case "tokenize":
            from cs336.cli import tokenize

            return tokenize
        case "train":
            from cs336.cli import train

            return train
        case "generate":
            from cs336.cli import generate

            return generate
        case "eval":
            from cs336.cli import eval

            return eval
        case "export_hf":
            from cs336.cli import export_hf

            return export_hf
        case "import_hf":
            from cs336.cli import import_hf

            return import_hf
        case "accounting":
            from cs336.cli import accounting

            return accounting
        case "plot":
            from cs336.cli import plot

            return plot
        case "demo":
            from cs336.cli import demo

            return demo
    raise KeyError(name)


def _options(parser: argparse.ArgumentParser) -> dict[str, str]:
    """Each long option of ``parser`` under its spelling with dashes -> as registered."""
    return {
        o.replace("_", "-"): o
        for action in parser._actions
        for o in action.option_strings
        if o.startswith("--")
    }


def _spelled_as_registered(argv: list[str], parser: Parser) -> list[str]:
    """``argv`` with every option written as ``parser`` registered it: ``--vocab_size`` and
    ``--vocab-size`` are the same option (up to a ``--`` that ends the options)."""
    options = _options(parser)
    out: list[str] = []
    for i, arg in enumerate(argv):
        if arg == "--":
            return out + argv[i:]
        name, eq, value = arg.partition("=")
        if arg.startswith("--"):
            name = options.get(name.replace("_", "-"), name)
        out.append(name + eq + value)
    return out


def _unknown(extras: list[str], parser: Parser) -> NoReturn:
    options = sorted(set(_options(parser).values()))
    hints = []
    for arg in extras:
        if arg.startswith("-"):
            close = difflib.get_close_matches(arg.partition("=")[0], options, n=1)
            if close:
                hints.append(f"{arg.partition('=')[0]}: did you mean {close[0]}?")
    hint = f" ({'; '.join(hints)})" if hints else ""
    parser.error(f"unrecognized arguments: {' '.join(extras)}{hint}")


def _check_command(parser: Parser, argv: list[str]) -> None:
    given = next((a for a in argv if not a.startswith("-")), None)
    if given is not None and given not in COMMANDS:
        close = difflib.get_close_matches(given, list(COMMANDS), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        parser.error(
            f"argument COMMAND: invalid choice: {given!r} ({hint}choose from {', '.join(COMMANDS)})"
        )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``cs336`` command line on ``argv`` (default: ``sys.argv[1:]``); returns the
    exit status."""
    restore = _signals.install()
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        try:
            code = _main(args)
        except SystemExit:  # argparse: --help, --version, a rejected command line
            if not _flushed():
                raise SystemExit(141) from None
            raise
        return code if _flushed() else 141
    except BrokenPipeError:
        _files.remove_partial_outputs()
        _quiet_stdout()
        return 141
    except ImportError as e:  # a library that cannot load (torch under ulimit -v, say)
        _files.remove_partial_outputs()
        print(f"{_command(args)}: error: {_cannot_load(e)}", file=sys.stderr)
        return 1
    finally:
        restore()


def _command(argv: list[str]) -> str:
    """``cs336 NAME`` for the subcommand ``argv`` names, else ``cs336``."""
    named = next((a for a in argv if not a.startswith("-")), None)
    return f"cs336 {named}" if named in COMMANDS else "cs336"


def _cannot_load(e: ImportError) -> str:
    """What an import that failed says to a user, with the likely cause when the system
    refused the memory to map a library."""
    text = f"a library failed to load: {e}"
    if "failed to map segment" in str(e) or "cannot allocate memory" in str(e).lower():
        text += " (too little memory to load it: check the memory limit, ulimit -v)"
    return text


def _main(argv: list[str]) -> int:
    command = _command(argv)
    if command != "cs336":
        _signals.set_message(f"{command}: interrupted; nothing was written")
    _signals.progress_on_stderr(False)
    parser, chosen = build_parser(argv)
    _check_command(parser, argv)
    if chosen is not None:
        at = argv.index(chosen.prog.split()[-1])
        argv = argv[: at + 1] + _spelled_as_registered(argv[at + 1 :], chosen)
        # an unknown option is answered before argparse's other complaints (a missing
        # required option, say), which a misspelled one would otherwise hide
        options = set(_options(chosen).values())
        rest = argv[at + 1 : argv.index("--")] if "--" in argv else argv[at + 1 :]
        unknown = [a for a in rest if a.startswith("--") and a.partition("=")[0] not in options]
        if unknown:
            _unknown(unknown, chosen)
    args, extras = parser.parse_known_args(argv)
    if extras:
        _unknown(extras, chosen or parser)
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        _files.remove_partial_outputs()
        print(_signals.message(), file=sys.stderr)
        return 130
    except BrokenPipeError:
        raise  # not an error of the command: main() ends it quietly
    except MemoryError:
        print(f"cs336 {args.command}: error: out of memory", file=sys.stderr)
        return 1
    except (OSError, ValueError, RuntimeError) as e:
        print(f"cs336 {args.command}: error: {e}", file=sys.stderr)
        return 1


def _flushed() -> bool:
    """Flush stdout now (not at exit, where a reader that has gone could not be answered
    quietly); False when the reader has gone."""
    try:
        sys.stdout.flush()
        return True
    except BrokenPipeError:
        _quiet_stdout()
        return False


def _quiet_stdout() -> None:
    """Point stdout at /dev/null: the reader is gone, and flushing the rest at exit would
    raise again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # no real stdout (e.g. captured): nothing to point away
        pass
