import math

import numpy as np
import pytest

import codegraph_ad.graph.links as links_module
from codegraph_ad.graph.links import required_touched, select_links


def _naive(zeta, rank_images, target, batch, patch_mask=None):
    """Algorithm 1 as written: stable sort, then add batch after batch in a Python loop."""
    n, m, k1 = zeta.shape
    n_layers = rank_images.shape[0]
    valid = np.isfinite(zeta)
    if patch_mask is not None:
        valid &= patch_mask[:, :, None]
    order = [i for i in np.argsort(zeta.reshape(-1), kind="stable") if valid.reshape(-1)[i]]
    w = np.zeros((n, n))
    used, history, cov = 0, [], 0.0
    while used < len(order):
        for flat in order[used : used + batch]:
            q, p, i = np.unravel_index(flat, (n, m, k1))
            for l in range(n_layers):
                t = rank_images[l, q, p, i]
                w[q, t] += 1
                w[t, q] += 1
        used = min(used + batch, len(order))
        cov = float(np.mean((w > 0).any(axis=1)))
        history.append(cov)
        if cov >= target:
            break
    return w, used, cov, history


def _random_case(rng, n, m, k1, n_layers, ties, crowd, rare_rate=0.02):
    zeta = rng.uniform(0, 1, size=(n, m, k1)).astype(np.float32)
    if ties:
        zeta = (np.round(zeta * 4) / 4).astype(np.float32)
    ranks = np.empty((n_layers, n, m, k1 + 1), dtype=np.int16)
    for l in range(n_layers):
        for q in range(n):
            others = np.array([j for j in range(n) if j != q])
            if crowd:  # most links stay within a few images: coverage arrives late
                small = others[others < 3]
                pick = rng.choice(small, size=(m, k1 + 1))
                rare = rng.uniform(size=(m, k1 + 1)) < rare_rate
                pick[rare] = rng.choice(others, size=int(rare.sum()))
            else:
                pick = rng.choice(others, size=(m, k1 + 1))
            ranks[l, q] = pick
    if crowd:
        zeta[3:] += 0.5  # the outside images' own links come last
    return zeta, ranks


@pytest.mark.parametrize("case", range(24))
def test_matches_naive_batch_loop(case):
    rng = np.random.default_rng(case)
    n = int(rng.integers(4, 12))
    m = int(rng.integers(3, 40))
    k1 = int(rng.integers(1, 6))
    n_layers = int(rng.integers(1, 4))
    zeta, ranks = _random_case(rng, n, m, k1, n_layers, ties=case % 2 == 0, crowd=case % 3 == 0)
    target = float(rng.choice([0.5, 0.8, 0.95, 1.0]))
    batch = int(rng.choice([1, 2, 3, n, 7 * n]))
    mask = rng.uniform(size=(n, m)) < 0.8 if case % 4 == 1 else None
    got = select_links(zeta, ranks, target, batch, patch_mask=mask)
    w, used, cov, hist = _naive(zeta, ranks, target, batch, mask)
    np.testing.assert_array_equal(got.weights.toarray(), w)
    assert got.n_links == used
    assert got.coverage == pytest.approx(cov)
    np.testing.assert_allclose(got.coverage_history, hist)
    assert got.reached_target == (cov >= target)
    assert got.weights.sum() == 2 * n_layers * used


def test_many_growth_rounds_match_naive():
    """Forces the lazy prefix to grow several times (candidates >> the first prefix)."""
    rng = np.random.default_rng(99)
    zeta, ranks = _random_case(rng, n=8, m=200, k1=5, n_layers=2, ties=True, crowd=True, rare_rate=0.0)
    got = select_links(zeta, ranks, 1.0, 1)
    w, used, cov, _ = _naive(zeta, ranks, 1.0, 1)
    assert used > 4 * 64 * 8  # beyond the second prefix
    np.testing.assert_array_equal(got.weights.toarray(), w)
    assert got.n_links == used and got.coverage == cov
    order = np.argsort(zeta.reshape(-1), kind="stable")[:used]
    q, p, i = np.unravel_index(order, zeta.shape)
    np.testing.assert_array_equal(got.link_image, q)
    np.testing.assert_array_equal(got.link_patch, p)
    np.testing.assert_array_equal(got.link_rank, i + 1)
    assert got.zeta_cutoff == zeta.reshape(-1)[order[-1]]


