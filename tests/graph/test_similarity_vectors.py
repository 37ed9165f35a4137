import numpy as np
import pytest

from codegraph_ad.errors import BatchTooSmallError
from codegraph_ad.graph.similarity_vectors import mutual_similarity_vectors


def _random_mins(rng, n, m, n_layers):
    mins = [rng.uniform(0.1, 2.0, size=(n, n, m)).astype(np.float32) for _ in range(n_layers)]
    for a in mins:
        a[np.arange(n), np.arange(n), :] = np.inf
    return mins


def _brute(mins, r):
    """Python loops: sort the N-1 other images of every (layer, image, patch)."""
    n_layers, (n, _, m) = len(mins), mins[0].shape
    vals = np.zeros((n_layers, n, m, r))
    imgs = np.zeros((n_layers, n, m, r), dtype=int)
    for l in range(n_layers):
        for q in range(n):
            for p in range(m):
                pairs = sorted((float(mins[l][q, j, p]), j) for j in range(n) if j != q)[:r]
                vals[l, q, p] = [v for v, _ in pairs]
                imgs[l, q, p] = [j for _, j in pairs]
    return vals, imgs


@pytest.mark.parametrize("max_rank", [None, 1, 3, 6])
def test_matches_brute_force(max_rank):
    rng = np.random.default_rng(1)
    mins = _random_mins(rng, n=8, m=5, n_layers=3)
    sim = mutual_similarity_vectors(mins, max_rank)
    r = 7 if max_rank is None else max_rank
    vals, imgs = _brute(mins, r)
    assert sim.sorted_per_layer.shape == (3, 8, 5, r) and sim.sorted_per_layer.dtype == np.float32
    np.testing.assert_allclose(sim.sorted_per_layer, vals, rtol=1e-6)
    np.testing.assert_array_equal(sim.rank_images, imgs)
    np.testing.assert_allclose(sim.dbar, vals.mean(axis=0), rtol=1e-6)
    assert np.all(np.diff(sim.dbar, axis=-1) >= 0)


def test_diagonal_is_ignored_whatever_it_holds():
    rng = np.random.default_rng(2)
    mins = _random_mins(rng, n=5, m=4, n_layers=2)
    zero_diag = [a.copy() for a in mins]
    for a in zero_diag:
        a[np.arange(5), np.arange(5), :] = 0.0
    a, b = mutual_similarity_vectors(mins), mutual_similarity_vectors(zero_diag)
    np.testing.assert_array_equal(a.rank_images, b.rank_images)
    assert not np.any(a.rank_images == np.arange(5)[None, :, None, None])


def test_zero_distances_are_defined():
    mins = [np.zeros((4, 4, 3), dtype=np.float32)]
    sim = mutual_similarity_vectors(mins)
    assert np.all(sim.dbar == 0) and np.isfinite(sim.dbar).all()
    assert not np.any(sim.rank_images == np.arange(4)[None, :, None, None])


def test_rejects_bad_input():
    with pytest.raises(BatchTooSmallError):
        mutual_similarity_vectors([np.zeros((2, 2, 3))])
    with pytest.raises(ValueError, match="shape"):
        mutual_similarity_vectors([np.zeros((4, 4, 3)), np.zeros((4, 4, 2))])
    bad = np.ones((4, 4, 3))
    bad[0, 1, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        mutual_similarity_vectors([bad])
    with pytest.raises(ValueError, match="max_rank"):
        mutual_similarity_vectors([np.ones((4, 4, 3))], max_rank=4)


def test_query_chunks_give_the_same_vectors(monkeypatch) -> None:
    """Rows of queries are sorted a few at a time (bounded temporaries): same result."""
    import importlib

    module = importlib.import_module("codegraph_ad.graph.similarity_vectors")
    rng = np.random.default_rng(3)
    mins = [rng.random((9, 9, 5)).astype(np.float32) for _ in range(2)]
    whole = module.mutual_similarity_vectors(mins, max_rank=4)
    monkeypatch.setattr(module, "_CHUNK_ENTRIES", 2 * 5 * 9)  # two query images per chunk
    chunked = module.mutual_similarity_vectors(mins, max_rank=4)
    assert np.array_equal(whole.sorted_per_layer, chunked.sorted_per_layer)
    assert np.array_equal(whole.rank_images, chunked.rank_images)
    refs = np.sort(np.stack([rng.choice([j for j in range(9) if j != q], 4, replace=False) for q in range(9)]), axis=1)
    listed = [m[np.arange(9)[:, None], refs] for m in mins]
    a = module.mutual_similarity_vectors(listed, max_rank=3, refs=refs)
    monkeypatch.setattr(module, "_CHUNK_ENTRIES", 10**9)
    b = module.mutual_similarity_vectors(listed, max_rank=3, refs=refs)
    assert np.array_equal(a.rank_images, b.rank_images) and np.array_equal(a.dbar, b.dbar)


@pytest.mark.parametrize("with_refs", [False, True])
def test_layer_mean_without_the_per_layer_array_is_bit_identical(monkeypatch, with_refs) -> None:
    """The graph stages keep only the layer mean and rank images; the mean taken chunk by
    chunk must equal the float64 mean of the stacked per-layer vectors exactly."""
    import importlib

    module = importlib.import_module("codegraph_ad.graph.similarity_vectors")
    rng = np.random.default_rng(11)
    n, m, layers = 10, 7, 4
    mins = [rng.random((n, n, m)).astype(np.float32) for _ in range(layers)]
    refs = None
    if with_refs:
        refs = np.sort(np.stack([rng.choice([j for j in range(n) if j != q], 6, replace=False)
                                 for q in range(n)]), axis=1)
        mins = [x[np.arange(n)[:, None], refs] for x in mins]
    monkeypatch.setattr(module, "_CHUNK_ENTRIES", 3 * m * mins[0].shape[1])  # 3 queries per chunk
    kept = module.mutual_similarity_vectors(mins, max_rank=5, refs=refs)
    lean = module.mutual_similarity_vectors(mins, max_rank=5, refs=refs, keep_per_layer=False)
    assert lean.sorted_per_layer is None
    assert np.array_equal(lean.dbar, kept.sorted_per_layer.mean(axis=0, dtype=np.float64).astype(np.float32))
    assert np.array_equal(lean.dbar, kept.dbar) and np.array_equal(lean.rank_images, kept.rank_images)
