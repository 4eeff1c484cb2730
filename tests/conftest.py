"""Shared fixtures: the ../shared/data corpora (skipped with a reason when absent) and the
hypothesis profile, chosen by HYPOTHESIS_PROFILE (ci: few examples, dev: default,
thorough: many)."""

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


def shared_path(relative: str, cache_dir: Path) -> Path:
    """Plain-text path of ``relative`` under ../shared/data, decompressing ``.gz`` files
    into ``cache_dir`` once. Skips the calling test when the data is absent."""
    plain = SHARED_DATA / relative
    if plain.exists():
        return plain
    gz = plain.with_name(plain.name + ".gz")
    if not gz.exists():
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