def test_no_candidates_and_unreachable_target():
    rng = np.random.default_rng(3)
    zeta, ranks = _random_case(rng, 5, 4, 2, 2, ties=False, crowd=False)
    none = select_links(zeta, ranks, 0.95, patch_mask=np.zeros((5, 4), dtype=bool))
    assert none.n_links == 0 and none.coverage == 0.0 and none.weights.sum() == 0
    assert math.isnan(none.zeta_cutoff) and not none.reached_target
    ranks[:] = 1
    ranks[:, 1] = 0  # image 2..4 only ever link to 1; 0 and 1 link to each other
    zeta[2:] = np.inf  # ... and images 2..4 have no finite ratio at all
    out = select_links(zeta, ranks, 1.0, 3)
    assert out.n_links == 2 * 4 * 2 and out.coverage == pytest.approx(0.4)
    assert not out.reached_target


def test_required_touched_uses_the_loop_comparison():
    assert required_touched(20, 0.95) == 19
    assert required_touched(30, 0.95) == 29  # 28/30 = 0.9333
    assert required_touched(10, 1.0) == 10


def test_rejects_bad_input():
    z = np.ones((4, 3, 2), dtype=np.float32)
    r = np.zeros((1, 4, 3, 2), dtype=np.int16)
    with pytest.raises(ValueError, match="target_coverage"):
        select_links(z, r, 0.0)
    with pytest.raises(ValueError, match="links_per_batch"):
        select_links(z, r, 0.5, 0)
    with pytest.raises(ValueError, match="NaN"):
        select_links(np.full((4, 3, 2), np.nan, dtype=np.float32), r, 0.5)
    with pytest.raises(ValueError, match="rank_images"):
        select_links(z, r[:, :, :, :1], 0.5)


