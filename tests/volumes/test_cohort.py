"""Cohort builder: layout, labels, masks, determinism, refusal to overwrite, source checks."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from codegraph_ad.errors import InputError
from codegraph_ad.volumes.cohort import build_cohort, load_source
from codegraph_ad.volumes.config import CohortConfig, LesionConfig
from tests.volumes.helpers import brain_volume, save


@pytest.fixture
def source(tmp_path):
    vol, _ = brain_volume(shape=(44, 50, 40))
    return save(tmp_path / "src" / "brain.nii.gz", vol, np.diag([2.0, 2.0, 2.0, 1.0]))


def _config(source, **kw) -> CohortConfig:
    base = dict(sources=(str(source),), voxel_mm=3.0, n_healthy=2, n_random=1, n_consistent=2,
                smoothness_mm=12.0, lesion=LesionConfig(diameter_mm=(12.0, 20.0)), consistent_diameter_mm=18.0)
    base.update(kw)
    return CohortConfig(**base)


def test_builds_labelled_cohort(source, tmp_path):
    out = tmp_path / "cohort"
    manifest = json.loads(build_cohort(out, _config(source), progress=False).read_text())
    rows = manifest["subjects"]
    assert sorted(r["kind"] for r in rows) == ["consistent", "consistent", "healthy", "healthy", "random"]
    assert manifest["config"]["n_consistent"] == 2
    for r in rows:
        img = nib.load(str(out / "volumes" / f"{r['name']}.nii.gz"))
        mask = nib.load(str(out / "masks" / f"{r['name']}.nii.gz"))
        assert img.shape == mask.shape
        np.testing.assert_allclose(img.affine, mask.affine)
        assert nib.aff2axcodes(img.affine) == ("R", "A", "S")
        m = np.asarray(mask.dataobj) > 0
        data = np.asarray(img.dataobj)
        assert (m.sum() > 0) == (r["kind"] != "healthy")
        assert not data[m & (data == 0)].any()  # lesions lie in the brain
        if r["kind"] != "healthy":
            assert r["lesion"]["voxels"] == int(m.sum())
    cons = [r["lesion"] for r in rows if r["kind"] == "consistent"]
    assert cons[0]["shape_seed"] == cons[1]["shape_seed"]
    assert np.allclose(cons[0]["diameters_mm"], cons[1]["diameters_mm"], rtol=0.2)


def test_seeded_and_refuses_overwrite(source, tmp_path):
    build_cohort(tmp_path / "a", _config(source), progress=False)
    build_cohort(tmp_path / "b", _config(source), progress=False)
    for f in sorted((tmp_path / "a" / "volumes").glob("*.nii.gz")):
        a = np.asarray(nib.load(str(f)).dataobj)
        b = np.asarray(nib.load(str(tmp_path / "b" / "volumes" / f.name)).dataobj)
        np.testing.assert_array_equal(a, b)
    with pytest.raises(InputError, match="holds a cohort already"):
        build_cohort(tmp_path / "a", _config(source), progress=False)
    build_cohort(tmp_path / "a", _config(source, n_healthy=1, n_random=0, n_consistent=0), overwrite=True,
                 progress=False)
    assert len(list((tmp_path / "a" / "volumes").glob("*.nii.gz"))) == 1


def test_source_checks(tmp_path):
    with pytest.raises(InputError, match="at least one healthy"):
        build_cohort(tmp_path / "x", CohortConfig(), progress=False)
    head = save(tmp_path / "head.nii.gz", np.random.default_rng(0).random((20, 20, 20)).astype(np.float32) + 1)
    with pytest.raises(InputError, match="head.nii.gz.*skull-stripped"):
        load_source(head, 2.0)


def test_source_resampled_to_voxel_size(source):
    src = load_source(source, 3.0)
    zooms = np.sqrt((src.affine[:3, :3] ** 2).sum(axis=0))
    np.testing.assert_allclose(zooms, 3.0, rtol=0.05)
    assert src.brain.any() and not src.image[~src.brain].any()


@pytest.mark.realdata
def test_real_sources_load(mri_dir):
    for rel in ("colin27/ch2bet.nii.gz", "mni152_2009a_sym/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"):
        src = load_source(mri_dir / rel, 3.0)
        assert nib.aff2axcodes(src.affine) == ("R", "A", "S")
        extent = np.asarray(src.image.shape) * 3.0
        assert np.all((extent > 120) & (extent < 260))  # a brain (plus margin), in mm
    with pytest.raises(InputError, match="skull-stripped"):
        load_source(mri_dir / "ixi_small" / "IXI012-HH-1211_T1.nii.gz", 3.0)
