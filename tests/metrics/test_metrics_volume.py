"""3D metrics: Dice rule, token-grid threshold, trilinear upsampling, voxel AUROC."""

from __future__ import annotations

import numpy as np
import pytest
from metrics_brute import auroc_pairs, dice_brute, f1_loop, max_pool_adaptive, trilinear

import codegraph_ad.metrics.volume as volume_module
from codegraph_ad.metrics import best_f1_threshold, dice, volume_metrics, voxel_auroc


def test_dice_rules() -> None:
    empty = np.zeros((3, 3, 3), dtype=bool)
    assert dice(empty, empty) == 1.0  # lesion-free volume, nothing predicted
    some = empty.copy()
    some[0, 0, :2] = True
    assert dice(some, empty) == 0.0
    assert dice(empty, some) == 0.0
    assert dice(some, some) == 1.0
    half = empty.copy()
    half[0, 0, 0] = True
    assert dice(half, some) == pytest.approx(2 * 1 / 3)
    rng = np.random.default_rng(0)
    a, b = rng.random((2, 5, 5, 5)) < 0.3
    assert dice(a, b) == pytest.approx(dice_brute(a, b))
    with pytest.raises(ValueError, match="shape"):
        dice(a, b[:4])


@pytest.mark.parametrize("seed", range(5))
def test_best_f1_threshold_matches_loop(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.random(80) < 0.2
    labels[0] = True
    scores = np.round(rng.random(80) + 0.4 * labels, 2)
    t, f1 = best_f1_threshold(scores, labels)
    want_f1, want_t = f1_loop(scores, labels)
    assert f1 == pytest.approx(want_f1, abs=1e-12)
    assert t == want_t


def test_best_f1_threshold_without_positives_predicts_nothing() -> None:
    scores = np.array([0.2, 0.9, 0.5])
    t, f1 = best_f1_threshold(scores, np.zeros(3, dtype=bool))
    assert f1 is None
    assert np.isfinite(t) and not np.any(scores >= t)


def _volume_brute(token_maps: list[np.ndarray], gts: list[np.ndarray]) -> tuple[float, list[float]]:
    """Max-pool by explicit bins, F1 by loop, upsample by separable weights, Dice by definition."""
    pooled = [max_pool_adaptive(g, tm.shape) for tm, g in zip(token_maps, gts)]
    scores = np.concatenate([tm.ravel() for tm in token_maps])
    labels = np.concatenate([p.ravel() for p in pooled])
    if labels.any():
        _, t = f1_loop(scores, labels)
    else:
        t = np.inf
    return t, [dice_brute(trilinear(tm, g.shape) >= t, g) for tm, g in zip(token_maps, gts)]


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize(("d", "D"), [(4, 8), (3, 7)])
def test_volume_metrics_matches_brute_force(seed: int, d: int, D: int) -> None:
    rng = np.random.default_rng(seed)
    gts, token_maps = [], []
    for v in range(3):
        gt = np.zeros((D, D, D), dtype=bool)
        if v != 1:  # volume 1 is lesion-free
            lo = rng.integers(0, D - 3, size=3)
            gt[lo[0] : lo[0] + 3, lo[1] : lo[1] + 2, lo[2] : lo[2] + 3] = True
        gts.append(gt)
        token_maps.append(rng.random((d, d, d)) + 0.8 * max_pool_adaptive(gt, (d, d, d)))
    got = volume_metrics(token_maps, gts)
    want_t, want_dice = _volume_brute(token_maps, gts)
    assert got["threshold"] == want_t
    np.testing.assert_allclose(got["dice_per_volume"], want_dice, atol=1e-12)
    assert got["dice_mean"] == pytest.approx(np.mean(want_dice))
    assert 0.0 <= got["token_f1"] <= 1.0


def test_lesion_free_volume_with_no_prediction_scores_one() -> None:
    d, D = 2, 6
    gt_lesion = np.zeros((D, D, D), dtype=bool)
    gt_lesion[:3, :3, :3] = True  # exactly token (0,0,0)
    tm_lesion = np.zeros((d, d, d))
    tm_lesion[0, 0, 0] = 1.0
    got = volume_metrics([tm_lesion, np.zeros((d, d, d))], [gt_lesion, np.zeros((D, D, D), dtype=bool)])
    assert got["threshold"] == 1.0 and got["token_f1"] == 1.0
    assert got["dice_per_volume"][1] == 1.0
    # The upsampled token reaches 1.0 only where no neighbour dilutes it: the clamped corner voxels.
    assert got["dice_per_volume"][0] == pytest.approx(dice_brute(trilinear(tm_lesion, (D, D, D)) >= 1.0, gt_lesion))
    all_free = volume_metrics([np.random.default_rng(1).random((d, d, d))], [np.zeros((D, D, D), dtype=bool)])
    assert all_free["dice_per_volume"] == [1.0] and all_free["token_f1"] is None


@pytest.mark.parametrize("seed", range(4))
def test_voxel_auroc_matches_pairs(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(volume_module, "_AUROC_CHUNK", 37)  # exercise the chunk boundaries
    rng = np.random.default_rng(seed)
    gts = [rng.random((5, 6, 4)) < 0.1 for _ in range(3)]
    gts[1][:] = False
    maps = [np.round(rng.random(g.shape) + 0.3 * g, 1) for g in gts]
    got = voxel_auroc(maps, gts)
    want = auroc_pairs(np.concatenate([m.ravel() for m in maps]), np.concatenate([g.ravel() for g in gts]))
    assert got == pytest.approx(want, abs=1e-12)


def test_voxel_auroc_degenerate_and_extremes() -> None:
    g = np.zeros((3, 3, 3), dtype=bool)
    g[1, 1, 1] = True
    assert voxel_auroc([g * 1.0], [g]) == 1.0
    assert voxel_auroc([1.0 - g], [g]) == 0.0
    assert voxel_auroc([np.full(g.shape, 2.0)], [g]) == 0.5
    assert voxel_auroc([np.ones(g.shape)], [np.zeros_like(g)]) is None
    with pytest.raises(ValueError, match="shape"):
        voxel_auroc([np.ones((3, 3, 2))], [g])
