"""Module paths of cs336 0.1 (a flat package) that moved into subpackages.

``import cs336.model`` (and the other old paths) still works: it returns the module at
its new place (``cs336.nn.model``), the same object, with a ``DeprecationWarning`` that
names the new path. The table below is the whole mapping.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from collections.abc import Sequence
from types import ModuleType

MOVED = {
    "cs336.bpe": "cs336.tokenizer.trainer",
    "cs336.gpt2_format": "cs336.tokenizer.gpt2_format",
    "cs336.interop": "cs336.tokenizer.interop",
    "cs336.reference_bpe": "cs336.tokenizer.reference",
    "cs336.functional": "cs336.nn.functional",
    "cs336.layers": "cs336.nn.layers",
    "cs336.model": "cs336.nn.model",
    "cs336.schedule": "cs336.optim",
    "cs336.config": "cs336.training.config",
    "cs336.data": "cs336.training.data",
    "cs336.checkpoint": "cs336.training.checkpoint",
    "cs336.metrics": "cs336.training.metrics",
    "cs336.plot": "cs336.training.plot",
    "cs336.stories": "cs336.demo.stories",
    "cs336.commands": "cs336.cli",
    **{
        f"cs336.commands.{name}": f"cs336.cli.{name}"
        for name in ("accounting", "demo", "generate", "plot", "tokenize", "train", "train_bpe")
    },
}


class _MovedLoader(importlib.abc.Loader):
    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        new = MOVED[spec.name]
        warnings.warn(
            f"{spec.name} moved to {new}; import it from there", DeprecationWarning, stacklevel=2
        )
        return importlib.import_module(new)

    def exec_module(self, module: ModuleType) -> None:
        pass  # already executed at its new path


class _MovedFinder(importlib.abc.MetaPathFinder):
    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname in MOVED:
            return importlib.machinery.ModuleSpec(fullname, _MovedLoader())
        return None


if not any(isinstance(f, _MovedFinder) for f in sys.meta_path):
    sys.meta_path.insert(0, _MovedFinder())  # before the path finder: old names only
