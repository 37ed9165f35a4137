"""Pixel metrics and the 256 x 256 evaluation protocol against brute force."""

from __future__ import annotations

import numpy as np
import pytest
from metrics_brute import ap_definition, aupro_brute, auroc_pairs, bilinear, f1_loop
from sklearn.metrics import average_precision_score, roc_auc_score

from codegraph_ad.metrics import aupro, pixel_metrics, prepare_for_evaluation


@pytest.mark.parametrize("seed", range(5))
def test_matches_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    masks = rng.random((4, 7, 8)) < 0.15
    masks[1] = False  # an all-normal image
    masks[0, 0, 0] = True
    maps = rng.random(masks.shape) + 0.5 * masks
    if seed % 2:
        maps = np.round(maps, 1).astype(np.float32)
    got = pixel_metrics(maps, masks)
    assert got["auroc"] == pytest.approx(auroc_pairs(maps, masks), abs=1e-12)
    assert got["ap"] == pytest.approx(ap_definition(maps, masks), abs=1e-12)
    assert got["f1_max"] == pytest.approx(f1_loop(maps, masks)[0], abs=1e-12)
    assert got["aupro"] == pytest.approx(aupro_brute(maps, masks), abs=1e-12)
    assert got["aupro"] == aupro(maps, masks)


def test_agrees_with_sklearn_on_a_larger_stack() -> None:
    rng = np.random.default_rng(7)
    masks = np.zeros((12, 64, 64), dtype=bool)
    masks[:6, 20:40, 10:30] = True
    maps = (rng.random(masks.shape) + 0.4 * masks).astype(np.float32)
    got = pixel_metrics(maps, masks)
    assert got["auroc"] == pytest.approx(roc_auc_score(masks.ravel(), maps.ravel()), abs=1e-10)
    assert got["ap"] == pytest.approx(average_precision_score(masks.ravel(), maps.ravel()), abs=1e-10)


def test_perfect_inverted_and_degenerate() -> None:
    masks = np.zeros((3, 5, 5), dtype=bool)
    masks[0, 1:3, 1:3] = True
    masks[2, 4, 0] = True
    perfect = pixel_metrics(masks * 1.0, masks)
    assert perfect == {"auroc": 1.0, "ap": 1.0, "f1_max": 1.0, "aupro": 1.0}
    inverted = pixel_metrics(1.0 - masks, masks)
    assert inverted["auroc"] == 0.0 and inverted["aupro"] == 0.0
    assert pixel_metrics(np.random.default_rng(0).random(masks.shape), np.zeros_like(masks)) == {
        "auroc": None,
        "ap": None,
        "f1_max": None,
        "aupro": None,
    }
    all_anomalous = pixel_metrics(np.random.default_rng(0).random(masks.shape), np.ones_like(masks))
    assert all_anomalous["auroc"] is None and all_anomalous["aupro"] is None
    assert all_anomalous["ap"] == 1.0


def test_prepare_matches_bilinear_definition() -> None:
    rng = np.random.default_rng(2)
    maps = rng.random((3, 37, 29))
    masks = np.zeros((3, 37, 29), dtype=bool)
    masks[0, 5:20, 3:9] = True
    masks[2, 30:, 20:] = True
    out_maps, out_masks = prepare_for_evaluation(maps, masks, size=16)
    assert out_maps.shape == (3, 16, 16) and out_maps.dtype == np.float32
    assert out_masks.shape == (3, 16, 16) and out_masks.dtype == bool
    np.testing.assert_allclose(out_maps, bilinear(maps, (16, 16)), atol=1e-5)
    soft = bilinear(masks.astype(float), (16, 16))
    decided = np.abs(soft - 0.5) > 1e-5  # float32 vs float64 may disagree only at exactly 0.5
    np.testing.assert_array_equal(out_masks[decided], soft[decided] > 0.5)


def test_prepare_upsamples_and_keeps_identity() -> None:
    rng = np.random.default_rng(4)
    maps = rng.random((2, 8, 8)).astype(np.float32)
    masks = np.zeros((2, 8, 8), dtype=bool)
    masks[0, 2:6, 2:6] = True
    same_maps, same_masks = prepare_for_evaluation(maps, masks, size=8)
    np.testing.assert_array_equal(same_maps, maps)
    np.testing.assert_array_equal(same_masks, masks)
    up_maps, up_masks = prepare_for_evaluation(maps, masks, size=(32, 24))
    assert up_maps.shape == (2, 32, 24)
    np.testing.assert_allclose(up_maps, bilinear(maps, (32, 24)), atol=1e-5)
    assert up_masks[0].sum() == pytest.approx(masks[0].sum() * 12, rel=0.3)
    assert not up_masks[1].any()


def test_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match=r"\(N,H,W\)"):
        pixel_metrics(np.zeros((2, 4, 4)), np.zeros((2, 4, 5), dtype=bool))
