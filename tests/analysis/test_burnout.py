"""Neighbour burnout shows at the planted rank; consistent/inconsistent split as SPEC 12."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from codegraph_ad.analysis.burnout import burnout_excess, burnout_rank, split_anomalous_patches
from codegraph_ad.analysis.scaling import fit_power_law, growth_curve, sorted_similarity_vectors
from codegraph_ad.engine.mutual import pair_minima


def _planted_batch(g: int, n: int = 24, m: int = 36, c: int = 8, seed: int = 0):
    """Normal patches: a low-dimensional cloud shared by all images. Patch 0 of images
    0..g is one odd vector plus tiny jitter: each copy has g near-duplicates."""
    rng = np.random.default_rng(seed)
    feats = np.zeros((n, m, c))
    feats[..., :4] = rng.standard_normal((n, m, 4))
    feats[..., 4] = 6.0
    odd = np.zeros(c)
    odd[5] = 6.0
    feats[: g + 1, 0] = odd + 1e-3 * rng.standard_normal((g + 1, c))
    unit = torch.nn.functional.normalize(torch.from_numpy(feats).float(), dim=-1)
    planted = np.zeros((n, m), dtype=bool)
    planted[: g + 1, 0] = True
    return pair_minima(unit).dist.numpy(), planted


@pytest.mark.parametrize("g", [3, 7])
def test_planted_burnout_at_rank_g(g):
    dist, planted = _planted_batch(g)
    ranks, normal_curve = growth_curve(sorted_similarity_vectors(dist, ~planted))
    fit = fit_power_law(ranks, normal_curve)
    assert fit is not None and fit.exponent < 0
    _, planted_curve = growth_curve(sorted_similarity_vectors(dist, planted))
    assert burnout_rank(ranks, planted_curve, fit) == g
    excess = burnout_excess(ranks, planted_curve, fit)
    assert excess[g - 1] > math.log(10.0)  # the jump is more than 10x the law


def test_normal_patches_show_no_burnout_spike():
    dist, planted = _planted_batch(4)
    ranks, curve = growth_curve(sorted_similarity_vectors(dist, ~planted))
    excess = burnout_excess(ranks, curve, fit_power_law(ranks, curve))
    # The last ranks (the farthest images of a finite batch) leave the law; the rest stays
    # within a factor 2 of it.
    assert np.nanmax(np.abs(excess[: int(0.7 * len(ranks))])) < math.log(2.0)


def test_split_matches_definition():
    rng = np.random.default_rng(3)
    scores = rng.random((5, 20))
    normal = np.zeros((5, 20), dtype=bool)
    normal[:3] = True
    anomalous = np.zeros_like(normal)
    anomalous[3:, :10] = True
    groups = split_anomalous_patches(anomalous, normal, scores, 80.0)
    threshold = np.percentile(scores[:3], 80.0)
    assert groups.threshold == pytest.approx(threshold)
    np.testing.assert_array_equal(groups.consistent, anomalous & (scores < threshold))
    np.testing.assert_array_equal(groups.inconsistent, anomalous & (scores >= threshold))
    with pytest.raises(ValueError, match="no normal patch"):
        split_anomalous_patches(anomalous, np.zeros_like(normal), scores)
