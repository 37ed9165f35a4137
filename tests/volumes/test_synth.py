"""Synthetic subjects: deformation identity, lesion geometry and contrast, determinism."""

from __future__ import annotations

import numpy as np

from codegraph_ad.volumes.config import LesionConfig
from codegraph_ad.volumes.synth import (
    Deformation,
    Lesion,
    apply_deformation,
    insert_lesion,
    lesion_weight,
    random_deformation,
    random_lesion,
    smooth_noise,
)


def test_smooth_noise_range_and_seed():
    a = smooth_noise((20, 22, 18), 4.0, np.random.default_rng(1))
    b = smooth_noise((20, 22, 18), 4.0, np.random.default_rng(1))
    assert a.shape == (20, 22, 18)
    np.testing.assert_array_equal(a, b)
    assert abs(float(np.abs(a).max()) - 1.0) < 1e-6


def test_identity_deformation_is_identity():
    vol = np.random.default_rng(0).random((9, 10, 11)).astype(np.float32)
    d = Deformation(np.eye(3), np.zeros(3), np.zeros((3, 9, 10, 11), np.float32))
    np.testing.assert_allclose(apply_deformation(vol, d), vol, atol=1e-6)


def test_random_deformation_amplitude():
    d = random_deformation((20, 20, 20), 2.0, 3.0, (0.96, 1.04), 4.0, 10.0, np.random.default_rng(0))
    assert np.abs(d.field).max() <= 4.0 / 2.0 + 1e-5
    scales = np.linalg.svd(d.matrix)[1]  # singular values = 1 / per-axis scale
    assert np.all((scales > 1 / 1.04 - 1e-6) & (scales < 1 / 0.96 + 1e-6))


def test_lesion_size_matches_the_ellipsoid():
    cfg = LesionConfig(irregularity=0.0, texture=0.0, edge_mm=1.0)
    les = Lesion((20.0, 20.0, 20.0), (16.0, 12.0, 10.0), 0.3, (0.0, 0.0, 0.0), 0)
    w, window = lesion_weight((40, 40, 40), les, 1.0, cfg)
    expected = 4 / 3 * np.pi * 8 * 6 * 5
    assert abs(float((w >= 0.5).sum()) - expected) / expected < 0.1


def test_insert_lesion_changes_intensity_by_contrast():
    img = np.full((30, 30, 30), 100.0, np.float32)
    brain = np.ones_like(img, bool)
    cfg = LesionConfig(texture=0.0)
    les = Lesion((15.0, 15.0, 15.0), (12.0, 10.0, 10.0), -0.25, (10.0, 0.0, 5.0), 3)
    out, mask = insert_lesion(img, brain, les, 1.0, cfg, np.random.default_rng(0))
    assert mask.sum() > 100
    core = out[mask & (np.abs(out - 75.0) < 1.0)]
    assert core.size > 0.3 * mask.sum()
    assert np.all(out[~mask] >= 75.0 - 1e-4)
    far = np.ones_like(mask)
    far[5:25, 5:25, 5:25] = False
    np.testing.assert_allclose(out[far], 100.0)


def test_random_lesion_lies_in_the_brain():
    brain = np.zeros((40, 40, 40), bool)
    brain[5:35, 5:35, 5:35] = True
    cfg = LesionConfig()
    for seed in range(5):
        les = random_lesion(brain, 1.0, cfg, np.random.default_rng(seed))
        assert brain[tuple(int(round(c)) for c in les.centre)]
        assert cfg.diameter_mm[0] <= max(les.diameters_mm) <= cfg.diameter_mm[1]
        assert cfg.contrast[0] <= abs(les.contrast) <= cfg.contrast[1]
