"""Shared fixtures: the real evaluation data lives in ../shared/data and may be absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("CODEGRAPH_AD_DATA", REPO.parent / "shared" / "data"))
BOTTLE = SHARED_DATA / "mvtec_ad_bottle" / "bottle"
MRI = SHARED_DATA / "mri"

torch.manual_seed(0)


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory: pytest.TempPathFactory):
    """Keep the backbone-graph and feature caches of every test out of the user's ~/.cache."""
    path = tmp_path_factory.mktemp("codegraph-ad-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CODEGRAPH_AD_CACHE", str(path))
        yield path


@pytest.fixture
def bottle_dir() -> Path:
    if not (BOTTLE / "test").is_dir():
        pytest.skip(f"real data not found at {BOTTLE}")
    return BOTTLE


@pytest.fixture
def mri_dir() -> Path:
    if not MRI.is_dir():
        pytest.skip(f"real data not found at {MRI}")
    return MRI


def unit_features(n: int, m: int, c: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(n, m, c, generator=g), dim=-1)
