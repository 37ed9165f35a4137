"""Cube preparation: brain box, resampling, intensity scaling, Nyul standardisation, warnings."""

from __future__ import annotations

import numpy as np
import pytest

from codegraph_ad.volumes.nifti import load_nifti
from codegraph_ad.volumes.preprocess import (
    NYUL_LANDMARKS,
    NotSkullStrippedWarning,
    brain_box,
    histogram_standardise,
    nyul_landmarks,
    percentile_scale,
    prepare_cube,
)
from tests.volumes.helpers import brain_volume, save


def test_brain_box_with_margin_and_clipping():
    m = np.zeros((10, 12, 14), bool)
    m[2:5, 0:3, 9:14] = True
    lo, hi = brain_box(m, 1)
    assert lo == (1, 0, 8) and hi == (6, 4, 14)


def test_percentile_scale_brute_force():
    rng = np.random.default_rng(0)
    img = rng.random((6, 6, 6)).astype(np.float32) * 100
    brain = img > 20
    out = percentile_scale(img, brain, (5.0, 95.0), white_level=0.75)
    lo, hi = np.percentile(img[brain], (5.0, 95.0))
    expected = np.where(brain, np.clip((img - lo) / (hi - lo) * 0.75, 0, 1), 0)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_prepare_cube_shapes_and_range(tmp_path):
    vol, _ = brain_volume()
    cube = prepare_cube(load_nifti(save(tmp_path / "v.nii.gz", vol)), 28, margin=0)
    assert cube.image.shape == cube.brain.shape == (28, 28, 28)
    assert 0.0 <= cube.image.min() and cube.image.max() <= 1.0
    assert not cube.image[~cube.brain].any()
    # The brain box fills the cube: the brain reaches every face.
    for ax in range(3):
        assert cube.brain.any(axis=tuple(a for a in range(3) if a != ax))[[0, -1]].all()
    assert cube.canonical_shape == vol.shape


def test_crop_none_keeps_field_of_view(tmp_path):
    vol, _ = brain_volume()
    cube = prepare_cube(load_nifti(save(tmp_path / "v.nii.gz", vol)), 28, crop="none")
    assert cube.box == ((0, 0, 0), vol.shape)
    with pytest.raises(ValueError, match="crop must be"):
        prepare_cube(load_nifti(tmp_path / "v.nii.gz"), 28, crop="middle")


def test_warns_when_not_skull_stripped(tmp_path):
    vol = np.random.default_rng(0).random((12, 12, 12)).astype(np.float32) + 0.1
    with pytest.warns(NotSkullStrippedWarning, match="head.nii.gz.*not skull-stripped"):
        prepare_cube(load_nifti(save(tmp_path / "head.nii.gz", vol)), 28)


def test_warns_when_head_reaches_the_borders(tmp_path):
    vol = np.zeros((20, 20, 20), np.float32)
    vol[:, :, 12:] = 1.0  # 60% background, but a "neck" through five faces
    with pytest.warns(NotSkullStrippedWarning, match="faces of the field of view"):
        prepare_cube(load_nifti(save(tmp_path / "neck.nii.gz", vol)), 28)


@pytest.mark.realdata
def test_real_unstripped_head_warns(mri_dir):
    with pytest.warns(NotSkullStrippedWarning, match="IXI012"):
        prepare_cube(load_nifti(mri_dir / "ixi_small" / "IXI012-HH-1211_T1.nii.gz"), 28)


def test_no_warning_for_skull_stripped(tmp_path, recwarn):
    vol, _ = brain_volume()
    prepare_cube(load_nifti(save(tmp_path / "v.nii.gz", vol)), 28)
    assert not [w for w in recwarn if issubclass(w.category, NotSkullStrippedWarning)]


def test_histogram_standardisation_aligns_landmarks(tmp_path):
    cubes = []
    for i, gamma in enumerate((0.6, 1.0, 1.6)):
        vol, _ = brain_volume(seed=i)
        cube = prepare_cube(load_nifti(save(tmp_path / f"v{i}.nii.gz", vol)), 28)
        cube.image = np.where(cube.brain, cube.image ** gamma, 0).astype(np.float32)
        cubes.append(cube)
    before = np.stack([nyul_landmarks(c.image, c.brain) for c in cubes])
    standard = histogram_standardise(cubes)
    after = np.stack([nyul_landmarks(c.image, c.brain) for c in cubes])
    assert standard.shape == (len(NYUL_LANDMARKS),)
    assert np.abs(after - standard).max() < 0.25 * np.abs(before - standard).max()
    assert all(not c.image[~c.brain].any() for c in cubes)
