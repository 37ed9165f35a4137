"""End to end on constructed batches where the truth is known (tests/graph/synthetic.py)."""

import json

import numpy as np
import pytest

from codegraph_ad.graph import run_graph_stages
from codegraph_ad.graph.diagnostics import graph_layout, plot_excluded_patches, plot_graph, summarize

from .synthetic import toy_graph, batch_inputs, make_batch, make_score_fn, minima, patch_distances


def _assert_defined(result, n, m):
    assert result.excluded.shape == (n, m) and result.excluded.dtype == bool
    assert np.isfinite(result.links.weights.data).all()
    assert np.isfinite(result.communities.densities).all()
    assert 0.0 <= result.links.coverage <= 1.0
    for rec in result.filtering.records:
        assert not np.isnan(rec.dependency).any() or rec.skipped is not None
    json.dumps(summarize(result), allow_nan=False)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("min_size", [2, 3])
def test_planted_repeated_anomaly_is_found_and_filtered(seed, min_size):
    batch = make_batch(seed=seed)
    mins, score_fn = batch_inputs(batch)
    res = run_graph_stages(mins, toy_graph(min_community_size=min_size), score_fn)
    _assert_defined(res, 30, 64)
    assert len(res.outlier_communities) == 1
    np.testing.assert_array_equal(res.outlier_communities[0], batch.planted_images)
    planted = batch.planted_mask
    recall = (res.excluded & planted).sum() / planted.sum()
    assert recall >= 0.8
    assert (res.excluded & ~planted).sum() <= 6  # percentile 99: ~1% of the 300 normal patches of c
    # the planted links are the first ones selected
    first = res.links.link_image[: planted.sum()]
    assert set(first.tolist()) <= set(batch.planted_images.tolist())


def test_min_community_size_falls_back_to_pairs_without_enough_groups():
    """Here the only community of 3 or more images is a chance triple: Tukey quartiles over
    fewer than four values would be set by the candidate itself, so the size bound falls back
    to 2 and a defect copied in just two images is still flagged and filtered."""
    batch = make_batch(seed=1, planted_images=(3, 17))
    mins, score_fn = batch_inputs(batch)
    with_pairs = run_graph_stages(mins, toy_graph(), score_fn)
    assert [c.tolist() for c in with_pairs.outlier_communities] == [[3, 17]]
    assert (with_pairs.excluded & batch.planted_mask).any()
    strict = run_graph_stages(mins, toy_graph(min_community_size=3), score_fn)
    assert (strict.communities.sizes >= 3).sum() == 1 and strict.communities.min_size == 2
    np.testing.assert_array_equal(strict.excluded, with_pairs.excluded)
    assert summarize(strict)["quartiles"]["min_community_size"] == 2


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batch_without_repeated_anomalies_is_left_alone(seed):
    batch = make_batch(seed=seed, planted_images=(), random_anomalies=10)
    mins, score_fn = batch_inputs(batch)
    res = run_graph_stages(mins, toy_graph(), score_fn)
    _assert_defined(res, 30, 64)
    assert res.outlier_communities == []
    assert res.excluded.sum() == 0


def test_identical_images_zero_distances() -> None:
    """A batch of one image repeated holds no anomaly: every distance is 0, every endurance
    ratio is the documented 0/0 -> 1 ("no cliff"), and nothing may be flagged or excluded."""
    batch = make_batch(n=8, m=16, planted_images=(), seed=3)
    feats = [np.repeat(f[:1], 8, axis=0) for f in batch.feats]
    dists = [patch_distances(f) for f in feats]
    mins = [minima(d) for d in dists]
    assert np.all(mins[0][~np.isinf(mins[0])] < 1e-3)
    res = run_graph_stages(mins, toy_graph(), make_score_fn(dists))
    _assert_defined(res, 8, 16)
    assert res.links.zeta_cutoff == pytest.approx(1.0, abs=1e-3)
    assert res.outlier_communities == []
    assert not res.excluded.any()


def test_exact_duplicate_defect_is_filtered():
    """Zero-distance copies (s(x; B) = 0) must still count as dependent, not as ratio 1."""
    batch = make_batch(seed=4, anomaly_noise=0.0)
    # float rounding leaves ~5e-4 between identical unit vectors: make the copies exact
    dists = [np.where(patch_distances(f) < 1e-3, 0.0, patch_distances(f)) for f in batch.feats]
    mins, score_fn = [minima(d) for d in dists], make_score_fn(dists)
    assert score_fn(np.ones(30, dtype=bool), np.zeros((30, 64), dtype=bool))[batch.planted_mask].max() == 0
    res = run_graph_stages(mins, toy_graph(), score_fn)
    _assert_defined(res, 30, 64)
    assert (res.excluded & batch.planted_mask).sum() / batch.planted_mask.sum() >= 0.8


