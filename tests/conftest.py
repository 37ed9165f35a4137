"""Shared fixtures: the real evaluation data lives in ../shared/data and may be absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from codegraph_ad.engine.mutual import _LISTED_PAIR_COST_SMALL_M as LISTED_PAIR_COST  # before any patch

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


@pytest.fixture(scope="session", autouse=True)
def listed_plans_stay_listed():
    """Test batches are small, so a screened or fixed-K plan would nearly always be computed
    as the exact plan's blocks cut to its slots (engine/mutual.py: dense_is_cheaper); the tests
    written for the listed path keep exercising it. tests/engine/test_dense_switch.py turns the
    switch back on (fixture ``dense_switch``) and checks it."""
    from codegraph_ad.engine import mutual

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(mutual, "_LISTED_PAIR_COST_SMALL_M", 0.0)
        yield


@pytest.fixture
def dense_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    """The production rule of dense_is_cheaper, for the tests that check it."""
    from codegraph_ad.engine import mutual

    monkeypatch.setattr(mutual, "_LISTED_PAIR_COST_SMALL_M", LISTED_PAIR_COST)


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
