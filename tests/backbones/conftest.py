"""Backbone fixtures: one ONNX feature-graph cache per test session, in a temporary folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Keep the rewritten graph out of the user's ~/.cache; built once for all tests."""
    path = tmp_path_factory.mktemp("codegraph-ad-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CODEGRAPH_AD_CACHE", str(path))
        yield path
