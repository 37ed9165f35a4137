"""NIfTI reading: canonical orientation, clear errors naming the file, exact round trips."""

from __future__ import annotations

import gzip
import struct

import nibabel as nib
import numpy as np
import pytest

from codegraph_ad.errors import InputError
from codegraph_ad.volumes.nifti import (
    discover_volumes,
    load_mask_like,
    load_nifti,
    nifti_stem,
    to_file_orientation,
    write_like,
    write_nifti,
)
from tests.volumes.helpers import lps_affine, save


def test_reorients_to_ras_and_back(tmp_path):
    data = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6) + 1
    path = save(tmp_path / "a.nii.gz", data, lps_affine())
    vol = load_nifti(path)
    expected = np.asarray(nib.as_closest_canonical(nib.load(str(path))).dataobj)
    np.testing.assert_array_equal(vol.data, expected)
    assert vol.geometry.canonical_shape == vol.data.shape
    assert vol.geometry.zooms == pytest.approx((1.2, 1.0, 1.5))
    np.testing.assert_array_equal(to_file_orientation(vol.data, vol.geometry), data)


def test_permuted_axes_zooms(tmp_path):
    # File axes (P, S, R) as the IXI files: canonical order is R, A, S.
    affine = np.array([[0, 0, 2.0, 0], [-1.0, 0, 0, 0], [0, 3.0, 0, 0], [0, 0, 0, 1]])
    vol = load_nifti(save(tmp_path / "p.nii", np.ones((4, 5, 6), np.float32), affine))
    assert vol.data.shape == (6, 4, 5)
    assert vol.geometry.zooms == pytest.approx((2.0, 1.0, 3.0))


def test_written_map_has_input_shape_and_affine(tmp_path):
    data = np.random.default_rng(0).random((7, 8, 9)).astype(np.float32) + 0.1
    src = save(tmp_path / "in.nii.gz", data, lps_affine())
    vol = load_nifti(src)
    out = write_like(tmp_path / "out" / "map.nii.gz", vol.data * 2, vol.geometry)
    back = nib.load(str(out))
    assert back.shape == data.shape
    np.testing.assert_allclose(back.affine, nib.load(str(src)).affine)
    np.testing.assert_allclose(back.get_fdata(), data * 2, rtol=1e-6)


def test_write_nifti_plain_and_gz(tmp_path):
    a = np.eye(4)
    for name in ("x.nii", "x.nii.gz"):
        p = write_nifti(tmp_path / name, np.zeros((2, 3, 4), np.uint8), a)
        assert nib.load(str(p)).shape == (2, 3, 4)
    with open(tmp_path / "x.nii.gz", "rb") as fh:
        assert fh.read(2) == b"\x1f\x8b"


def test_garbage_file_names_the_file(tmp_path):
    bad = tmp_path / "broken.nii"
    bad.write_bytes(b"this is not a nifti header" * 20)
    with pytest.raises(InputError, match="broken.nii"):
        load_nifti(bad)


def test_truncated_gzip_names_the_file(tmp_path):
    good = save(tmp_path / "t.nii.gz", np.ones((10, 10, 10), np.float32))
    raw = good.read_bytes()
    cut = tmp_path / "cut.nii.gz"
    cut.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(InputError, match="cut.nii.gz"):
        load_nifti(cut)


@pytest.mark.parametrize(
    "offset,value",
    [(70, struct.pack("<h", 999)),  # datatype code
     (40, struct.pack("<h", 9)),  # dim[0] must be 1..7
     (344, b"xxxx")],  # magic
)
def test_wrong_header_names_the_file(tmp_path, offset, value):
    img = nib.Nifti1Image(np.ones((4, 4, 4), np.float32), np.eye(4))
    raw = bytearray(img.to_bytes())
    raw[offset:offset + len(value)] = value
    bad = tmp_path / "hdr.nii.gz"
    bad.write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(InputError, match=r"hdr\.nii\.gz: not a readable NIfTI file"):
        load_nifti(bad)


def test_nan_volume_names_the_file(tmp_path):
    data = np.ones((5, 5, 5), np.float32)
    data[1:3] = np.nan
    path = save(tmp_path / "nan.nii.gz", data)
    with pytest.raises(InputError, match=r"nan\.nii\.gz: 50 of 125 voxels are NaN"):
        load_nifti(path)


def test_all_nan_and_all_zero_and_wrong_dims(tmp_path):
    with pytest.raises(InputError, match="allnan.nii.gz.*NaN"):
        load_nifti(save(tmp_path / "allnan.nii.gz", np.full((4, 4, 4), np.nan, np.float32)))
    with pytest.raises(InputError, match="zero.nii.gz.*every voxel is 0"):
        load_nifti(save(tmp_path / "zero.nii.gz", np.zeros((4, 4, 4), np.float32)))
    with pytest.raises(InputError, match="four.nii.gz.*3D"):
        load_nifti(save(tmp_path / "four.nii.gz", np.ones((4, 4, 4, 2), np.float32)))
    with pytest.raises(InputError, match="missing.nii.gz: no such file"):
        load_nifti(tmp_path / "missing.nii.gz")


def test_degenerate_affine(tmp_path):
    img = nib.Nifti1Image(np.ones((4, 4, 4), np.float32), np.eye(4))
    img.set_sform(np.diag([1.0, 0.0, 1.0, 1.0]), code=1)
    img.set_qform(None, code=0)
    nib.save(img, str(tmp_path / "flat.nii.gz"))
    with pytest.raises(InputError, match="flat.nii.gz: the header's affine is degenerate"):
        load_nifti(tmp_path / "flat.nii.gz")


def test_mask_must_match_grid(tmp_path):
    vol = load_nifti(save(tmp_path / "v.nii.gz", np.ones((4, 5, 6), np.float32), lps_affine()))
    m = np.zeros((4, 5, 6), np.uint8)
    m[0, 0, 0] = 3
    mask = load_mask_like(save(tmp_path / "m.nii.gz", m, lps_affine()), vol.geometry)
    assert mask.dtype == bool and mask.sum() == 1 and mask.shape == vol.data.shape
    with pytest.raises(InputError, match="m2.nii.gz: mask shape"):
        load_mask_like(save(tmp_path / "m2.nii.gz", np.zeros((4, 5, 7), np.uint8), lps_affine()), vol.geometry)
    with pytest.raises(InputError, match="m3.nii.gz: mask affine"):
        load_mask_like(save(tmp_path / "m3.nii.gz", m, np.eye(4)), vol.geometry)


def test_discovery_and_stems(tmp_path):
    save(tmp_path / "b" / "x.nii.gz", np.ones((2, 2, 2), np.float32))
    save(tmp_path / "a.nii", np.ones((2, 2, 2), np.float32))
    (tmp_path / "notes.txt").write_text("x")
    found = discover_volumes(tmp_path)
    assert [p.name for p in found] == ["a.nii", "x.nii.gz"]
    assert [nifti_stem(p) for p in found] == ["a", "x"]
    with pytest.raises(InputError, match="no such file or folder"):
        discover_volumes(tmp_path / "nope")
