"""Shared fixtures: the ../shared/data corpora and the hypothesis profile, chosen by
HYPOTHESIS_PROFILE (ci: few examples, dev: default, thorough: many).

A fresh clone has no ../shared. What the core suite needs ships in tests/fixtures:
GPT-2's vocab.json and merges.txt (byte-identical to OpenAI's encoder.json / vocab.bpe,
MIT-licensed, as the course ships them with its tests; always used), and
multilingual.txt, a small stress text written for these tests (every script, emoji,
combining marks, odd whitespace and control characters), used in place of the shared
multilingual mix when that is absent. Tests over the other corpora run on those present
and skip once, with a reason, when none is."""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", max_examples=100, deadline=None)
settings.register_profile("thorough", max_examples=2000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("CS336_SHARED_DATA", ROOT.parent / "shared" / "data"))
FIXTURES = ROOT / "tests" / "fixtures"
# ../shared/data paths with a copy in tests/fixtures (always used)...
COPIES = {name: FIXTURES / name for name in ("gpt2/vocab.json", "gpt2/merges.txt")}
# ... and with a small stand-in there (used when ../shared is absent).
STAND_INS = {"multilingual/multilingual_mix.txt": FIXTURES / "multilingual.txt"}


def _present(relative: str) -> bool:
    plain = SHARED_DATA / relative
    return (
        relative in COPIES
        or relative in STAND_INS
        or plain.exists()
        or plain.with_name(plain.name + ".gz").exists()
    )


def corpora(relatives: list[str]) -> list:
    """``pytest.param`` s of the corpora in ``relatives`` that are present, for
    ``parametrize``; a single skipped one when none is (a fresh clone has no ../shared)."""
    present = [r for r in relatives if _present(r)]
    if present:
        return present
    reason = f"shared data not available under {SHARED_DATA} (a fresh clone has no ../shared)"
    return [pytest.param(None, marks=pytest.mark.skip(reason=reason), id="no-shared-data")]


def shared_path(relative: str, cache_dir: Path) -> Path:
    """Plain-text path of ``relative`` under ../shared/data (or its copy or stand-in in
    tests/fixtures), decompressing ``.gz`` files into ``cache_dir`` once. Skips the
    calling test when the data is absent."""
    if relative in COPIES:
        return COPIES[relative]
    plain = SHARED_DATA / relative
    if plain.exists():
        return plain
    gz = plain.with_name(plain.name + ".gz")
    if not gz.exists():
        if relative in STAND_INS:
            return STAND_INS[relative]
        pytest.skip(f"shared data not available: {plain} (a fresh clone has no ../shared)")
    out = cache_dir / relative
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        with gzip.open(gz, "rb") as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst)
        tmp.replace(out)
    return out


@pytest.fixture(scope="session")
def shared_data(tmp_path_factory):
    """``shared_data("tinystories/tinystories.txt")`` -> plain path, or skip."""
    cache = tmp_path_factory.mktemp("shared-data")
    return lambda relative: shared_path(relative, cache)
