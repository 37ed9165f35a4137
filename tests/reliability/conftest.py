"""Reliability fixtures: a private cache root, one small real backbone, a call counter."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from codegraph_ad.api import load_backbone
from codegraph_ad.config import FeatureConfig, RunConfig

IMAGE_SIZE = 56  # 4x4 patches: every pipeline stage runs, in milliseconds per image


def small_config(method: str = "musc") -> RunConfig:
    return RunConfig(method=method, features=FeatureConfig(image_size=IMAGE_SIZE, batch_size=4))


@pytest.fixture(scope="session")
def backbone(private_cache: Path) -> Any:
    return load_backbone(small_config())


class CountingBackbone:
    """Wraps a backbone and counts ``extract`` calls and images; can fail on a chosen call."""

    def __init__(self, inner: Any, fail_on_call: int | None = None) -> None:
        self.inner = inner
        self.calls = 0
        self.images = 0
        self.fail_on_call = fail_on_call

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def extract(self, images):  # noqa: ANN001, ANN201 (Backbone protocol)
        self.calls += 1
        if self.fail_on_call is not None and self.calls == self.fail_on_call:
            raise KeyboardInterrupt("simulated interruption during feature extraction")
        self.images += int(images.shape[0])
        return self.inner.extract(images)