def test_repeated_anomaly_in_half_the_batch() -> None:
    """15 of 30 images share the defect. With k = ceil(0.3 N) = 9 its copies fill every rank
    up to k (no cliff, SPEC 4): the normal images must not pay for it (at most 1% of their
    patches excluded). With k_fraction = 0.6 (k = 18 > 14 copies) the cliff is before k and
    stages 1-2 must put exactly the planted images into one community."""
    batch = make_batch(planted_images=tuple(range(0, 30, 2)), seed=5)
    mins, score_fn = batch_inputs(batch)
    res = run_graph_stages(mins, toy_graph(kappa=1.5), score_fn)
    _assert_defined(res, 30, 64)
    assert res.k == 9
    assert (res.excluded & ~batch.planted_mask).sum() <= 0.01 * (~batch.planted_mask).sum()
    wide = run_graph_stages(mins, toy_graph(kappa=1.5, k_fraction=0.6), score_fn)
    assert wide.k == 18
    grouped = [c.tolist() for c in wide.communities.communities if set(c.tolist()) & set(range(0, 30, 2))]
    assert grouped == [list(range(0, 30, 2))]


def test_half_the_batch_identical_images() -> None:
    """15 copies of one normal image are duplicates, not anomalies: their ratios are 0/0 -> 1,
    so they must not form an outlier community, and nothing in the batch is excluded."""
    batch = make_batch(planted_images=(), seed=6)
    feats = [f.copy() for f in batch.feats]
    for f in feats:
        f[:15] = f[:1]
    dists = [patch_distances(f) for f in feats]
    res = run_graph_stages([minima(d) for d in dists], toy_graph(), make_score_fn(dists))
    _assert_defined(res, 30, 64)
    assert res.outlier_communities == []
    assert not res.excluded.any()


@pytest.mark.parametrize("n", [3, 4])
def test_tiny_batches(n: int) -> None:
    """Images 0 and 1 share the defect: k clips to 2, the pair holds the heaviest edge and one
    community; with one or two communities Tukey has no baseline, so nothing is excluded."""
    batch = make_batch(n=n, m=16, planted_images=(0, 1), planted_positions=(2, 3), seed=n)
    mins, score_fn = batch_inputs(batch)
    res = run_graph_stages(mins, toy_graph(), score_fn)
    assert res.k == 2
    _assert_defined(res, n, 16)
    w = res.links.weights
    assert w[0, 1] == w.max() > 0
    assert res.communities.membership[0] == res.communities.membership[1]
    assert res.outlier_communities == [] and not res.excluded.any()


def test_patch_mask_keeps_void_patches_out_of_the_links():
    batch = make_batch(seed=0)
    mins, score_fn = batch_inputs(batch)
    mask = ~batch.planted_mask
    res = run_graph_stages(mins, toy_graph(), score_fn, patch_mask=mask)
    assert mask[res.links.link_image, res.links.link_patch].all()
    assert not (res.excluded & batch.planted_mask).any()


def test_diagnostics_outputs(tmp_path):
    batch = make_batch(seed=0)
    mins, score_fn = batch_inputs(batch)
    res = run_graph_stages(mins, toy_graph(), score_fn)
    names = [f"img{i:02d}" for i in range(30)]
    s = summarize(res, names)
    text = json.dumps(s, allow_nan=False)
    assert s["outlier_communities"] == res.communities.outliers
    assert s["excluded_per_image"]["img03"] == int(res.excluded[3].sum())
    assert s["exclusion_rate"] == pytest.approx(res.excluded.mean())
    assert sum(e["weight"] for e in s["edges"]) == res.links.weights.sum() / 2
    assert "fence" in text
    p = plot_graph(res.links.weights, res.communities.membership, res.communities.outliers, names,
                   tmp_path / "graph.png")
    assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = np.full((64, 64, 3), 128, dtype=np.uint8)
    q = plot_excluded_patches(img, res.excluded[3].reshape(8, 8), tmp_path / "excl.png")
    from PIL import Image

    out = np.asarray(Image.open(q))
    assert out.shape == (64, 64, 3)
    assert (out[..., 0] > out[..., 1]).sum() == res.excluded[3].sum() * 64  # 8x8 px per patch
    # the layout separates two heavy cliques tied by one light edge
    w = np.zeros((12, 12))
    w[:6, :6] = w[6:, 6:] = 5.0
    np.fill_diagonal(w, 0.0)
    w[0, 6] = w[6, 0] = 1.0
    pos = graph_layout(w)
    centres = pos[:6].mean(axis=0), pos[6:].mean(axis=0)
    spread = max(np.linalg.norm(pos[:6] - centres[0], axis=1).max(), np.linalg.norm(pos[6:] - centres[1], axis=1).max())
    assert np.linalg.norm(centres[0] - centres[1]) > 3 * spread
    empty = plot_graph(np.zeros((4, 4)), np.arange(4), [], None, tmp_path / "empty.png")
    assert empty.exists()
