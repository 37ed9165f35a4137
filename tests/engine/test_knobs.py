"""Subset division, [CLS] screening and the memory budget, against their definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from codegraph_ad.config import EngineConfig
from codegraph_ad.engine.memory import estimate_memory
from codegraph_ad.errors import MemoryBudgetError
from codegraph_ad.features.extract import FeatureSet
from codegraph_ad.features.lnamd import lnamd
from codegraph_ad.methods.base import content_key, subset_partition
from codegraph_ad.methods.musc import MuSc


def _features(n: int, seed: int = 0) -> FeatureSet:
    g = torch.Generator().manual_seed(seed)
    return FeatureSet(torch.randn(n, 2, 16, 8, generator=g), torch.randn(n, 8, generator=g), (4, 4))


def _musc(**engine) -> MuSc:
    return MuSc(degrees=(1, 3), q=0.3, progress=False, **engine)


def _brute_scores(fs: FeatureSet, allowed: np.ndarray, q: float = 0.3) -> torch.Tensor:
    """Per map: distances to every other allowed image's patches, K smallest image minima."""
    n, n_layers, m, _ = fs.layers.shape
    total = torch.zeros(n, m, dtype=torch.float64)
    maps = 0
    for li in range(n_layers):
        for r in (1, 3):
            x = lnamd(fs.layers[:, li], fs.grid, r).double()
            for i in range(n):
                refs = [j for j in range(n) if j != i and allowed[i, j]]
                mins = torch.stack([torch.cdist(x[i], x[j]).min(dim=1).values for j in refs], dim=1)
                k = max(1, math.ceil(q * len(refs) - 1e-9))
                total[i] += mins.sort(dim=1).values[:, :k].mean(dim=1)
            maps += 1
    return (total / maps).float()


def test_subset_division_scores_each_subset_alone():
    fs = _features(9)
    got = _musc(subsets=3, seed=4).fit_predict(fs).patch_scores
    parts = subset_partition(9, EngineConfig(subsets=3, seed=4), content_key(fs, EngineConfig(subsets=3)))
    assert sorted(np.concatenate(parts).tolist()) == list(range(9)) and all(len(p) == 3 for p in parts)
    allowed = np.zeros((9, 9), dtype=bool)
    for p in parts:
        allowed[np.ix_(p, p)] = True
    assert torch.allclose(got, _brute_scores(fs, allowed), atol=1e-5)


def test_cls_screening_keeps_the_most_similar_images():
    fs = _features(8, seed=1)
    got = _musc(screening_percent=50.0).fit_predict(fs).patch_scores
    unit = torch.nn.functional.normalize(fs.cls, dim=1)
    sim = (unit @ unit.T).numpy()
    np.fill_diagonal(sim, -np.inf)
    keep = math.ceil(0.5 * 7)
    allowed = np.zeros((8, 8), dtype=bool)
    for i in range(8):
        allowed[i, np.argsort(-sim[i])[:keep]] = True
    assert torch.allclose(got, _brute_scores(fs, allowed), atol=1e-5)


def test_run_over_budget_is_refused_before_scoring_with_the_knobs_named():
    fs = _features(6)
    with pytest.raises(MemoryBudgetError) as exc:
        _musc(memory_budget_mb=1).fit_predict(fs)
    msg = str(exc.value)
    assert "--image-size" in msg and "--subsets" in msg and "--memory-mb" in msg


def test_memory_estimate_scales_as_expected():
    one = estimate_memory(100, 1024, 384, 4, 3, "musc")
    two = estimate_memory(200, 1024, 384, 4, 3, "musc")
    n, m = 100, 1024
    pair_mb = n * n * m * 6 / 1e6  # minima (fp32) + argmins (int16)
    pair_mb2 = 4 * pair_mb
    assert two.per_map_mb - one.per_map_mb > pair_mb2 - pair_mb  # the N^2 part grows 4x
    # s subsets of N/s images: the per-map arrays are those of one subset
    assert estimate_memory(200, 1024, 384, 4, 3, "musc", subsets=2).per_map_mb == pytest.approx(one.per_map_mb)
    assert estimate_memory(100, 1024, 384, 4, 3, "codegraph").total_mb > one.total_mb


def test_whole_set_subset_is_not_copied():
    feats = _features(6)
    assert feats.subset(range(6)) is feats  # one subset = the batch: no second copy of it
    part = feats.subset([4, 1])
    assert part.n_images == 2 and torch.equal(part.layers[0], feats.layers[4])
    assert part.layers.data_ptr() != feats.layers.data_ptr()


def test_on_ray_the_driver_estimate_leaves_the_minima_to_the_shards():
    """A batch whose minima exceed the budget here is accepted on Ray, where the query shards
    hold them; the driver still needs room for the features."""
    from codegraph_ad.methods.base import check_run_memory

    fs = _features(6)
    for method in ("musc", "codegraph"):
        local = estimate_memory(1000, 1024, 384, 4, 3, method)
        ray = estimate_memory(1000, 1024, 384, 4, 3, method, sharded=True)
        assert ray.stored_maps_mb == 0 and ray.per_map_mb < local.per_map_mb / 10  # one LNAMD stack, no minima
        assert ray.features_mb == local.features_mb
    # a budget between what the driver holds on Ray and what it holds here
    here = estimate_memory(6, 16, 8, 2, 2, "codegraph").total_mb
    there = estimate_memory(6, 16, 8, 2, 2, "codegraph", sharded=True).total_mb
    assert there < here
    budget = (here + there) / 2
    with pytest.raises(MemoryBudgetError):
        check_run_memory(fs, "codegraph", 2, EngineConfig(memory_budget_mb=budget))
    check_run_memory(fs, "codegraph", 2, EngineConfig(backend="ray", memory_budget_mb=budget))
    check_run_memory(fs, "codegraph", 2, EngineConfig(backend="ray", precision="bf16", memory_budget_mb=budget))
