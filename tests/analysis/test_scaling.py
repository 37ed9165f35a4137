"""Similarity scaling estimators against brute force and known power laws."""

from __future__ import annotations

import numpy as np
import pytest

from codegraph_ad.analysis.scaling import (
    fit_power_law,
    growth_curve,
    log_growth_rates,
    mean_growth_curve,
    sorted_similarity_vectors,
)


def test_sorted_vectors_match_brute_force():
    rng = np.random.default_rng(0)
    n, m = 6, 5
    dist = rng.uniform(0.1, 2.0, size=(n, n, m)).astype(np.float32)
    dist[np.arange(n), np.arange(n)] = np.inf
    select = rng.random((n, m)) < 0.5
    got = sorted_similarity_vectors(dist, select)
    want = [sorted(dist[q, j, p] for j in range(n) if j != q) for q in range(n) for p in range(m) if select[q, p]]
    np.testing.assert_allclose(got, np.array(want, dtype=np.float32))
    assert sorted_similarity_vectors(dist).shape == (n * m, n - 1)


def test_log_growth_rates_brute_force_and_zero_distance():
    d = np.array([[0.5, 1.0, 4.0], [0.0, 1.0, 2.0]])
    tau = log_growth_rates(d)
    np.testing.assert_allclose(tau[0], [np.log(2.0), np.log(4.0)])
    assert np.isnan(tau[1, 0]) and tau[1, 1] == pytest.approx(np.log(2.0))
    np.testing.assert_allclose(mean_growth_curve(tau), [np.log(2.0), np.log(8.0) / 2])


@pytest.mark.parametrize("alpha", [1.5, 4.0])
def test_iid_power_tail_distances_give_inverse_rank_law(alpha):
    """P(d < r) = r^alpha: Renyi gives E[tau^(i)] = 1 / (alpha i), slope -1, prefactor 1/alpha."""
    rng = np.random.default_rng(1)
    d = np.sort(rng.random((6000, 40)) ** (1.0 / alpha), axis=1)
    ranks, curve = growth_curve(d)
    np.testing.assert_allclose(curve, 1.0 / (alpha * ranks), rtol=0.12)
    fit = fit_power_law(ranks, curve)
    assert fit.exponent == pytest.approx(-1.0, abs=0.04)
    assert fit.prefactor == pytest.approx(1.0 / alpha, rel=0.08)
    assert fit.r2 > 0.99


def test_exponential_spacings_give_planted_exponent():
    """tau^(i) drawn as exponentials with mean c * i^b give back b and c."""
    rng = np.random.default_rng(2)
    b, c = -0.7, 0.3
    ranks = np.arange(1, 30)
    tau = rng.exponential(c * ranks**b, size=(5000, ranks.size))
    d = np.exp(np.concatenate([np.zeros((5000, 1)), np.cumsum(tau, axis=1)], axis=1)) * 0.01
    got_ranks, curve = growth_curve(d)
    fit = fit_power_law(got_ranks, curve)
    assert fit.exponent == pytest.approx(b, abs=0.03)
    assert fit.prefactor == pytest.approx(c, rel=0.06)
    np.testing.assert_allclose(fit.predict(ranks), c * ranks**b, rtol=0.1)


def test_fit_power_law_exact_and_degenerate():
    ranks = np.arange(1, 11)
    fit = fit_power_law(ranks, 2.0 * ranks**-1.3, rank_min=2, rank_max=8)
    assert (fit.exponent, fit.prefactor, fit.r2) == pytest.approx((-1.3, 2.0, 1.0))
    assert (fit.rank_min, fit.rank_max, fit.n_points) == (2, 8, 7)
    values = np.full(10, np.nan)
    values[3] = 1.0
    assert fit_power_law(ranks, values) is None
    with pytest.raises(ValueError, match="shape"):
        fit_power_law(ranks, ranks[:-1])
