"""Hill estimator and Beta(alpha, 1) model on samples with a known tail index."""

from __future__ import annotations

import numpy as np
import pytest

from codegraph_ad.analysis.tail import (
    beta_qq,
    fit_beta_alpha,
    hill_estimates,
    normalised_distances,
    smallest_positive,
    summarize_hill,
)


@pytest.mark.parametrize("dim", [2, 3, 5])
def test_poisson_process_hill_plateau_near_dimension(dim):
    """Homogeneous Poisson points in [0,1]^d: counts in a ball grow as r^d, so 1/d has tail index d."""
    rng = np.random.default_rng(dim)
    points = rng.random((rng.poisson(20000), dim))
    refs = 0.4 + 0.2 * rng.random((16, dim))
    dist = np.linalg.norm(refs[:, None, :] - points[None, :, :], axis=-1)
    alpha = hill_estimates(smallest_positive(dist, 301))
    summary = summarize_hill(alpha, (0.1, 0.9))
    assert summary.plateau == pytest.approx(dim, rel=0.1)
    assert summary.k.shape == (300,) and summary.k_lo == 30 and summary.k_hi == 270


def test_hill_on_pareto_and_brute_force():
    rng = np.random.default_rng(0)
    d = np.sort(rng.random((1, 50000)) ** (1 / 2.5), axis=1)[:, :1001]  # S = 1/d is Pareto(2.5)
    assert np.median(hill_estimates(d)[0, 200:800]) == pytest.approx(2.5, rel=0.08)
    small = np.array([[0.1, 0.2, 0.4, 0.5]])
    want = [1.0 / (np.log(small[0, k]) - np.mean(np.log(small[0, :k]))) for k in range(1, 4)]
    np.testing.assert_allclose(hill_estimates(small)[0], want)


def test_smallest_positive_skips_duplicates_and_pads():
    d = np.array([[0.0, 0.3, 0.1, np.inf, 0.2]])
    np.testing.assert_allclose(smallest_positive(d, 2), [[0.1, 0.2]])
    got = smallest_positive(d, 5)
    np.testing.assert_allclose(got[0, :3], [0.1, 0.2, 0.3])
    assert np.isnan(got[0, 3:]).all()


@pytest.mark.parametrize("alpha", [0.7, 3.0])
def test_beta_fit_and_qq_on_normalised_order_statistics(alpha):
    """Given d^(k), the k-1 smaller distances of a r^alpha-tailed sample are Beta(alpha, 1)."""
    rng = np.random.default_rng(4)
    d = np.sort(rng.random((3000, 60)) ** (1.0 / alpha), axis=1)
    u = normalised_distances(d, 20)
    assert u.shape == (3000, 19) and np.nanmax(u) <= 1.0
    fitted = fit_beta_alpha(u)
    assert fitted == pytest.approx(alpha, rel=0.03)
    qq = beta_qq(u, fitted, 50)
    assert qq.ks < 0.02
    np.testing.assert_allclose(qq.empirical, qq.theoretical, atol=0.02)
    assert beta_qq(u, 3 * fitted).ks > 0.2


def test_beta_fit_degenerate():
    assert fit_beta_alpha(np.array([np.nan, 2.0])) is None
    assert fit_beta_alpha(np.ones(5)) is None
    with pytest.raises(ValueError, match="no value"):
        beta_qq(np.array([np.nan]), 1.0)
