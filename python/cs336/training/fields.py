"""Typed fields of the config dataclasses: discovery, help texts, conversion of
command-line strings and TOML/JSON values, and building a dataclass from a nested dict
with errors that name the key (and suggest the closest one).

Generic over dataclasses; :mod:`cs336.training.config` says which classes and sections.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal


@dataclass(frozen=True)
class FieldSpec:
    """One settable field: its dotted name, type, default (MISSING if required) and help."""

    name: str
    type: Any
    default: Any
    help: str


def dataclass_fields(cls: type, skip: Sequence[str] = ()) -> dict[str, FieldSpec]:
    """``{name: FieldSpec}`` of the dataclass ``cls``, leaving out ``skip``; the help text
    is the field's ``metadata["help"]``."""
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = dataclasses.MISSING
        out[f.name] = FieldSpec(f.name, hints[f.name], default, f.metadata.get("help", ""))
    return out


def type_name(tp: Any) -> str:
    """Short name of a field type for help texts: ``int``, ``float|none``, ``a|b``..."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Literal:
        return "|".join(str(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return "|".join("none" if a is type(None) else type_name(a) for a in args)
    if origin is tuple:
        return ",".join(type_name(a) for a in args)
    return getattr(tp, "__name__", str(tp))


_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}


def convert(value: Any, tp: Any, name: str) -> Any:
    """``value`` (a string from the command line, or a TOML/JSON value) as type ``tp``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    bad = ValueError(f"{name}: expected {type_name(tp)}, got {value!r}")
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
            raise bad
        for arg in args:
            if arg is not type(None):
                try:
                    return convert(value, arg, name)
                except ValueError:
                    pass
        raise bad
    if origin is Literal:
        if value in args:
            return value
        raise ValueError(f"{name} must be one of {', '.join(map(str, args))}, got {value!r}")
    if origin is tuple:
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)) or len(items) != len(args):
            raise bad
        return tuple(convert(v, a, name) for v, a in zip(items, args, strict=True))
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
        raise bad
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value.replace("_", ""))
            except ValueError:
                pass
        if isinstance(value, float) and value.is_integer():  # e.g. 1e4 written as a float
            return int(value)
        raise bad
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise bad
    if tp is str:
        if isinstance(value, str):
            return value
        raise bad
    return value


def unknown_key(key: str, known: Sequence[str], where: str) -> ValueError:
    close = difflib.get_close_matches(key, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ValueError(f"unknown config key {key!r} in {where}{hint}")


def build(
    cls: type,
    d: Mapping[str, Any],
    prefix: str = "",
    *,
    sections: Mapping[str, type] | None = None,
    source: str = "config",
) -> Any:
    """``cls(**d)`` with every value converted to its field's type; ``sections`` maps the
    fields that are nested dataclasses (tables) to their classes, built recursively.

    Raises:
        ValueError: for an unknown key (with a suggestion), a missing required key or
            table, or a value of the wrong type; ``prefix`` and ``source`` name where.
    """
    if not isinstance(d, Mapping):
        raise ValueError(f"{prefix or 'config'} in {source} must be a table, got {d!r}")
    sections = dict(sections or {})
    specs = dataclass_fields(cls, skip=list(sections))
    known = [*specs, *sections]
    kwargs: dict[str, Any] = {}
    for key, value in d.items():
        dotted = f"{prefix}.{key}" if prefix else key
        if key in sections:
            kwargs[key] = build(sections[key], value, key, source=source)
        elif key in specs:
            kwargs[key] = convert(value, specs[key].type, dotted)
        else:
            raise unknown_key(dotted, [f"{prefix}.{k}" if prefix else k for k in known], source)
    all_fields = dataclass_fields(cls)
    required = [k for k, s in all_fields.items() if s.default is dataclasses.MISSING]
    missing = [f"{prefix}.{k}" if prefix else k for k in required if k not in kwargs]
    if missing:
        raise ValueError(f"missing config key(s) in {source}: {', '.join(missing)}")
    return cls(**kwargs)
