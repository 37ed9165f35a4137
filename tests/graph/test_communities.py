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


@pytest.mark.parametrize("seed", [0, 5, 11])
def test_block_graph_partition_densities_and_fence_by_hand(seed: int) -> None:
    """Six blocks on a weak chain (gamma = 1): every seed must return the blocks, their
    densities as built, and the Tukey fence computed by hand; only the dense block is out.

    Densities 12, 3, 2, 3, 2, 4 sorted: 2 2 3 3 4 12; linear quartiles Q1 = 2 + 0.25 = 2.25,
    Q3 = 3 + 0.75 = 3.75, IQR = 1.5, fence (kappa 3) = 3.75 + 4.5 = 8.25 < 12.
    """
    blocks = [(5, [12.0]), (4, [3.0]), (4, [2.0]), (3, [3.0]), (3, [2.0]), (4, [4.0])]
    w, members = _blocks_on_a_weak_chain(blocks)
    res = detect_communities(w, kappa=3.0, seed=seed)
    assert res.resolution == 1.0
    assert sorted(c.tolist() for c in res.communities) == sorted(members)
    by_block = [res.densities[res.membership[b[0]]] for b in members]
    np.testing.assert_allclose(by_block, [12.0, 3.0, 2.0, 3.0, 2.0, 4.0])
    assert (res.q1, res.q3, res.iqr, res.fence) == pytest.approx((2.25, 3.75, 1.5, 8.25))
    assert [c.tolist() for c in res.outlier_communities] == [members[0]]


def test_tukey_fence():
    assert tukey_fence(np.array([1.0, 2.0, 3.0, 4.0, 5.0]), 1.5) == (2.0, 4.0, 2.0, 7.0)
    assert tukey_fence(np.array([]), 3.0)[3] == np.inf


def test_rejects_asymmetric():
    with pytest.raises(ValueError, match="symmetric"):
        detect_communities(np.triu(np.ones((4, 4)), 1))


def _blocks_on_a_weak_chain(blocks: list[tuple[int, list[float]]]) -> tuple[np.ndarray, list[list[int]]]:
    """Disjoint blocks (size, internal edge weights cycled over the pairs) tied to each other
    by weight-1 edges, enough of them that gamma (their 25th percentile) = 1: joining two
    blocks gains nothing under CPM, so Leiden returns the blocks."""
    n = sum(size for size, _ in blocks)
    w = np.zeros((n, n))
    members, start = [], 0
    for size, weights in blocks:
        block = list(range(start, start + size))
        pairs = [(a, b) for i, a in enumerate(block) for b in block[i + 1:]]
        for j, (a, b) in enumerate(pairs):
            w[a, b] = w[b, a] = weights[j % len(weights)]
        members.append(block)
        start += size
    for i, a in enumerate(members):
        for j, b in enumerate(members[i + 1:]):
            w[a[j % len(a)], b[0]] = w[b[0], a[j % len(a)]] = 1.0
    return w, members


def test_pairs_out_of_the_quartiles_let_a_dense_group_stand_out():
    # The held-out volume cohort (seed 4, docs/volumes.md): a consistent-lesion group at
    # density 10, three small healthy groups at 2.7-4, and three pairs at 3, 10 and 14.
    # With pairs counted, the two dense pairs lift Q3 to 10 and the fence to 20.5.
    blocks = [(6, [10.0]), (4, [4.0]), (4, [3.0]), (3, [2.0, 3.0, 3.0]), (2, [3.0]), (2, [10.0]), (2, [14.0])]
    w, members = _blocks_on_a_weak_chain(blocks)
    with_pairs = detect_communities(w, kappa=1.5)
    assert with_pairs.resolution == 1.0
    assert sorted(c.tolist() for c in with_pairs.communities if c.size >= 2) == sorted(members)
    assert with_pairs.eligible.sum() == 7 and with_pairs.outliers == []
    assert with_pairs.q3 == pytest.approx(10.0) and with_pairs.fence == pytest.approx(20.5)

    groups_only = detect_communities(w, kappa=1.5, min_size=3)
    np.testing.assert_array_equal(groups_only.membership, with_pairs.membership)  # same partition
    assert groups_only.eligible.sum() == 4 and groups_only.min_size == 3 and with_pairs.min_size == 2
    q1, q3, _, fence = tukey_fence(np.array([10.0, 4.0, 3.0, 8.0 / 3.0]), 1.5)
    assert (groups_only.q1, groups_only.q3, groups_only.fence) == pytest.approx((q1, q3, fence))
    # only the group is flagged: the 14-density pair is above the fence but not eligible
    assert [c.tolist() for c in groups_only.outlier_communities] == [members[0]]
    assert groups_only.densities[groups_only.membership[members[6][0]]] > groups_only.fence
    # a defect copied in just two volumes is the price: that pair can no longer be flagged


