"""Backbone fixtures: the ONNX feature-graph cache lives in the session's private cache."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def onnx_cache(private_cache: Path) -> Path:
    """The rewritten graph is built once per session, out of the user's ~/.cache."""
    return private_cache
