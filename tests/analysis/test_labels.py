"""Patch ground truth from a run folder: MVTec layout, explicit mask paths, grid pooling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from codegraph_ad.analysis.labels import image_labels, patch_truth
from codegraph_ad.io.masks import grid_shares, mvtec_mask_path


def test_grid_shares_matches_block_means():
    rng = np.random.default_rng(0)
    mask = rng.random((12, 8)) < 0.3
    got = grid_shares(mask, (3, 2))
    want = mask.reshape(3, 4, 2, 4).mean(axis=(1, 3)).reshape(-1)
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_truth_from_mvtec_layout_and_explicit_masks(tmp_path: Path):
    cat = tmp_path / "cat"
    for d in ("test/good", "test/cut", "ground_truth/cut"):
        (cat / d).mkdir(parents=True)
    img = np.zeros((8, 8, 3), np.uint8)
    good, bad = cat / "test/good/000.png", cat / "test/cut/000.png"
    Image.fromarray(img).save(good)
    Image.fromarray(img).save(bad)
    mask = np.zeros((8, 8), np.uint8)
    mask[:4, :4] = 255
    Image.fromarray(mask).save(cat / "ground_truth/cut/000_mask.png")
    other = tmp_path / "other_mask.png"
    Image.fromarray(255 - mask).save(other)
    assert mvtec_mask_path(good) is None and mvtec_mask_path(bad) == cat / "ground_truth/cut/000_mask.png"
    rows = [{"name": "g"}, {"name": "b"}, {"name": "c", "mask_paths": [str(other)]}]
    paths = [good, bad, tmp_path / "elsewhere.png"]
    truth = patch_truth(rows, paths, [(8, 8)] * 3, (2, 2), 0.5)
    assert truth.labels is None  # rows have no labels and the third path is not MVTec
    np.testing.assert_array_equal(truth.anomalous, [[0, 0, 0, 0], [1, 0, 0, 0], [0, 1, 1, 1]])
    assert image_labels(rows[:2], paths[:2]).tolist() == [0, 1]
    assert image_labels([{"label": 1}, {"label": 0}], paths[:2]).tolist() == [1, 0]