def test_size_bound_falls_back_below_four_groups():
    # one small group fewer: three communities of 3 or more cannot give Tukey quartiles that
    # the candidate does not set itself, so every community of two or more counts again
    blocks = [(6, [10.0]), (4, [4.0]), (4, [3.0]), (2, [3.0]), (2, [10.0]), (2, [14.0])]
    w, _ = _blocks_on_a_weak_chain(blocks)
    strict, plain = detect_communities(w, kappa=1.5, min_size=3), detect_communities(w, kappa=1.5)
    assert strict.min_size == 2 and strict.eligible.sum() == 6
    assert (strict.fence, strict.outliers) == (plain.fence, plain.outliers)


def test_rejects_min_size_below_two():
    with pytest.raises(ValueError, match="min_size"):
        detect_communities(np.zeros((4, 4)), min_size=1)


def test_per_member_density_by_hand_and_size_neutral():
    # a ring of s images, each edge weight 6: every image has the same links whatever s is
    def ring(s):
        w = np.zeros((s, s))
        for i in range(s):
            w[i, (i + 1) % s] = w[(i + 1) % s, i] = 6.0
        return w

    for s in (4, 8, 16):
        members = [np.arange(s)]
        assert community_densities(ring(s), members, "per_member")[0] == pytest.approx(6.0)
        assert community_densities(ring(s), members, "per_pair")[0] == pytest.approx(6.0 * s / (s * (s - 1) / 2))
    w = np.zeros((3, 3))
    w[0, 1] = w[1, 0] = 4.0
    assert community_densities(w, [np.array([0, 1]), np.array([2])], "per_member").tolist() == [2.0, 0.0]
    with pytest.raises(ValueError, match="density"):
        community_densities(w, [np.array([0, 1])], "per_edge")
    with pytest.raises(ValueError, match="disjoint"):
        community_densities(w, [np.array([0, 1]), np.array([1, 2])])


def test_resolution_percentile_reaches_cpm():
    rng = np.random.default_rng(3)
    w = _sparse_background(rng, 20, 60, max_w=9)
    res = detect_communities(w, resolution_percentile=75.0)
    assert res.resolution == cpm_resolution(w, 75.0) > cpm_resolution(w, 25.0)


def _two_families(cross_weight: float) -> np.ndarray:
    """Two 6-image cliques of weight 7 joined by ``cross_weight`` on 12 of their 36 cross
    pairs (1/3 of a link per pair when it is 1): one defect's two transform families."""
    w = np.zeros((12, 12))
    _add_clique(w, range(6), 7.0)
    _add_clique(w, range(6, 12), 7.0)
    for a in range(6):
        for b in (6 + a, 6 + (a + 1) % 6):
            w[a, b] = w[b, a] = cross_weight
    return w


def test_resolution_scale_below_one_merges_families_joined_by_fewer_links_than_gamma():
    w = _two_families(1)
    assert cpm_resolution(w) == 1.0  # the smallest weight: no percentile goes lower
    apart = detect_communities(w)
    assert sorted(c.size for c in apart.communities) == [6, 6]
    # CPM merges two pieces when their cross weight (12) beats gamma x 36 pairs: gamma < 1/3
    merged = detect_communities(w, resolution_scale=0.3)
    assert merged.resolution == pytest.approx(0.3)
    assert [c.size for c in merged.communities] == [12]
    assert [c.size for c in detect_communities(w, resolution_scale=0.4).communities] == [6, 6]
    with pytest.raises(ValueError, match="resolution_scale"):
        detect_communities(w, resolution_scale=0.0)


def test_leave_one_out_fence_by_hand():
    from codegraph_ad.graph.communities import leave_one_out_outliers

    dens = np.array([50.0, 2.0, 3.0, 2.5])
    everyone = np.ones(4, dtype=bool)
    # all four: Q1 2.375, Q3 14.75, fence 51.9 > 50 -- the candidate lifts its own fence
    assert tukey_fence(dens, 3.0)[3] == pytest.approx(14.75 + 3 * 12.375)
    # the others of community 0: Q1 2.25, Q3 2.75, fence 4.25 < 50; of community 2: 26.25 + ...
    assert leave_one_out_outliers(dens, everyone, 3.0).tolist() == [True, False, False, False]
    assert not leave_one_out_outliers(dens, np.array([True, True, False, False]), 3.0).any()  # one other only


