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
from codegraph_ad.volumes.scoring import patient_cubes, patient_map, position_median, score_volume_features
from tests.conftest import unit_features


MUSC_RUN = replace(VolumeConfig().run, method="musc", msm=MSMConfig(q=0.2))


def _features(n=6, g=3, c=12) -> FeatureSet:
    layers = torch.stack([unit_features(n, g ** 3, c, seed=s) for s in range(2)], dim=1)
    return FeatureSet(layers, torch.randn(n, c, generator=torch.Generator().manual_seed(0)), (g, g * g))


def test_musc_matches_the_2d_method_on_solid_cubes():
    feats = _features()
    cfg = MUSC_RUN
    solid = np.ones((6, 27), bool)
    solid[:, :4] = False
    got = score_volume_features(feats, solid, cfg)
    ref = make_method(cfg, progress=False).fit_predict(feats)
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
    cfg = MUSC_RUN
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
    with pytest.raises(ValueError, match="projection_dim"):
        VolumeConfig(projection_dim=-1)


def test_position_baseline_ranks_a_cube_against_its_own_position():
    """A 'hard place' where every volume scores high must not beat a smaller rise at an easy one."""
    n, m = 5, 4
    scores = np.full((n, m), 0.2, np.float32)
    scores[:, 0] = [0.60, 0.62, 0.58, 0.61, 0.70]  # every brain scores high here; volume 4 a little more
    scores[1, 2] = 0.45  # volume 1: a lesion at a place that is usually easy
    solid = np.ones((n, m), bool)
    solid[0, 3] = False  # a void cube: its value must neither enter the median nor count
    scores[0, 3] = 5.0
    med = position_median(torch.from_numpy(scores), solid)
    np.testing.assert_allclose(med, [0.61, 0.2, 0.2, 0.2], rtol=1e-6)
    plain = patient_map(torch.from_numpy(scores), solid, solid).max(dim=1).values.numpy()
    excess = patient_map(torch.from_numpy(scores), solid, solid, position_baseline=True).max(dim=1).values.numpy()
    assert plain.argmax() == 4 and excess.argmax() == 1
    np.testing.assert_allclose(excess, [0.0, 0.25, 0.0, 0.0, 0.09], atol=1e-6)
    none_solid = np.zeros((n, m), bool)
    np.testing.assert_allclose(position_median(torch.from_numpy(scores), none_solid), 0.0)


def test_position_baseline_changes_only_the_patient_scores():
    feats = _features()
    cfg = MUSC_RUN
    solid = np.ones((6, 27), bool)
    solid[:, :3] = False
    every = score_volume_features(feats, solid, cfg)
    based = score_volume_features(feats, solid, cfg, position_baseline=True)
    torch.testing.assert_close(based.patch_scores, every.patch_scores)
    s = every.patch_scores.numpy()
    want = (s[:, 3:] - np.median(s[:, 3:], axis=0)).max(axis=1)
    np.testing.assert_allclose(based.raw_image_scores, want, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(based.image_scores, want, rtol=1e-5, atol=1e-7)


def test_patient_baseline_is_checked():
    with pytest.raises(ValueError, match="patient_baseline"):
        VolumeConfig(patient_baseline="mean")
