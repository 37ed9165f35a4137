"""Volume scoring: the 2D methods unchanged, void cubes masked."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from codegraph_ad.config import LNAMDConfig, MSMConfig, RunConfig
from codegraph_ad.features.extract import FeatureSet
from codegraph_ad.methods import make_method
from codegraph_ad.volumes.config import VolumeConfig
from codegraph_ad.volumes.scoring import patient_cubes, score_volume_features
from tests.conftest import unit_features


def _features(n=6, g=3, c=12) -> FeatureSet:
    layers = torch.stack([unit_features(n, g ** 3, c, seed=s) for s in range(2)], dim=1)
    return FeatureSet(layers, torch.randn(n, c, generator=torch.Generator().manual_seed(0)), (g, g * g))


def test_musc_matches_the_2d_method_on_solid_cubes():
    feats = _features()
    cfg = replace(VolumeConfig().run, method="musc", msm=MSMConfig(q=0.2))
    solid = np.ones((6, 27), bool)
    solid[:, :4] = False
    got = score_volume_features(feats, solid, cfg)
    ref = make_method(cfg, progress=False).score(feats)
    torch.testing.assert_close(got.patch_scores[:, 4:], ref.patch_scores[:, 4:])
    assert got.patch_scores[:, :4].eq(0).all()
    np.testing.assert_allclose(got.raw_image_scores, ref.patch_scores[:, 4:].max(dim=1).values.numpy(), rtol=1e-6)
    kept = score_volume_features(feats, solid, cfg, zero_void=False)
    torch.testing.assert_close(kept.patch_scores, ref.patch_scores)


def test_codegraph_runs_with_patch_mask():
    feats = _features()
    solid = np.ones((6, 27), bool)
    solid[:, 0] = False
    res = score_volume_features(feats, solid, VolumeConfig().run)
    assert res.excluded is not None and res.excluded.shape == (6, 27)
    assert not res.excluded[:, 0].any()
    assert res.diagnostics["solid_cubes"] == int(solid.sum())


def test_rejects_2d_lnamd_degrees():
    with pytest.raises(ValueError, match=r"degrees \(1,\) only"):
        score_volume_features(_features(), np.ones((6, 27), bool), RunConfig(lnamd=LNAMDConfig(degrees=(1, 3))))


def test_patient_score_counts_only_the_chosen_cubes():
    feats = _features()
    cfg = replace(VolumeConfig().run, method="musc", msm=MSMConfig(q=0.2))
    solid = np.ones((6, 27), bool)
    share = np.ones((6, 27), np.float32)
    share[:, :9] = 0.7  # a partial-volume layer of cubes
    share[:, 9] = np.float32(1.0) - np.float32(6e-8)  # a whole cube whose voxel mean reads 1 - eps
    counted = patient_cubes(share, solid, 1.0)
    assert not counted[:, :9].any() and counted[:, 9:].all()
    assert patient_cubes(share, solid, None) is solid
    got = score_volume_features(feats, solid, cfg, scored_cubes=counted)
    every = score_volume_features(feats, solid, cfg)
    torch.testing.assert_close(got.patch_scores, every.patch_scores)  # maps unchanged
    np.testing.assert_allclose(got.raw_image_scores, every.patch_scores[:, 9:].max(dim=1).values.numpy(), rtol=1e-6)
    assert (got.raw_image_scores <= every.raw_image_scores + 1e-9).all()
    if (every.patch_scores[:, :9].max(dim=1).values > every.patch_scores[:, 9:].max(dim=1).values).any():
        assert (got.raw_image_scores < every.raw_image_scores).any()


def test_patient_min_share_is_checked():
    with pytest.raises(ValueError, match="patient_min_share"):
        VolumeConfig(patient_min_share=1.5)
