"""SynCA perturbations against hand-computed expectations."""

from __future__ import annotations

import numpy as np

from codegraph_ad.datasets.transforms import add_noise, jitter, sampling_grid, warp


def _marker(h: int = 21, w: int = 21) -> np.ndarray:
    """Black image with one white pixel 6 px right of the centre."""
    img = np.zeros((h, w), dtype=np.uint8)
    img[h // 2, w // 2 + 6] = 255
    return img


def test_identity_warp_returns_the_input():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (13, 17, 3), dtype=np.uint8)
    assert np.array_equal(warp(img, sampling_grid((13, 17), 0.0, (0.0, 0.0))), img)
    assert np.array_equal(warp(img, sampling_grid((13, 17), 0.0, (0.0, 0.0)), nearest=True), img)


def test_rotation_is_counter_clockwise_on_screen_and_shift_moves_right_and_down():
    rotated = warp(_marker(), sampling_grid((21, 21), 90.0, (0.0, 0.0)), nearest=True)
    assert np.argwhere(rotated == 255).tolist() == [[10 - 6, 10]]  # right of centre -> above it
    shifted = warp(_marker(), sampling_grid((21, 21), 0.0, (2.0, 3.0)), nearest=True)
    assert np.argwhere(shifted == 255).tolist() == [[13, 18]]


def test_reflection_padding_mirrors_the_frame():
    img = np.arange(10, dtype=np.uint8)[None, :].repeat(4, axis=0) * 20
    out = warp(img, sampling_grid((4, 10), 0.0, (3.0, 0.0)), nearest=True)
    # Shifting right by 3 pulls columns -3..-1 from outside: mirrored at the left edge.
    assert out[0].tolist() == [v * 20 for v in (2, 1, 0, 0, 1, 2, 3, 4, 5, 6)]


def test_mask_and_image_share_the_geometry():
    img = np.zeros((40, 40, 3), dtype=np.uint8)
    mask = np.zeros((40, 40), dtype=bool)
    img[10:16, 22:30] = 255
    mask[10:16, 22:30] = True
    grid = sampling_grid((40, 40), 23.0, (-3.5, 4.2))
    out_img, out_mask = warp(img, grid, nearest=True), warp(mask, grid, nearest=True)
    assert out_mask.dtype == bool and out_mask.sum() > 30
    assert np.array_equal(out_img[..., 0] == 255, out_mask)


def test_jitter_with_unit_factors_is_identity_and_zero_saturation_is_grey():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    assert np.array_equal(jitter(img, 1.0, 1.0, 1.0), img)
    grey = jitter(img, 1.0, 1.0, 0.0).astype(int)
    assert np.abs(grey[..., 0] - grey[..., 1]).max() <= 1 and np.abs(grey[..., 1] - grey[..., 2]).max() <= 1
    brighter = jitter(np.full((2, 2, 3), 100, np.uint8), 1.5, 1.0, 1.0)
    assert (brighter == 150).all()
    flat = jitter(img, 1.0, 0.0, 1.0).astype(int)  # zero contrast: every pixel at the mean grey
    assert flat.max() - flat.min() <= 1


def test_noise_is_seeded_and_hits_one_percent_of_pixels():
    img = np.full((50, 40, 3), 128, dtype=np.uint8)
    a = add_noise(img, 0.0, 0.01, [0, 2, 5])
    assert np.array_equal(a, add_noise(img, 0.0, 0.01, [0, 2, 5]))
    changed = (a != 128).any(axis=2)
    assert changed.sum() == 20  # 1% of 2000 pixels
    assert ((a[changed] == 0).all(axis=1) | (a[changed] == 255).all(axis=1)).all()
    noisy = add_noise(img, 0.05, 0.0, 3).astype(float)
    assert 8 < noisy.std() < 18  # sigma 0.05 * 255 = 12.75
