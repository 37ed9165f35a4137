import numpy as np
import pytest

from codegraph_ad.graph.communities import (
    community_densities,
    cpm_resolution,
    detect_communities,
    tukey_fence,
)


def _sparse_background(rng, n, n_edges, max_w=2):
    w = np.zeros((n, n))
    for _ in range(n_edges):
        a, b = rng.choice(n, size=2, replace=False)
        w[a, b] += rng.integers(1, max_w + 1)
    return w + w.T


def _add_clique(w, members, weight):
    for a in members:
        for b in members:
            if a != b:
                w[a, b] += weight


def test_dense_clique_is_the_only_outlier():
    rng = np.random.default_rng(0)
    w = _sparse_background(rng, 30, 40)
    planted = [3, 7, 11, 19, 25]
    _add_clique(w, planted, 16)
    res = detect_communities(w, kappa=3.0, seed=0)
    assert len(res.outliers) == 1
    assert res.outlier_communities[0].tolist() == planted
    assert res.fence < res.densities[res.outliers[0]]
    assert res.resolution == cpm_resolution(w)
    # membership and communities agree and partition the images
    assert sorted(np.concatenate(res.communities).tolist()) == list(range(30))
    for c, members in enumerate(res.communities):
        assert np.all(res.membership[members] == c)


def test_densities_brute_force():
    rng = np.random.default_rng(1)
    w = _sparse_background(rng, 10, 30, max_w=5)
    comms = [np.array([0, 1, 2]), np.array([3]), np.array([4, 5, 6, 7, 8, 9])]
    dens = community_densities(w, comms)
    for c, members in enumerate(comms):
        s = len(members)
        internal = sum(w[a, b] for i, a in enumerate(members) for b in members[i + 1 :])
        assert dens[c] == pytest.approx(internal / (s * (s - 1) / 2) if s >= 2 else 0.0)


def test_empty_graph():
    res = detect_communities(np.zeros((6, 6)))
    assert res.membership.tolist() == list(range(6)) and res.outliers == []
    assert res.resolution == 0.0 and res.fence == np.inf and not res.eligible.any()


def test_single_community_and_equal_densities_have_no_outlier():
    # Weights all equal to gamma would make every partition tie under CPM (gain w - gamma
    # = 0), so the complete graph gets weights around, not at, its 25th percentile.
    rng = np.random.default_rng(0)
    full = np.triu(rng.uniform(1, 3, (6, 6)), 1)
    res = detect_communities(full + full.T)
    assert len(res.communities) == 1 and res.outliers == [] and res.iqr == 0.0
    pairs = np.zeros((8, 8))
    for a in range(0, 8, 2):
        pairs[a, a + 1] = pairs[a + 1, a] = 3.0  # four equal pairs ...
        b = (a + 2) % 8
        pairs[a + 1, b] = pairs[b, a + 1] = 1.0  # ... on a weak ring (gamma = 1)
    res = detect_communities(pairs)
    assert res.eligible.sum() == 4 and np.allclose(res.densities, 3.0) and res.outliers == []


def test_community_covering_half_the_batch_is_defined():
    rng = np.random.default_rng(2)
    w = _sparse_background(rng, 30, 25)
    clique = np.triu(rng.integers(3, 13, (15, 15)), 1)
    w[:15, :15] += clique + clique.T
    res = detect_communities(w, kappa=1.5)
    assert np.isfinite(res.densities).all() and np.isfinite([res.q1, res.q3, res.iqr, res.fence]).all()
    assert res.communities[0].tolist() == list(range(15))
    # Its edges dominate the weights, so gamma (their 25th percentile) rises above every
    # background edge: the rest are singletons, the clique is the only community with a
    # density, and Tukey has no baseline to flag it. Defined, but a known blind spot.
    assert res.eligible.sum() == 1 and res.outliers == []


def test_seed_makes_it_deterministic():
    rng = np.random.default_rng(3)
    w = _sparse_background(rng, 25, 80, max_w=3)
    a, b = detect_communities(w, seed=5), detect_communities(w, seed=5)
    np.testing.assert_array_equal(a.membership, b.membership)


def test_tukey_fence():
    assert tukey_fence(np.array([1.0, 2.0, 3.0, 4.0, 5.0]), 1.5) == (2.0, 4.0, 2.0, 7.0)
    assert tukey_fence(np.array([]), 3.0)[3] == np.inf


def test_rejects_asymmetric():
    with pytest.raises(ValueError, match="symmetric"):
        detect_communities(np.triu(np.ones((4, 4)), 1))
