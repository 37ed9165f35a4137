"""--window on volume tokens: matches restricted on the 3D lattice, scoring and end to end."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from codegraph_ad.config import EngineConfig, MSMConfig, RunConfig
from codegraph_ad.engine.msm import msm_scores
from codegraph_ad.engine.window3d import Lattice3D
from codegraph_ad.errors import ConfigError
from codegraph_ad.features.extract import FeatureSet
from codegraph_ad.features.lnamd import lnamd
from codegraph_ad.volumes.api import detect_volumes
from codegraph_ad.volumes.config import VolumeConfig
from codegraph_ad.volumes.scoring import score_volume_features
from tests.conftest import unit_features
from tests.engine.test_window3d import window_mask
from tests.volumes.helpers import FakeBackbone, brain_volume, save

MUSC_RUN = replace(VolumeConfig().run, method="musc", msm=MSMConfig(q=0.3))


def _windowed(run: RunConfig, radius: int | None) -> RunConfig:
    return replace(run, engine=replace(run.engine, window=radius))


def _features(lattice: Lattice3D, n: int = 6, c: int = 12) -> FeatureSet:
    m = lattice.n_tokens
    layers = torch.stack([unit_features(n, m, c, seed=s) for s in range(2)], dim=1)
    g = lattice.shape[0]
    grid = (1, m) if lattice.staggered else (g, g * g)
    return FeatureSet(layers, torch.randn(n, c, generator=torch.Generator().manual_seed(0)), grid, lattice)


def _brute_musc(feats: FeatureSet, radius: int, q: float) -> torch.Tensor:
    """MuSc's patch scores from minima over the window (float64 products, masked), per layer."""
    mask = window_mask(feats.lattice, radius)
    n = feats.n_images
    total = 0
    for li in range(feats.layers.shape[1]):
        x = lnamd(feats.layers[:, li], feats.grid, 1).double()  # r = 1: the per-volume LayerNorm only
        sim = torch.einsum("qmc,jpc->qjmp", x, x).masked_fill(~mask, -float("inf"))
        dist = torch.sqrt(torch.clamp(2 - 2 * sim.amax(dim=3), min=0)).float()
        dist[torch.arange(n), torch.arange(n)] = float("inf")
        total = total + msm_scores(dist, q)
    return total / feats.layers.shape[1]


@pytest.mark.parametrize("lattice", [Lattice3D((4, 4, 4)), Lattice3D((4, 4, 4), True)], ids=str)
def test_musc_scores_with_a_window_are_the_windowed_minima(lattice):
    feats = _features(lattice)
    solid = np.ones((6, lattice.n_tokens), bool)
    got = score_volume_features(feats, solid, _windowed(MUSC_RUN, 1), zero_void=False)
    assert torch.allclose(got.patch_scores, _brute_musc(feats, 1, 0.3), atol=1e-5)
    unrestricted = score_volume_features(feats, solid, MUSC_RUN, zero_void=False)
    assert not torch.allclose(got.patch_scores, unrestricted.patch_scores, atol=1e-3)  # the window matters


@pytest.mark.parametrize("method", ["musc", "codegraph"])
@pytest.mark.parametrize("lattice", [Lattice3D((4, 4, 4)), Lattice3D((4, 4, 4), True)], ids=str)
def test_a_window_covering_the_lattice_scores_like_no_window(method, lattice):
    feats = _features(lattice, n=8)
    solid = np.ones((8, lattice.n_tokens), bool)
    solid[:, :5] = False
    run = replace(VolumeConfig().run, method=method)
    want = score_volume_features(feats, solid, run)
    for radius in (3, 7):
        got = score_volume_features(feats, solid, _windowed(run, radius))
        torch.testing.assert_close(got.patch_scores, want.patch_scores, atol=1e-5, rtol=0)
        np.testing.assert_allclose(got.image_scores, want.image_scores, atol=1e-5, rtol=0)
    small = score_volume_features(feats, solid, _windowed(run, 1))
    assert np.isfinite(small.image_scores).all() and torch.isfinite(small.patch_scores).all()


def test_every_reference_plan_takes_the_3d_window():
    feats = _features(Lattice3D((4, 4, 4)), n=10)
    solid = np.ones((10, 64), bool)
    for engine in (EngineConfig(window=1, references=4), EngineConfig(window=1, screening_percent=50.0)):
        res = score_volume_features(feats, solid, replace(MUSC_RUN, engine=engine))
        assert torch.isfinite(res.patch_scores).all()
        assert res.diagnostics["references"][0]["plan"] != "exact"


def test_features_without_their_lattice_refuse_a_window():
    feats = _features(Lattice3D((3, 3, 3)))
    flat = FeatureSet(feats.layers, feats.cls, feats.grid)
    with pytest.raises(ConfigError, match="3D grid"):
        score_volume_features(flat, np.ones((6, 27), bool), _windowed(MUSC_RUN, 1))


def test_subsets_keep_the_lattice():
    feats = _features(Lattice3D((3, 3, 3), True))
    assert feats.subset([0, 2]).lattice == feats.lattice
    assert feats.window_grid == feats.lattice
    assert FeatureSet(feats.layers, None, (3, 9)).window_grid == (3, 9)


D = 56  # a 4^3 token grid with the 14-pixel stand-in backbone: room for a window of 1
CFG = VolumeConfig(size=D, void_fraction=0.3, slice_stride=2,
                   run=replace(VolumeConfig().run, method="musc", msm=MSMConfig(q=0.3)))


@pytest.fixture(scope="module")
def volumes(tmp_path_factory):
    root = tmp_path_factory.mktemp("win3d") / "volumes"
    for i in range(5):
        vol, _ = brain_volume(seed=i, lesion=(0.35, 0.3, -0.3) if i == 4 else None, lesion_radius=0.45)
        save(root / f"s{i}.nii.gz", vol, np.diag([1.1, 1.0, 1.3, 1.0]))
    return root


@pytest.mark.parametrize("staggered", [False, True])
def test_volume_run_with_window(volumes, staggered):
    cfg = replace(CFG, staggered=staggered)
    plain = detect_volumes(volumes, None, cfg, progress=False, backbone=FakeBackbone(D))
    near = detect_volumes(volumes, None, replace(cfg, run=_windowed(cfg.run, 1)), progress=False,
                          backbone=FakeBackbone(D))
    assert np.isfinite(near.scores.image_scores).all() and np.isfinite(near.maps).all()
    assert near.maps.shape == plain.maps.shape
    assert not np.allclose(near.scores.patch_scores.numpy(), plain.scores.patch_scores.numpy())
    whole = detect_volumes(volumes, None, replace(cfg, run=_windowed(cfg.run, 3)), progress=False,
                           backbone=FakeBackbone(D))
    np.testing.assert_allclose(whole.scores.patch_scores.numpy(), plain.scores.patch_scores.numpy(), atol=1e-5, rtol=0)
    np.testing.assert_allclose(whole.scores.image_scores, plain.scores.image_scores, atol=1e-5, rtol=0)