def _same_result(a, b):
    np.testing.assert_array_equal(a.membership, b.membership)
    assert len(a.communities) == len(b.communities)
    for x, y in zip(a.communities, b.communities):
        np.testing.assert_array_equal(x, y)
    for f in ("sizes", "densities", "eligible"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
    assert (a.min_size, a.resolution, a.q1, a.q3, a.iqr, a.fence, a.outliers) == \
        (b.min_size, b.resolution, b.q1, b.q3, b.iqr, b.fence, b.outliers)


@pytest.mark.parametrize("kw", [{}, {"min_size": 3}, {"density": "per_member"}, {"leave_one_out": True, "kappa": 1.0}])
def test_sparse_and_dense_input_give_the_same_result(kw):
    from scipy import sparse

    rng = np.random.default_rng(4)
    w = _sparse_background(rng, 40, 70, max_w=4)
    _add_clique(w, [2, 9, 17, 30], 12)
    _add_clique(w, [5, 6, 7], 3)
    dense = detect_communities(w, **kw)
    _same_result(dense, detect_communities(sparse.csr_array(w), **kw))
    _same_result(dense, detect_communities(sparse.coo_matrix(w), **kw))
    # a stored diagonal and explicit zeros are ignored as the dense path ignores them
    coo = sparse.coo_array(w)
    extra = np.arange(10)
    noisy = sparse.coo_array((np.concatenate([coo.data, np.full(10, 5.0), np.zeros(10)]),
                              (np.concatenate([coo.row, extra, extra]), np.concatenate([coo.col, extra, extra[::-1]]))),
                             shape=w.shape)
    _same_result(dense, detect_communities(noisy, **kw))
    assert dense.outliers and dense.outlier_communities[0].tolist() == [2, 9, 17, 30]


def test_large_sparse_graph_needs_no_dense_matrix():
    """N = 10,006 images (a dense float64 graph would be 800 MB): 2,500 groups of 4 with
    edge weights 2 and 3 (density 2.5) and one clique of 6 at weight 9, the only outlier;
    Python-side allocations stay far below N^2."""
    import tracemalloc

    from scipy import sparse

    groups, n = 2500, 10_006
    ia, ib = np.triu_indices(4, k=1)
    base = 4 * np.arange(groups)[:, None]
    rows, cols = [(base + ia).ravel()], [(base + ib).ravel()]
    vals = [np.tile([2.0, 3.0], 3 * groups)]
    ca, cb = np.triu_indices(6, k=1)
    rows.append(4 * groups + ca), cols.append(4 * groups + cb), vals.append(np.full(ca.size, 9.0))
    r, c, v = np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)
    w = sparse.csr_array((np.concatenate([v, v]), (np.concatenate([r, c]), np.concatenate([c, r]))), shape=(n, n))
    tracemalloc.start()
    try:
        res = detect_communities(w, kappa=3.0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < n * n // 8  # 12.5 MB; the dense matrix alone would be 800 MB
    assert res.resolution == 2.0 and len(res.communities) == groups + 1
    assert [c.tolist() for c in res.outlier_communities] == [list(range(4 * groups, n))]
    assert res.densities[res.outliers[0]] == 9.0 and res.fence == 2.5


def test_rejects_bad_sparse_input():
    from scipy import sparse

    with pytest.raises(ValueError, match="symmetric"):
        detect_communities(sparse.csr_array(np.triu(np.ones((4, 4)), 1)))
    neg = -np.ones((4, 4))
    with pytest.raises(ValueError, match="non-negative"):
        detect_communities(sparse.csr_array(neg))
    inf = np.zeros((4, 4))
    inf[0, 1] = inf[1, 0] = np.inf
    with pytest.raises(ValueError, match="finite"):
        detect_communities(sparse.csr_array(inf))
    with pytest.raises(ValueError, match="square"):
        detect_communities(sparse.csr_array(np.ones((3, 4))))
    with pytest.raises(ValueError, match="square"):
        detect_communities(np.ones(4))
    near = np.ones((4, 4))
    near[0, 1] += 1e-9  # within np.allclose, accepted as the dense check accepted it
    detect_communities(sparse.csr_array(near))
