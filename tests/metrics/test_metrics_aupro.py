"""Exact AUPRO against a threshold-by-threshold brute force and hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
from metrics_brute import aupro_brute

from codegraph_ad.metrics import aupro
from codegraph_ad.metrics.aupro import region_weights


def _random_masks(rng: np.random.Generator, n: int, h: int, w: int) -> np.ndarray:
    """Blobby masks with several regions per image and some all-normal images."""
    masks = rng.random((n, h, w)) < 0.12
    masks[rng.random(n) < 0.3] = False  # all-normal images mixed in
    masks[0, 1:4, 1:3] = True  # at least one region
    return masks


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("limit", [0.3, 0.05, 1.0])
def test_matches_brute_force(seed: int, limit: float) -> None:
    rng = np.random.default_rng(seed)
    masks = _random_masks(rng, 3, 9, 11)
    maps = rng.random(masks.shape) + 0.6 * masks
    if seed % 2:
        maps = np.round(maps, 1)  # heavy ties
    assert aupro(maps, masks, fpr_limit=limit) == pytest.approx(aupro_brute(maps, masks, limit), abs=1e-12)


def test_hand_computed_value() -> None:
    # One region of area 2, three background pixels. Curve (fpr, pro):
    # (0,0) (0,.5) (1/3,.5) (1/3,1) ... -> area to 0.3 = 0.3 * 0.5, normalised: 0.5.
    masks = np.array([[[True, True, False, False, False]]])
    maps = np.array([[[0.9, 0.5, 0.7, 0.1, 0.0]]])
    assert aupro(maps, masks) == pytest.approx(0.5)


def test_eight_connected_diagonal_regions_are_one() -> None:
    mask = np.zeros((1, 6, 6), dtype=bool)
    mask[0, 1, 1] = mask[0, 2, 2] = mask[0, 3, 3] = True  # diagonal chain: 1 region (8-conn), 3 (4-conn)
    mask[0, 5, 0] = True  # a separate region
    _, n_regions = region_weights(mask)
    assert n_regions == 2
    rng = np.random.default_rng(3)
    maps = rng.random(mask.shape)
    maps[0, 1, 1] = 5.0  # one diagonal pixel found first: 1/3 of one region (8-conn) vs all of one (4-conn)
    got = aupro(maps, mask)
    assert got == pytest.approx(aupro_brute(maps, mask, connectivity=2), abs=1e-12)
    assert got != pytest.approx(aupro_brute(maps, mask, connectivity=1), abs=1e-6)


def test_regions_do_not_join_across_images() -> None:
    masks = np.zeros((2, 4, 4), dtype=bool)
    masks[:, 1:3, 1:3] = True  # same place in two images: two regions, not one
    weights, n_regions = region_weights(masks)
    assert n_regions == 2
    assert np.allclose(weights[masks], 0.25)


def test_one_region_and_many_regions() -> None:
    rng = np.random.default_rng(11)
    one = np.zeros((2, 8, 8), dtype=bool)
    one[0, 2:5, 3:7] = True
    maps = rng.random(one.shape) + one * 0.3
    assert aupro(maps, one) == pytest.approx(aupro_brute(maps, one), abs=1e-12)
    many = np.zeros((1, 12, 12), dtype=bool)
    many[0, ::3, ::3] = True  # 16 isolated single-pixel regions
    many[0, 11, 0:2] = True  # a two-pixel region, not touching the others
    maps = rng.random(many.shape)
    assert region_weights(many)[1] == 17
    assert aupro(maps, many) == pytest.approx(aupro_brute(maps, many), abs=1e-12)


def test_perfect_inverted_and_constant() -> None:
    masks = np.zeros((2, 6, 6), dtype=bool)
    masks[0, 1:3, 1:4] = True
    masks[0, 4, 4:6] = True
    perfect = masks.astype(float)
    assert aupro(perfect, masks) == 1.0
    assert aupro(1.0 - perfect, masks) == 0.0
    # All scores equal: the curve jumps from (0,0) to (1,1); the straight line to FPR 0.3 gives 0.15.
    assert aupro(np.full(masks.shape, 0.4), masks) == pytest.approx(0.15)


def test_undefined_cases_return_none() -> None:
    maps = np.random.default_rng(0).random((2, 4, 4))
    assert aupro(maps, np.zeros((2, 4, 4), dtype=bool)) is None
    assert aupro(maps, np.ones((2, 4, 4), dtype=bool)) is None


def test_single_image_and_validation() -> None:
    mask = np.zeros((5, 5), dtype=bool)
    mask[1:3, 1:3] = True
    maps = mask * 1.0
    assert aupro(maps, mask) == 1.0
    with pytest.raises(ValueError, match="fpr_limit"):
        aupro(maps, mask, fpr_limit=0.0)
    with pytest.raises(ValueError, match="fpr_limit"):
        aupro(maps, mask, fpr_limit=1.5)
    with pytest.raises(ValueError, match="shape|\\(N,H,W\\)"):
        aupro(maps, mask[:4])
