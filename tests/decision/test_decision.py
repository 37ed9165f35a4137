"""decision.py: the per-image flags against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from codegraph_ad.config import DecisionConfig, RunConfig, config_from_dict, config_to_dict
from codegraph_ad.decision import decide, fitted_threshold, gmm_model, mad_model, prediction_factor
from codegraph_ad.errors import ConfigError, InputError


def test_mad_rule_by_hand():
    scores = [1.0, 2.0, 3.0, 4.0, 5.0, 100.0]
    # median 3.5; |x - 3.5| = 2.5 1.5 .5 .5 1.5 96.5 -> MAD 1.5, sigma 1.4826 * 1.5 = 2.2239
    # the model is estimated from n = 6 scores: t(0.99; 5) = 3.364930, sqrt(1 + 1/6) = 1.080123
    # -> factor 3.634540, threshold 3.5 + 3.634540 * 2.2239 = 11.58285
    d = decide(scores, DecisionConfig(false_alarm_rate=0.01, rule="mad"))
    assert d.rule == "mad" and d.false_alarm_rate == 0.01 and d.normal_count == 6
    assert d.center == 3.5 and d.scale == pytest.approx(2.2239)
    assert d.threshold == pytest.approx(11.58285, abs=1e-4)
    assert d.anomalous.tolist() == [False] * 5 + [True]
    assert d.to_dict()["n_flagged"] == 1 and d.to_dict()["n_images"] == 6


def test_a_higher_rate_lowers_the_threshold():
    # t(0.8; 5) = 0.919544 * 1.080123 = 0.993221 -> 3.5 + 0.993221 * 2.2239 = 5.70882: the 5.0
    # image stays, 100 is flagged
    d = decide([1.0, 2.0, 3.0, 4.0, 5.0, 100.0], DecisionConfig(false_alarm_rate=0.2, rule="mad"))
    assert d.threshold == pytest.approx(5.70882, abs=1e-4)
    assert d.anomalous.tolist() == [False] * 5 + [True]
    # 6.5 for 5.0: MAD median(.5 .5 1.5 2.5 3 96.5) = 2 -> 3.5 + 0.993221 * 2.9652 = 6.44510
    d = decide([1.0, 2.0, 3.0, 4.0, 6.5, 100.0], DecisionConfig(false_alarm_rate=0.2, rule="mad"))
    assert d.threshold == pytest.approx(6.44510, abs=1e-4)
    assert d.anomalous.tolist() == [False] * 4 + [True, True]


def test_normal_batch_with_outliers_flags_the_outliers():
    rng = np.random.default_rng(0)
    normal = rng.normal(0.3, 0.01, 200)
    scores = np.concatenate([normal, [0.5, 0.6, 0.7]])
    for rule in ("mad", "gmm"):
        d = decide(scores, DecisionConfig(rule=rule, false_alarm_rate=0.01))
        assert d.anomalous[-3:].all(), rule
        assert d.anomalous[:200].sum() <= 6, rule  # 1% of 200 is 2 expected
        assert d.center == pytest.approx(0.3, abs=0.005) and d.scale == pytest.approx(0.01, rel=0.25)


def test_gmm_takes_the_lowest_substantial_component_as_normal():
    rng = np.random.default_rng(1)
    mostly_normal = np.concatenate([rng.normal(1.0, 0.05, 60), rng.normal(3.0, 0.05, 20)])
    mostly_anomalous = np.concatenate([rng.normal(1.0, 0.05, 20), rng.normal(3.0, 0.3, 60)])
    for scores in (mostly_normal, mostly_anomalous):
        center, sigma, _ = gmm_model(scores)
        assert center == pytest.approx(1.0, abs=0.03) and sigma == pytest.approx(0.05, rel=0.3)
        d = decide(scores, DecisionConfig(rule="gmm"))
        n_normal = int((scores < 2).sum())
        assert d.anomalous[n_normal:].all() and d.anomalous[:n_normal].sum() <= 2
    # a cluster of 5% unusually low scores is not the normal model (MIN_NORMAL_WEIGHT)
    low_tail = np.concatenate([rng.normal(0.2, 0.01, 5), rng.normal(1.0, 0.05, 95)])
    center, _, _ = gmm_model(low_tail)
    assert center == pytest.approx(1.0, abs=0.05)


def test_all_equal_scores_flag_nothing():
    for rule in ("mad", "gmm"):
        d = decide([0.4] * 10, DecisionConfig(rule=rule))
        assert d.threshold == pytest.approx(0.4) and not d.anomalous.any()
        assert d.scale == 0.0


def test_three_images():
    # median 2, MAD median(|1-2|, 0, |10-2|) = 1; three scores cannot pin a 1% tail down:
    # t(0.99; 2) = 6.964557 * sqrt(4/3) = 8.041977 -> threshold 2 + 8.041977 * 1.4826 = 13.92304
    d = decide([1.0, 2.0, 10.0], DecisionConfig(rule="mad"))
    assert d.threshold == pytest.approx(13.92304, abs=1e-4)
    assert not d.anomalous.any()
    assert decide([1.0, 2.0, 100.0], DecisionConfig(rule="mad")).anomalous.tolist() == [False, False, True]
    # under GMM_MIN_IMAGES the mixture rule falls back to the median and MAD
    assert gmm_model([1.0, 2.0, 10.0]) == mad_model([1.0, 2.0, 10.0])
    assert decide([1.0, 2.0, 100.0]).anomalous.tolist() == [False, False, True]


def test_the_prediction_bound_tends_to_the_gaussian_quantile():
    # with many normal images the estimate's own error vanishes: z(0.99) = 2.326348
    assert prediction_factor(0.01, 1e6) == pytest.approx(2.326348, abs=1e-4)
    assert prediction_factor(0.01, 20) > prediction_factor(0.01, 80) > prediction_factor(0.01, 1e6)


def test_the_normal_mode_under_a_broad_spread_of_anomalies_is_found():
    """The failure of session 28 rebuilt: 18% good images in a tight mode under anomalies
    spread over three times their range in several modes (bottle with two repeated defects).
    With two components BIC preferred one Gaussian over the whole batch and nothing was
    flagged; the good mode must be the normal model and every anomaly above the threshold."""
    rng = np.random.default_rng(3)
    good = rng.normal(0.26, 0.015, 20)
    anomalous = np.concatenate([rng.normal(0.38, 0.02, 25), rng.normal(0.50, 0.04, 40), rng.normal(0.60, 0.05, 28)])
    scores = np.concatenate([good, anomalous])
    center, sigma, n = gmm_model(scores)
    assert center == pytest.approx(0.26, abs=0.01) and n == pytest.approx(20, abs=4)
    d = decide(scores)
    assert d.anomalous[20:].all() and d.anomalous[:20].sum() <= 1


def test_fixed_threshold_overrides_the_fit():
    d = decide([1.0, 2.0, 3.0], DecisionConfig(threshold=1.5))
    assert d.rule == "fixed" and d.threshold == 1.5 and d.false_alarm_rate is None and d.center is None
    assert d.anomalous.tolist() == [False, True, True]


def test_bad_inputs_are_named():
    with pytest.raises(InputError, match="empty"):
        decide([])
    with pytest.raises(InputError, match="NaN"):
        decide([1.0, float("nan")])
    with pytest.raises(ConfigError, match="false_alarm_rate"):
        DecisionConfig(false_alarm_rate=0.0)
    with pytest.raises(ConfigError, match="threshold"):
        DecisionConfig(threshold=float("nan"))
    with pytest.raises(InputError, match="rule"):
        fitted_threshold([1.0, 2.0], 0.01, "otsu")


def test_mad_model_ignores_a_minority():
    center, sigma, _ = mad_model([1.0, 1.0, 2.0, 2.0, 1000.0])
    assert center == 2.0 and sigma == pytest.approx(1.4826)


def test_run_config_without_decision_loads_with_defaults():
    old = config_to_dict(RunConfig(method="musc"))
    del old["decision"]
    c = config_from_dict(RunConfig, old)
    assert c.method == "musc" and c.decision == DecisionConfig()
    c = config_from_dict(RunConfig, {**old, "decision": {"threshold": 0.5}})
    assert c.decision.threshold == 0.5 and c.decision.false_alarm_rate == DecisionConfig().false_alarm_rate


def test_command_line_flags():
    import argparse

    from codegraph_ad.options import add_run_options, config_from_args

    p = argparse.ArgumentParser()
    add_run_options(p)
    c = config_from_args(p.parse_args(["--out", "o", "--false-alarm-rate", "0.05", "--decision-rule", "gmm"]))
    assert c.decision == DecisionConfig(false_alarm_rate=0.05, rule="gmm")
    c = config_from_args(p.parse_args(["--out", "o", "--threshold", "0.7"]))
    assert c.decision.threshold == 0.7
    assert config_from_args(p.parse_args(["--out", "o", "--threshold", "none"])).decision.threshold is None


def test_good_images_an_eighth_of_the_batch_under_a_tight_repeated_mode_are_the_normal_model():
    """Bottle's 35%-copy batch at 448 px, a little harder: good images an eighth of the batch
    (the real cell holds 20 of 128, and their fitted weight fell under the former 0.15 floor),
    46 copies of one defect in a tight mode and the test split's other anomalies spread above
    the good ones. The floor at 0.15 took the copies' mode for the normal one and flagged one
    anomalous image of 108; the good images must be the normal model."""
    rng = np.random.default_rng(5)
    good = rng.normal(0.33, 0.017, 16)
    copies = rng.normal(0.655, 0.017, 46)
    others = rng.uniform(0.39, 0.75, 66)
    scores = np.concatenate([good, copies, others])
    center, _, n = gmm_model(scores)
    assert center == pytest.approx(0.33, abs=0.02) and n < 25
    d = decide(scores)
    assert d.anomalous[16:].mean() >= 0.95 and d.anomalous[:16].sum() <= 1
