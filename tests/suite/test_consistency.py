"""Exclusion and capture rates against a loop-by-loop twin; patch mask shares against a hand count."""

from __future__ import annotations

import numpy as np
import pytest

from codegraph_ad.datasets.base import LabelledSample
from codegraph_ad.suite.config import ConsistencyConfig
from codegraph_ad.suite.consistency import consistency_rates, patch_mask_fractions
from tests.datasets.layouts import save


def _brute(musc, excluded, fractions, pct=80.0, frac=0.5):
    n, m = fractions.shape
    normal_scores = [musc[i, j] for i in range(n) for j in range(m) if fractions[i, j] < frac]
    thr = np.percentile(normal_scores, pct)
    consistent = [(i, j) for i in range(n) for j in range(m) if fractions[i, j] >= frac and musc[i, j] < thr]
    captured = sum(bool(excluded[i, j]) for i, j in consistent)
    return {
        "exclusion_rate": sum(bool(excluded[i, j]) for i in range(n) for j in range(m)) / (n * m),
        "capture_rate": captured / len(consistent) if consistent else None,
        "n_consistent_patches": len(consistent),
    }


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rates_match_the_brute_force_twin(seed):
    rng = np.random.default_rng(seed)
    n, m = 6, 16
    fractions = np.where(rng.random((n, m)) < 0.3, rng.random((n, m)), 0.0).astype(np.float32)
    musc = rng.random((n, m)).astype(np.float32)
    excluded = rng.random((n, m)) < 0.25
    got = consistency_rates(musc, excluded, fractions)
    want = _brute(musc, excluded, fractions)
    assert got["exclusion_rate"] == pytest.approx(want["exclusion_rate"])
    assert got["n_consistent_patches"] == want["n_consistent_patches"]
    if want["capture_rate"] is None:
        assert got["capture_rate"] is None
    else:
        assert got["capture_rate"] == pytest.approx(want["capture_rate"])
    shares = [got[k] for k in ("excluded_normal_share", "excluded_consistent_share", "excluded_inconsistent_share")]
    assert sum(shares) == pytest.approx(1.0)


def test_hand_made_case():
    # 2 images x 4 patches; image 1 holds 3 anomalous patches, two of them scored low by MuSc.
    fractions = np.array([[0, 0, 0, 0], [1, 1, 0.6, 0.2]], dtype=np.float32)
    musc = np.array([[0.1, 0.2, 0.3, 0.4], [0.05, 0.9, 0.15, 0.5]], dtype=np.float32)
    excluded = np.array([[0, 0, 0, 0], [1, 0, 0, 1]], dtype=bool)
    r = consistency_rates(musc, excluded, fractions, ConsistencyConfig(musc_percentile=80.0))
    # normal patches: 0.1 0.2 0.3 0.4 0.5 -> 80th percentile 0.42; consistent: (1,0) and (1,2)
    assert r["musc_threshold"] == pytest.approx(0.42)
    assert r["n_consistent_patches"] == 2 and r["capture_rate"] == 0.5
    assert r["exclusion_rate"] == 0.25
    assert r["excluded_normal_share"] == 0.5 and r["excluded_consistent_share"] == 0.5


def test_undefined_rates_are_none():
    fractions = np.ones((2, 4), dtype=np.float32)  # no normal patch at all
    r = consistency_rates(np.zeros((2, 4)), np.zeros((2, 4), bool), fractions)
    assert r["capture_rate"] is None and r["musc_threshold"] is None and r["exclusion_rate"] == 0.0
    r = consistency_rates(None, None, np.zeros((2, 4), np.float32))
    assert r["exclusion_rate"] is None and r["capture_rate"] is None


def test_patch_mask_fractions_count_pixels_per_cell(tmp_path):
    mask = np.zeros((8, 12), dtype=bool)
    mask[0:4, 0:3] = True  # top-left cell of a 2x4 grid (cells are 4x3): full
    mask[4:6, 9:12] = True  # bottom-right cell: half
    path = save(tmp_path / "m.png", mask)
    samples = [LabelledSample(tmp_path / "a.png", 1, "x", (path,)), LabelledSample(tmp_path / "b.png", 0, "good")]
    got = patch_mask_fractions(samples, [(8, 12), (8, 12)], (2, 4))
    want = np.zeros((2, 8), dtype=np.float32)
    want[0, 0], want[0, 7] = 1.0, 0.5
    np.testing.assert_allclose(got, want)
