"""decision.py: the per-image flags against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from codegraph_ad.config import DecisionConfig, RunConfig, config_from_dict, config_to_dict
from codegraph_ad.decision import decide, fitted_threshold, gmm_model, mad_model
from codegraph_ad.errors import ConfigError, InputError


def test_mad_rule_by_hand():
    scores = [1.0, 2.0, 3.0, 4.0, 5.0, 100.0]
    # median 3.5; |x - 3.5| = 2.5 1.5 .5 .5 1.5 96.5 -> MAD 1.5, sigma 1.4826 * 1.5 = 2.2239
    # z(0.99) = 2.326348 -> threshold 3.5 + 2.326348 * 2.2239 = 8.67350
    d = decide(scores, DecisionConfig(false_alarm_rate=0.01, rule="mad"))
    assert d.rule == "mad" and d.false_alarm_rate == 0.01
    assert d.center == 3.5 and d.scale == pytest.approx(2.2239)
    assert d.threshold == pytest.approx(8.67350, abs=1e-4)
    assert d.anomalous.tolist() == [False] * 5 + [True]
    assert d.to_dict()["n_flagged"] == 1 and d.to_dict()["n_images"] == 6


def test_a_higher_rate_lowers_the_threshold():
    # z(0.8) = 0.841621 -> 3.5 + 0.841621 * 2.2239 = 5.37168: the 5.0 image stays, 100 is flagged
    d = decide([1.0, 2.0, 3.0, 4.0, 5.0, 100.0], DecisionConfig(false_alarm_rate=0.2, rule="mad"))
    assert d.threshold == pytest.approx(5.37168, abs=1e-4)
    assert d.anomalous.tolist() == [False] * 5 + [True]
    # 6.5 for 5.0: MAD median(.5 .5 1.5 2.5 3 96.5) = 2 -> 3.5 + 0.841621 * 2.9652 = 5.99557
    d = decide([1.0, 2.0, 3.0, 4.0, 6.5, 100.0], DecisionConfig(false_alarm_rate=0.2, rule="mad"))
    assert d.threshold == pytest.approx(5.99557, abs=1e-4)
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
        center, sigma = gmm_model(scores)
        assert center == pytest.approx(1.0, abs=0.03) and sigma == pytest.approx(0.05, rel=0.3)
        d = decide(scores, DecisionConfig(rule="gmm"))
        n_normal = int((scores < 2).sum())
        assert d.anomalous[n_normal:].all() and d.anomalous[:n_normal].sum() <= 2
    # a cluster of 5% unusually low scores is not the normal model (MIN_NORMAL_WEIGHT)
    low_tail = np.concatenate([rng.normal(0.2, 0.01, 5), rng.normal(1.0, 0.05, 95)])
    center, _ = gmm_model(low_tail)
    assert center == pytest.approx(1.0, abs=0.05)


def test_all_equal_scores_flag_nothing():
    for rule in ("mad", "gmm"):
        d = decide([0.4] * 10, DecisionConfig(rule=rule))
        assert d.threshold == pytest.approx(0.4) and not d.anomalous.any()
        assert d.scale == 0.0


def test_three_images():
    # median 2, MAD median(|1-2|, 0, |10-2|) = 1 -> threshold 2 + 2.326348 * 1.4826 = 5.44904
    d = decide([1.0, 2.0, 10.0], DecisionConfig(rule="mad"))
    assert d.threshold == pytest.approx(5.44904, abs=1e-4)
    assert d.anomalous.tolist() == [False, False, True]
    # under GMM_MIN_IMAGES the mixture rule falls back to the median and MAD
    assert gmm_model([1.0, 2.0, 10.0]) == mad_model([1.0, 2.0, 10.0])
    assert decide([1.0, 2.0, 10.0]).anomalous.tolist() == [False, False, True]


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
    center, sigma = mad_model([1.0, 1.0, 2.0, 2.0, 1000.0])
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
