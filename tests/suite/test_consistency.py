"""Capture rate, the one definition (evaluation.consistency_rates) as the suite uses it.

Checked against a loop-by-loop twin and by hand; the normal population is the patches of
normal images (a normal patch of an anomalous image does not move the threshold); the suite
passes MuSc's default-q scores only; patch mask shares against a hand count.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from codegraph_ad.config import MSMConfig, RunConfig
from codegraph_ad.datasets.base import LabelledSample
from codegraph_ad.errors import InputError
from codegraph_ad.evaluation import consistency_rates
from codegraph_ad.suite import BenchmarkConfig, ConsistencyConfig
from codegraph_ad.suite.consistency import patch_mask_fractions
from codegraph_ad.suite.runner import _check_resumable, _consistency_record, _default_musc_scores
from tests.datasets.layouts import save


def _brute(musc, excluded, fractions, labels, pct=80.0, frac=0.5, images=None):
    n, m = fractions.shape
    normal_scores = [musc[i, j] for i in range(n) if labels[i] == 0 for j in range(m)]
    thr = np.percentile(normal_scores, pct)
    counted = range(n) if images is None else images
    consistent = [(i, j) for i in counted for j in range(m) if fractions[i, j] >= frac and musc[i, j] < thr]
    captured = sum(bool(excluded[i, j]) for i, j in consistent)
    return {
        "exclusion_rate": sum(bool(excluded[i, j]) for i in range(n) for j in range(m)) / (n * m),
        "capture_rate": captured / len(consistent) if consistent else None,
        "n_consistent_patches": len(consistent),
        "musc_threshold": thr,
    }


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rates_match_the_brute_force_twin(seed):
    rng = np.random.default_rng(seed)
    n, m = 8, 16
    labels = np.array([0, 0, 0, 1, 1, 1, 1, 1])
    fractions = np.where(rng.random((n, m)) < 0.4, rng.random((n, m)), 0.0).astype(np.float32)
    fractions[labels == 0] = 0.0  # normal images carry no mask
    musc = rng.random((n, m)).astype(np.float32)
    excluded = rng.random((n, m)) < 0.25
    got = consistency_rates(musc, excluded, fractions, labels)
    want = _brute(musc, excluded, fractions, labels)
    assert got["musc_threshold"] == pytest.approx(want["musc_threshold"])
    assert got["exclusion_rate"] == pytest.approx(want["exclusion_rate"])
    assert got["n_consistent_patches"] == want["n_consistent_patches"]
    if want["capture_rate"] is None:
        assert got["capture_rate"] is None
    else:
        assert got["capture_rate"] == pytest.approx(want["capture_rate"])
    shares = [got[k] for k in ("excluded_normal_share", "excluded_consistent_share", "excluded_inconsistent_share")]
    assert sum(shares) == pytest.approx(1.0)


@pytest.mark.parametrize("images", [[3, 4], [5], [0, 7]])
def test_a_group_counts_only_its_own_consistent_patches(images):
    # the repeated group's capture rate: the same threshold (all normal images of the batch),
    # the consistent patches of the group's images only; whole-batch figures unchanged
    rng = np.random.default_rng(7)
    n, m = 8, 16
    labels = np.array([0, 0, 0, 1, 1, 1, 1, 1])
    fractions = np.where(labels[:, None] == 1, rng.random((n, m)), 0.0).astype(np.float32)
    musc = rng.random((n, m)).astype(np.float32)
    excluded = rng.random((n, m)) < 0.5
    excluded[5] = True  # image 5 entirely excluded: its group captures everything
    got = consistency_rates(musc, excluded, fractions, labels, images=images)
    want = _brute(musc, excluded, fractions, labels, images=images)
    whole = consistency_rates(musc, excluded, fractions, labels)
    assert got["n_consistent_patches"] == want["n_consistent_patches"] < whole["n_consistent_patches"]
    assert want["capture_rate"] is not None and got["capture_rate"] == pytest.approx(want["capture_rate"])
    for k in ("musc_threshold", "exclusion_rate", "excluded_consistent_share", "excluded_inconsistent_share"):
        assert got[k] == whole[k]
    if images == [5]:
        assert got["capture_rate"] == 1.0 != whole["capture_rate"]
    if images == [0, 7]:  # a normal image holds no anomalous patch
        assert got["n_consistent_patches"] == int(((fractions[7] >= 0.5) & (musc[7] < got["musc_threshold"])).sum())


# 2 images x 4 patches. Image 0 is normal. Image 1 is anomalous: patches 0-2 are anomalous
# (mask share >= 0.5), patch 3 (share 0.2) is a normal patch of an anomalous image, scored
# high by MuSc (0.95), as background next to a defect often is.
LABELS = np.array([0, 1])
FRACTIONS = np.array([[0, 0, 0, 0], [1, 1, 0.6, 0.2]], dtype=np.float32)
MUSC = np.array([[0.1, 0.2, 0.3, 0.4], [0.05, 0.45, 0.9, 0.95]], dtype=np.float32)
EXCLUDED = np.array([[0, 1, 0, 0], [1, 0, 0, 1]], dtype=bool)


def test_hand_made_case():
    r = consistency_rates(MUSC, EXCLUDED, FRACTIONS, LABELS, ConsistencyConfig(musc_percentile=80.0))
    # normal population: image 0's patches 0.1 0.2 0.3 0.4 -> 80th percentile 0.3 + 0.4 * 0.1 = 0.34;
    # anomalous patches 0.05 (consistent), 0.45 and 0.9 (not); the consistent one is excluded
    assert r["musc_threshold"] == pytest.approx(0.34)
    assert r["n_anomalous_patches"] == 3 and r["n_consistent_patches"] == 1
    assert r["capture_rate"] == 1.0
    assert r["exclusion_rate"] == pytest.approx(3 / 8)
    assert r["excluded_normal_share"] == pytest.approx(2 / 3)
    assert r["excluded_consistent_share"] == pytest.approx(1 / 3)
    assert r["excluded_inconsistent_share"] == 0.0


def test_a_normal_patch_of_an_anomalous_image_does_not_move_the_threshold():
    # The old suite rule took every non-anomalous patch as the normal population: it let
    # (1, 3) in (0.1 0.2 0.3 0.4 0.95 -> 80th percentile 0.4 + 0.2 * 0.55 = 0.51), which made
    # the unexcluded 0.45 patch consistent too (capture 1 of 2 = 0.5). The thesis's rule does not.
    new = consistency_rates(MUSC, EXCLUDED, FRACTIONS, LABELS)
    assert new["musc_threshold"] == pytest.approx(0.34) and new["capture_rate"] == 1.0
    raising = MUSC.copy()
    raising[1, 3] = 10.0  # whatever that patch scores, the threshold stays
    assert consistency_rates(raising, EXCLUDED, FRACTIONS, LABELS)["musc_threshold"] == pytest.approx(0.34)
    # without labels (or without a normal image) the function falls back to the old rule
    old = consistency_rates(MUSC, EXCLUDED, FRACTIONS)
    assert old["musc_threshold"] == pytest.approx(0.51)
    assert old["n_consistent_patches"] == 2 and old["capture_rate"] == 0.5
    assert consistency_rates(MUSC, EXCLUDED, FRACTIONS, np.array([1, 1]))["musc_threshold"] == pytest.approx(0.51)


def test_undefined_rates_are_none():
    fractions = np.ones((2, 4), dtype=np.float32)  # no normal patch at all
    r = consistency_rates(np.zeros((2, 4)), np.zeros((2, 4), bool), fractions, np.array([1, 1]))
    assert r["capture_rate"] is None and r["musc_threshold"] is None and r["exclusion_rate"] == 0.0
    r = consistency_rates(None, None, np.zeros((2, 4), np.float32), np.array([0, 1]))
    assert r["exclusion_rate"] is None and r["capture_rate"] is None
    r = consistency_rates(MUSC, None, FRACTIONS, LABELS)  # MuSc itself: threshold, no rates
    assert r["musc_threshold"] == pytest.approx(0.34) and r["n_consistent_patches"] == 1
    assert r["exclusion_rate"] is None and r["capture_rate"] is None


def _run(q: float, scores: np.ndarray):
    import torch

    run = SimpleNamespace(config=RunConfig(method="musc", msm=MSMConfig(q=q)),
                          scores=SimpleNamespace(patch_scores=torch.from_numpy(scores)))
    return SimpleNamespace(run=run)


def test_suite_uses_musc_scores_at_the_default_q_only():
    assert MSMConfig().q == 0.3
    np.testing.assert_array_equal(_default_musc_scores({"musc": _run(0.3, MUSC)}), MUSC)
    assert _default_musc_scores({"musc": _run(0.1, MUSC)}) is None  # benchmark --q 0.1: no capture rate
    assert _default_musc_scores({}) is None  # codegraph alone


def test_records_made_under_the_older_rule_are_not_resumed(tmp_path):
    bench = BenchmarkConfig("mvtec_ad", tmp_path)
    record = {"configs": {}, "eval_size": 256, "consistency_config": _consistency_record(bench)}
    _check_resumable(tmp_path / "a.json", record, {}, bench)  # same rule: fine
    record["consistency_config"] = {"musc_percentile": 80.0, "anomalous_fraction": 0.5}
    with pytest.raises(InputError, match="--overwrite"):
        _check_resumable(tmp_path / "a.json", record, {}, bench)


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
