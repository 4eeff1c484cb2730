"""Package hygiene: lazy heavy imports, the extension's stub, the version."""

from __future__ import annotations

import ast
import importlib.util
import inspect
import os
import subprocess
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

import pytest

import cs336
from cs336 import _core

ROOT = Path(__file__).resolve().parent.parent

STUB = Path(cs336.__file__).with_name("_core.pyi")
HEAVY = ("torch", "tiktoken", "tokenizers", "matplotlib", "regex")


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=os.environ
    )


def test_importing_the_tokenizer_does_not_import_heavy_dependencies():
    code = (
        "import sys, cs336; from cs336 import Tokenizer, BPETrainer, train_bpe;"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    result = _python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_torch_backed_names_are_imported_on_first_use():
    result = _python("import sys, cs336; cs336.TransformerLM; print('torch' in sys.modules)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True"


def test_every_public_name_resolves():
    for name in cs336.__all__:
        assert getattr(cs336, name) is not None, name
    with pytest.raises(AttributeError, match="no_such_thing"):
        cs336.no_such_thing  # noqa: B018


def _stub_names() -> dict[str, set[str] | None]:
    """Top-level public names of the stub; for classes, the set of their member names
    (private ones, such as the ``_TrainOptions`` type, exist for type checking only)."""
    tree = ast.parse(STUB.read_text())
    names: dict[str, set[str] | None] = {}
    for node in tree.body:
        if getattr(node, "name", "").startswith("_"):
            continue
        if isinstance(node, ast.ClassDef):
            names[node.name] = {
                n.name for n in node.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
            }
        elif isinstance(node, ast.FunctionDef):
            names[node.name] = None
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names[node.target.id] = None
    return names


def test_stub_lists_exactly_the_extension_names():
    public = {n for n in dir(_core) if not n.startswith("_")}
    stub = _stub_names()
    assert set(stub) == public


def test_stub_class_members_exist_in_the_extension():
    for name, members in _stub_names().items():
        if members is None:
            continue
        cls = getattr(_core, name)
        missing = {m for m in members if not hasattr(cls, m)}
        assert not missing, f"{name}: stub lists members the extension lacks: {missing}"
        real = {m for m, _ in inspect.getmembers(cls) if not m.startswith("_")}
        undocumented = real - members
        assert not undocumented, f"{name}: members missing from the stub: {undocumented}"


@pytest.mark.skipif(importlib.util.find_spec("mypy") is None, reason="mypy is not installed")
def test_stubtest_agrees_with_the_compiled_module():
    result = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "cs336._core", "--ignore-missing-stub"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_version_is_the_crates():
    """Installed or not, cs336.__version__ is the version Cargo.toml gives the package
    (maturin takes it from there), and `cs336 --version` prints it."""
    cargo = tomllib.loads((ROOT / "Cargo.toml").read_text())["package"]["version"]
    assert cs336.__version__ == cargo
    out = subprocess.run(
        [sys.executable, "-m", "cs336", "--version"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "python")},
    )
    assert cargo in out.stdout


#: The longest a function of the package may be, docstring included (a reader should see
#: one whole on a screen; issue 22).
MAX_FUNCTION_LINES = 80


def test_no_function_in_the_package_is_longer_than_a_screen():
    long = []
    for path in sorted((ROOT / "python" / "cs336").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1  # type: ignore[operator]
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines})")
    assert not long, long


def test_no_module_imports_a_module_by_name_at_run_time():
    """Imports are statements a reader (and a tool) can see: no importlib edges, except
    the package's lazy public names (PEP 562: a table of names to modules, so that
    ``from cs336 import Tokenizer`` does not import torch)."""
    found = [
        str(path.relative_to(ROOT))
        for path in sorted((ROOT / "python" / "cs336").rglob("*.py"))
        if "import_module(" in path.read_text(encoding="utf-8")
        and path != ROOT / "python" / "cs336" / "__init__.py"
    ]
    assert not found, found