def _same_selection(a, b):
    np.testing.assert_array_equal(a.weights.toarray(), b.weights.toarray())
    for f in ("n_links", "coverage", "links_per_batch", "n_candidates", "reached_target"):
        assert getattr(a, f) == getattr(b, f), f
    np.testing.assert_array_equal(a.coverage_history, b.coverage_history)
    for f in ("link_image", "link_patch", "link_rank"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
    assert a.zeta_cutoff == b.zeta_cutoff or (math.isnan(a.zeta_cutoff) and math.isnan(b.zeta_cutoff))


@pytest.mark.parametrize("case", range(12))
def test_value_order_beyond_the_key_limit_equals_the_key_order(case, monkeypatch):
    """Above KEY_INDEX_LIMIT flat candidates the uint64 keys cannot index them; the value
    comparison order that replaces them must select exactly the same links, ties included."""
    rng = np.random.default_rng(100 + case)
    n, m, k1, n_layers = int(rng.integers(4, 12)), int(rng.integers(3, 60)), int(rng.integers(1, 5)), 2
    zeta, ranks = _random_case(rng, n, m, k1, n_layers, ties=True, crowd=case % 2 == 0, rare_rate=0.0)
    zeta[rng.uniform(size=zeta.shape) < 0.05] = np.inf
    zeta[rng.uniform(size=zeta.shape) < 0.05] = -0.0  # ties with +0.0
    mask = rng.uniform(size=(n, m)) < 0.8 if case % 3 == 1 else None
    target, batch = float(rng.choice([0.5, 0.9, 1.0])), int(rng.choice([1, 3, n]))
    fast = select_links(zeta, ranks, target, batch, patch_mask=mask)
    monkeypatch.setattr(links_module, "KEY_INDEX_LIMIT", 0)
    assert isinstance(links_module._candidate_order(zeta, None), links_module._ValueOrder)
    slow = select_links(zeta, ranks, target, batch, patch_mask=mask)
    _same_selection(fast, slow)


@pytest.mark.parametrize("key_slice", [1 << 20, 7])
def test_value_order_chunks_follow_value_then_flat_index(monkeypatch, key_slice):
    monkeypatch.setattr(links_module, "_KEY_SLICE", key_slice)  # keys built a few indices at a time
    rng = np.random.default_rng(7)
    flat = rng.integers(0, 5, 3000).astype(np.float32)  # heavy ties
    flat[rng.uniform(size=flat.size) < 0.1] = np.inf
    valid = rng.uniform(size=flat.size) < 0.9
    expect = [i for i in np.lexsort((np.arange(flat.size), flat)) if np.isfinite(flat[i]) and valid[i]]
    finite = np.where(np.isfinite(flat), flat, 0).astype(np.float32)
    unmasked = links_module._KeyOrder(finite, None)  # the path without an index list
    assert unmasked.next_chunk(flat.size).tolist() == list(np.lexsort((np.arange(flat.size), finite)))
    for order in (links_module._KeyOrder(flat.copy(), valid), links_module._ValueOrder(flat.copy(), valid)):
        got, sizes = [], iter([1, 7, 100, 3, 1000, 5000])
        while len(got) < order.n_candidates:
            got.extend(order.next_chunk(next(sizes)).tolist())
        assert order.n_candidates == len(expect) and got == expect
        assert order.next_chunk(10).size == 0


def test_weights_are_sparse_at_a_size_where_dense_would_not_be_small():
    """N = 3000 images, M = 2 patches, 2 candidates each: the graph holds at most 2 L n_links
    entries, and building it never allocates anything near N * N."""
    import tracemalloc

    from scipy import sparse

    rng = np.random.default_rng(0)
    n, m, k1, n_layers = 3000, 2, 2, 2
    zeta = rng.uniform(0, 1, size=(n, m, k1)).astype(np.float32)
    ranks = (np.arange(n)[None, :, None, None] + rng.integers(1, n, size=(n_layers, n, m, k1))) % n
    tracemalloc.start()
    try:
        got = select_links(zeta, ranks.astype(np.int32), 0.95)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    w = got.weights
    assert isinstance(w, sparse.csr_array) and w.shape == (n, n) and w.dtype == np.float64
    assert w.has_canonical_format and 0 < w.nnz <= 2 * n_layers * got.n_links < n * m * k1 * 2 * n_layers
    assert peak < n * n  # under one byte per image pair; the dense float64 graph is 72 MB
    assert (w != w.T).nnz == 0 and w.diagonal().sum() == 0  # ranks never name the query itself
    assert w.sum() == 2 * n_layers * got.n_links
    q, t = got.link_image, ranks[0, got.link_image, got.link_patch, got.link_rank - 1]
    assert (w[q, t] > 0).all()


@pytest.mark.parametrize("case", range(12))
def test_query_shards_merged_select_the_same_links(case):
    """Query ranges ordered apart and merged (the Ray shards' path) give select_links' result."""
    from codegraph_ad.graph.links import LocalCandidates, MergedCandidates, check_link_inputs, select_links_from

    rng = np.random.default_rng(100 + case)
    n = int(rng.integers(5, 14))
    m = int(rng.integers(3, 30))
    k1 = int(rng.integers(1, 5))
    zeta, ranks = _random_case(rng, n, m, k1, int(rng.integers(1, 4)), ties=bool(case % 2), crowd=case % 3 == 0)
    mask = rng.uniform(size=(n, m)) < 0.8 if case % 4 == 1 else None
    batch = int(rng.integers(1, 3 * n))
    want = select_links(zeta, ranks, 0.9, batch, mask)
    cuts = np.unique(np.concatenate([[0, n], rng.integers(1, n, size=int(rng.integers(0, 4)))]))
    streams = []
    for q0, q1 in zip(cuts[:-1], cuts[1:]):
        z, r, valid = check_link_inputs(zeta[q0:q1], ranks[:, q0:q1], None if mask is None else mask[q0:q1])
        streams.append(LocalCandidates(z, r, valid, offset=int(q0) * m * k1))
    asked = []

    def fetch(counts):
        asked.append(list(counts))
        return [st.next_chunk(c) if c else None for st, c in zip(streams, counts)]

    got = select_links_from(MergedCandidates([s.n_candidates for s in streams], fetch), (n, m, k1), 0.9, batch)
    assert got.n_links == want.n_links and got.n_candidates == want.n_candidates
    for name in ("link_image", "link_patch", "link_rank", "coverage_history"):
        assert np.array_equal(getattr(got, name), getattr(want, name)), name
    assert (got.weights != want.weights).nnz == 0
    assert got.zeta_cutoff == want.zeta_cutoff or (math.isnan(got.zeta_cutoff) and math.isnan(want.zeta_cutoff))
    assert all(c <= max(16 * batch, 64 * n, want.n_links) * 4 for a in asked for c in a)
