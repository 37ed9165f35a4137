"""Image metrics against brute force and hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest
from metrics_brute import ap_definition, auroc_pairs, f1_loop

from codegraph_ad.metrics import f1_max, image_metrics


@pytest.mark.parametrize("seed", range(6))
def test_matches_brute_force_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 60))
    labels = rng.random(n) < 0.4
    labels[:2] = [True, False]
    scores = np.round(rng.random(n) + 0.3 * labels, 1)  # rounding makes many ties
    got = image_metrics(scores, labels.astype(int))
    assert got["auroc"] == pytest.approx(auroc_pairs(scores, labels), abs=1e-12)
    assert got["ap"] == pytest.approx(ap_definition(scores, labels), abs=1e-12)
    assert got["f1_max"] == pytest.approx(f1_loop(scores, labels)[0], abs=1e-12)
    assert f1_max(scores, labels) == got["f1_max"]


def test_perfect_and_inverted() -> None:
    labels = np.array([0, 0, 0, 1, 1])
    scores = np.array([0.1, 0.2, 0.3, 0.8, 0.9])
    assert image_metrics(scores, labels) == {"auroc": 1.0, "ap": 1.0, "f1_max": 1.0}
    inv = image_metrics(-scores, labels)
    assert inv["auroc"] == 0.0
    assert inv["ap"] == pytest.approx(ap_definition(-scores, labels))
    # Inverted: the best F1 predicts everything anomalous: P = 2/5, R = 1.
    assert inv["f1_max"] == pytest.approx(2 * 0.4 / 1.4)


def test_all_equal_scores() -> None:
    labels = np.array([0, 1, 0, 0, 1, 0])
    got = image_metrics(np.full(6, 0.7), labels)
    assert got["auroc"] == 0.5
    assert got["ap"] == pytest.approx(2 / 6)  # one threshold: precision = prevalence, recall 1
    assert got["f1_max"] == pytest.approx(2 * (2 / 6) / (1 + 2 / 6))


def test_single_class_gives_none_not_nan() -> None:
    normal_only = image_metrics([0.1, 0.5, 0.3], [0, 0, 0])
    assert normal_only == {"auroc": None, "ap": None, "f1_max": None}
    anomalous_only = image_metrics([0.1, 0.5, 0.3], [1, 1, 1])
    assert anomalous_only == {"auroc": None, "ap": 1.0, "f1_max": 1.0}


def test_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="NaN"):
        image_metrics([0.1, np.nan], [0, 1])
    with pytest.raises(ValueError, match="0/1"):
        image_metrics([0.1, 0.2], [0, 2])
    with pytest.raises(ValueError, match=r"\(N,\)"):
        image_metrics([0.1, 0.2, 0.3], [0, 1])
