"""Truncated-GMM thresholds against brute-force twins and on maps with known anomalies."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from codegraph_ad.distill.config import PseudoMaskConfig
from codegraph_ad.distill.pseudomask import fit_threshold, pseudo_masks


def test_single_gaussian_matches_truncated_moments() -> None:
    """One component: the GMM's MLE is the mean / population std of the kept scores."""
    rng = np.random.default_rng(0)
    scores = rng.normal(2.0, 0.5, 20_000)
    fit = fit_threshold(scores, PseudoMaskConfig(q=0.95, beta=0.01, max_components=1))
    kept = scores[scores <= np.quantile(scores, 0.95)]
    expected = kept.mean() + norm.ppf(0.99) * kept.std()
    assert fit.n_components == 1
    assert fit.threshold == pytest.approx(expected, rel=1e-4)
    assert fit.n_fit == kept.size


def test_bic_keeps_one_component_for_gaussian_scores() -> None:
    scores = np.random.default_rng(5).normal(2.0, 0.5, 20_000)
    fit = fit_threshold(scores, PseudoMaskConfig(q=1.0))
    assert fit.n_components == 1 and fit.bics[0] < fit.bics[1]
    assert fit.threshold == pytest.approx(2.0 + norm.ppf(0.99) * 0.5, rel=0.02)


def test_two_components_and_the_most_anomalous_cut() -> None:
    rng = np.random.default_rng(1)
    scores = np.concatenate([rng.normal(0.0, 0.1, 10_000), rng.normal(3.0, 0.2, 10_000)])
    fit = fit_threshold(scores, PseudoMaskConfig(q=1.0, beta=0.05))
    assert fit.n_components == 2
    assert fit.threshold == pytest.approx(max(fit.cuts))
    hi = int(np.argmax(fit.means))
    assert fit.means[hi] == pytest.approx(3.0, abs=0.02)
    assert fit.cuts[hi] == pytest.approx(fit.means[hi] + norm.ppf(0.95) * fit.stds[hi], rel=1e-9)


def test_blob_is_recovered_and_noise_stays_empty_in_batch_scope() -> None:
    rng = np.random.default_rng(2)
    blob = np.zeros((64, 64), dtype=bool)
    blob[20:30, 40:52] = True
    anomalous = rng.normal(0.3, 0.02, (64, 64)) + 0.4 * blob
    normals = [rng.normal(0.3, 0.02, (64, 64)) for _ in range(5)]
    masks, fits = pseudo_masks([anomalous, *normals], PseudoMaskConfig(scope="batch"))
    assert all(f is fits[0] for f in fits)
    assert masks[0][blob].all()
    # beta = 0.01 on a fit truncated at q = 0.95 flags about 3 % of i.i.d. noise: truncation
    # narrows the fitted components (and the BIC splits the skewed remainder in two)
    assert np.mean([m.mean() for m in masks[1:]]) < 0.04
    strict, _ = pseudo_masks([anomalous, *normals], PseudoMaskConfig(scope="batch", beta=1e-4))
    assert (strict[0] & blob).sum() / (strict[0] | blob).sum() > 0.85
    assert np.mean([m.mean() for m in strict[1:]]) < 0.005


def _iou(mask: np.ndarray, truth: np.ndarray) -> float:
    return float((mask & truth).sum() / (mask | truth).sum())


@pytest.mark.parametrize("seed", [0, 3])
def test_image_scope_recovers_each_maps_blob(seed: int) -> None:
    """Two maps on different score scales, each with a known bright blob (under 5% of the
    pixels, so the q = 0.95 truncation keeps it out of the fit): one fit per map recovers
    both blobs (IoU > 0.9); one pooled fit sits above the dimmer map and misses its blob."""
    rng = np.random.default_rng(seed)
    blob_a = np.zeros((48, 48), dtype=bool)
    blob_a[10:18, 12:20] = True
    blob_b = np.zeros((48, 48), dtype=bool)
    blob_b[30:37, 30:40] = True
    dim = rng.normal(0.3, 0.02, (48, 48)) + 0.3 * blob_a
    bright = rng.normal(1.0, 0.05, (48, 48)) + 0.8 * blob_b
    masks, fits = pseudo_masks([dim, bright], PseudoMaskConfig(scope="image", beta=1e-4))
    assert _iou(masks[0], blob_a) > 0.9 and _iou(masks[1], blob_b) > 0.9
    assert fits[0].threshold == fit_threshold(dim, PseudoMaskConfig(beta=1e-4)).threshold
    pooled, _ = pseudo_masks([dim, bright], PseudoMaskConfig(scope="batch", beta=1e-4))
    assert not pooled[0].any()


def test_constant_map_gives_an_empty_mask() -> None:
    masks, fits = pseudo_masks([np.full((16, 16), 0.7)])
    assert not masks[0].any()
    assert fits[0].threshold == pytest.approx(0.7)


@pytest.mark.parametrize("seed", [7, 8])
def test_subsample_fit_stays_close_to_the_full_fit(seed: int) -> None:
    """A 5,000-score subsample of 200,000 is truncated to exactly 95% of itself and gives a
    threshold within 3% of the fit on every score; its seed picks the subsample."""
    scores = np.random.default_rng(4).normal(0, 1, 200_000)
    full = fit_threshold(scores, PseudoMaskConfig(max_fit_samples=200_000))
    sub = fit_threshold(scores, PseudoMaskConfig(max_fit_samples=5_000, seed=seed))
    assert full.n_fit == 190_000 and sub.n_fit == 4_750
    assert sub.threshold == pytest.approx(full.threshold, rel=0.03)
    other = fit_threshold(scores, PseudoMaskConfig(max_fit_samples=5_000, seed=seed + 100))
    assert other.threshold != sub.threshold


@pytest.mark.parametrize(
    "kwargs, word",
    [({"q": 0.0}, "q"), ({"q": 1.5}, "q"), ({"beta": 0.0}, "beta"), ({"beta": 1.0}, "beta"),
     ({"scope": "pixel"}, "scope"), ({"max_components": 0}, "max_components")],
)
def test_bad_config_names_the_value(kwargs: dict, word: str) -> None:
    with pytest.raises(ValueError, match=word):
        fit_threshold(np.zeros(10), PseudoMaskConfig(**kwargs))


def test_non_finite_and_empty_maps_are_refused() -> None:
    with pytest.raises(ValueError, match="NaN"):
        fit_threshold(np.array([0.0, np.nan, 1.0]))
    with pytest.raises(ValueError, match="empty"):
        fit_threshold(np.array([]))
    with pytest.raises(ValueError, match="no anomaly maps"):
        pseudo_masks([])


@pytest.mark.parametrize("scale, shift", [(1.0, 5.0), (3.0, -1.0), (0.01, 0.2)])
def test_threshold_follows_affine_changes_of_the_scores(scale: float, shift: float) -> None:
    """Pseudo-masks must not depend on the units of the anomaly score."""
    rng = np.random.default_rng(6)
    scores = np.concatenate([rng.normal(0.0, 1.0, 4000), rng.normal(4.0, 0.5, 300)])
    base = fit_threshold(scores)
    moved = fit_threshold(scale * scores + shift)
    assert moved.n_components == base.n_components
    assert moved.threshold == pytest.approx(scale * base.threshold + shift, rel=1e-3, abs=1e-3 * scale)
