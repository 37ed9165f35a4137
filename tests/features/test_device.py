"""Features on a device: LNAMD stays where its input is, the extractor carries the run's
``device`` to the backbone and into the cache key (only off the default CPU fp32 path)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from codegraph_ad.backbones import from_config
from codegraph_ad.config import EngineConfig, FeatureConfig, RunConfig
from codegraph_ad.errors import ConfigError
from codegraph_ad.features.cache import cache_key_fields
from codegraph_ad.features.extractor import FeatureExtractor
from codegraph_ad.features.lnamd import lnamd
from tests.volumes.helpers import FakeBackbone


def _tokens(n: int = 3, grid: tuple[int, int] = (4, 5), c: int = 6) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, grid[0] * grid[1], c, generator=g) * 3 + 1


@pytest.mark.parametrize("r", [1, 3])
def test_lnamd_with_device_cpu_is_bit_identical(r: int) -> None:
    x = _tokens()
    assert torch.equal(lnamd(x, (4, 5), r, device="cpu"), lnamd(x, (4, 5), r))


def test_lnamd_runs_on_the_device_of_its_input() -> None:
    """The meta device stands in for a GPU: a .cpu() or numpy round trip would fail on it."""
    meta = torch.empty(2, 20, 6, device="meta")
    assert lnamd(meta, (4, 5), 3).device.type == "meta"
    moved = lnamd(_tokens(), (4, 5), 3, device="meta")
    assert moved.device.type == "meta" and moved.shape == (3, 20, 6)


def test_extractor_takes_the_run_device() -> None:
    assert FeatureExtractor().device == "cpu" and FeatureExtractor().backbone_precision == "fp32"
    run = RunConfig(engine=EngineConfig(device="auto"))
    ex = FeatureExtractor.from_config(run)
    assert ex.device == "auto" and ex.config == run.features
    assert FeatureExtractor.from_config(FeatureConfig()).device == "cpu"


def test_runtime_is_none_on_the_default_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert FeatureExtractor().runtime() is None
    assert FeatureExtractor(device="auto").runtime() is None  # resolves to the CPU here
    assert FeatureExtractor(backbone_precision="bf16").runtime() == {"device": "cpu", "precision": "bf16"}
    assert FeatureExtractor(backbone=FakeBackbone(56), device="cuda").runtime() is None  # an object: as given
    with pytest.raises(ConfigError, match="--device"):
        FeatureExtractor(device="cuda").runtime()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert FeatureExtractor(device="cuda").runtime() == {"device": "cuda", "precision": "fp32"}


def test_cache_key_changes_only_off_the_default_path() -> None:
    cfg = FeatureConfig(image_size=56)
    base = cache_key_fields(cfg)
    assert "runtime" not in base and cache_key_fields(cfg, None, None) == base
    gpu = cache_key_fields(cfg, runtime={"device": "cuda", "precision": "fp32"})
    assert gpu != base and gpu["runtime"] == {"device": "cuda", "precision": "fp32"}
    assert {k: v for k, v in gpu.items() if k != "runtime"} == base


def test_backbone_is_built_on_the_extractors_device(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    calls = []

    def fake(features, threads, **kwargs):
        calls.append(kwargs)
        return FakeBackbone(features.image_size)

    monkeypatch.setattr(from_config, "backbone_from_config", fake)
    FeatureExtractor(image_size=56).backbone_model()
    FeatureExtractor(image_size=56, device="auto", backbone_precision="bf16").backbone_model()
    assert calls == [{}, {"device": "auto", "precision": "bf16"}]  # the default call is as it always was


def test_cached_features_are_keyed_by_runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(from_config, "backbone_from_config", lambda f, t, **k: FakeBackbone(f.image_size))
    rng = np.random.default_rng(0)
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"im{i}.png")
        Image.fromarray(rng.integers(0, 255, (56, 56, 3), dtype=np.uint8)).save(paths[-1])
    cache = tmp_path / "cache"
    a = FeatureExtractor(image_size=56, cache=True, cache_dir=cache).transform(paths)
    b = FeatureExtractor(image_size=56, cache=True, cache_dir=cache, backbone_precision="bf16").transform(paths)
    assert torch.equal(a.layers, b.layers)  # the fake backbone ignores precision ...
    keys = [json.loads(p.read_text()) for p in sorted(cache.glob("*/key.json"))]
    assert len(keys) == 2  # ... but the two runs never share entries
    assert sorted(str(k.get("runtime")) for k in keys) == ["None", str({"device": "cpu", "precision": "bf16"})]


def test_lnamd_in_image_chunks_equals_one_pass(monkeypatch) -> None:
    import importlib

    module = importlib.import_module("codegraph_ad.features.lnamd")
    x = torch.randn(7, 12, 5, generator=torch.Generator().manual_seed(0))
    whole = module.lnamd(x, (3, 4), 3)
    monkeypatch.setattr(module, "_CHUNK_BYTES", 2 * 12 * 5 * 4)  # two images per chunk
    assert torch.equal(module.lnamd(x, (3, 4), 3), whole)
