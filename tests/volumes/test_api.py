"""End to end on tiny volumes with the fast stand-in backbone: outputs, geometry, metrics."""

from __future__ import annotations

import json
from dataclasses import replace

import nibabel as nib
import numpy as np
import pytest
import torch

from codegraph_ad.config import MSMConfig
from codegraph_ad.errors import BatchTooSmallError, InputError
from codegraph_ad.volumes.api import detect_volumes, evaluate_volumes
from codegraph_ad.volumes.config import VolumeConfig
from tests.volumes.helpers import FakeBackbone, brain_volume, lps_affine, save

D = 28
# All slices: on a 2^3 token grid every slice of the lesion counts (the default stride 2 drops half).
CFG = VolumeConfig(size=D, void_fraction=0.3, slice_stride=1,
                   run=replace(VolumeConfig().run, method="musc", msm=MSMConfig(q=0.3)))


@pytest.fixture
def cohort(tmp_path):
    """Five volumes (two orientations), the last with a bright lesion; masks alongside."""
    root = tmp_path / "cohort"
    for i in range(5):
        vol, mask = brain_volume(seed=i, lesion=(0.35, 0.3, -0.3) if i == 4 else None, lesion_radius=0.45)
        affine = lps_affine() if i % 2 else np.diag([1.1, 1.0, 1.3, 1.0])
        save(root / "volumes" / f"s{i}.nii.gz", vol, affine)
        save(root / "masks" / f"s{i}.nii.gz", mask.astype(np.uint8), affine)
    return root


def test_detect_writes_maps_in_the_input_grid(cohort, tmp_path):
    out = tmp_path / "run"
    res = detect_volumes(cohort / "volumes", out, CFG, progress=False, backbone=FakeBackbone(D))
    assert res.names == [f"s{i}" for i in range(5)]
    assert int(np.argmax(res.scores.image_scores)) == 4
    for i in range(5):
        src = nib.load(str(cohort / "volumes" / f"s{i}.nii.gz"))
        amap = nib.load(str(out / "maps" / f"s{i}.nii.gz"))
        assert amap.shape == src.shape
        np.testing.assert_allclose(amap.affine, src.affine, atol=1e-6)
        assert amap.get_data_dtype() == np.float32
        assert (out / "mosaics" / f"s{i}.png").is_file()
    # In the file's own (LPS or RAS) voxel grid the map is hot at the lesion, cold at its mirror point.
    for i, name in ((4, "s4"),):
        amap = nib.load(str(out / "maps" / f"{name}.nii.gz")).get_fdata()
        lesion = nib.load(str(cohort / "masks" / f"{name}.nii.gz")).get_fdata() > 0
        centre = np.round(np.argwhere(lesion).mean(axis=0)).astype(int)
        mirror = np.asarray(amap.shape) - 1 - centre
        assert amap[tuple(centre)] > amap[tuple(mirror)]
        assert amap[tuple(centre)] >= np.percentile(amap[amap > 0], 90)
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["grid"] == [2, 2, 2] and manifest["config"]["size"] == D
    assert np.load(out / "token_scores.npy").shape == (5, 2, 2, 2)
    rows = (out / "scores.csv").read_text().splitlines()
    assert rows[0].startswith("name,path,score") and len(rows) == 6
    assert rows[0].split(",")[:5] == ["name", "path", "score", "raw_score", "anomalous"]  # issue 26
    decision = json.loads((out / "scores.json").read_text())["decision"]
    assert decision["rule"] == CFG.run.decision.rule and decision["n_images"] == 5
    assert sum(r.split(",")[4] == "true" for r in rows[1:]) == decision["n_flagged"]
    with pytest.raises(InputError, match="holds the results of another run"):
        detect_volumes(cohort / "volumes", out, CFG, progress=False, backbone=FakeBackbone(D))


def test_unprojected_tokens_end_to_end(cohort):
    """projection_dim = 0 runs the same pipeline on the backbone's own token size."""
    res = detect_volumes(cohort / "volumes", None, replace(CFG, projection_dim=0), progress=False,
                         backbone=FakeBackbone(D))
    assert int(np.argmax(res.scores.image_scores)) == 4
    assert res.config.projection_dim == 0


def test_evaluate_cohort_metrics(cohort, tmp_path):
    ev = evaluate_volumes(cohort, tmp_path / "eval", CFG, progress=False, mosaics=False, backbone=FakeBackbone(D))
    m = ev.metrics
    assert m["n_volumes"] == 5 and m["n_lesioned"] == 1
    assert m["patient"]["auroc"] == 1.0
    for key in ("voxel_auroc", "dice_mean", "dice_lesioned", "token_f1"):
        assert 0.0 <= m[key] <= 1.0, key
    assert m["dice_lesioned"] > 0.0
    assert [r["dice"] for r in m["per_volume"][:4]] == [1.0] * 4  # lesion-free and nothing predicted
    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert saved["metrics"]["patient"] == m["patient"]


def test_brain_mask_folder_and_missing_mask(cohort, tmp_path):
    masks = tmp_path / "brains"
    for i in range(5):
        img = nib.load(str(cohort / "volumes" / f"s{i}.nii.gz"))
        save(masks / f"s{i}.nii.gz", (img.get_fdata() > 0).astype(np.uint8), img.affine)
    a = detect_volumes(cohort / "volumes", None, CFG, brain_masks=masks, progress=False, backbone=FakeBackbone(D))
    b = detect_volumes(cohort / "volumes", None, CFG, progress=False, backbone=FakeBackbone(D))
    np.testing.assert_allclose(a.maps, b.maps, rtol=1e-5)
    (masks / "s3.nii.gz").unlink()
    with pytest.raises(InputError, match="no brain masks named like"):
        detect_volumes(cohort / "volumes", None, CFG, brain_masks=masks, progress=False, backbone=FakeBackbone(D))


def test_too_few_and_bad_volume_named(cohort, tmp_path):
    vols = sorted((cohort / "volumes").glob("*.nii.gz"))
    with pytest.raises(BatchTooSmallError):
        detect_volumes(vols[:2], None, CFG, progress=False, backbone=FakeBackbone(D))
    bad = save(tmp_path / "nan.nii.gz", np.full((6, 6, 6), np.nan, np.float32))
    with pytest.raises(InputError, match="nan.nii.gz"):
        detect_volumes([*vols[:3], bad], None, CFG, progress=False, backbone=FakeBackbone(D))


@pytest.mark.realdata
def test_real_backbone_smoke(cohort, mri_dir, tmp_path):
    """The embedded ViT-S on 28 px slices (2 x 2 x 2 cubes): runs, writes aligned maps."""
    cfg = VolumeConfig(size=D, void_fraction=0.3, slice_stride=7)
    vols = sorted((cohort / "volumes").glob("*.nii.gz"))[:3]
    res = detect_volumes(vols, tmp_path / "real", cfg, progress=False, mosaics=False)
    assert res.maps.shape == (3, 2, 2, 2) and np.isfinite(res.maps).all()
    src = nib.load(str(cohort / "volumes" / "s1.nii.gz"))
    out = nib.load(str(tmp_path / "real" / "maps" / "s1.nii.gz"))
    assert out.shape == src.shape and np.allclose(out.affine, src.affine)


def test_patient_min_share_changes_only_the_patient_scores(cohort):
    from codegraph_ad.volumes.api import score_batch
    from codegraph_ad.volumes.pipeline import tokens_from_paths

    paths = sorted((cohort / "volumes").glob("*.nii.gz"))
    spec = replace(CFG, patient_baseline="none")
    batch = tokens_from_paths(paths, spec, backbone=FakeBackbone(D), progress=False)
    every, _ = score_batch(batch, spec)
    top = every.patch_scores.numpy().argmax(axis=1)
    t = float(batch.brain_share[np.arange(len(paths)), top].min()) + 1e-4  # drops one volume's hottest cube
    assert t <= 1.0
    inner, _ = score_batch(batch, replace(spec, patient_min_share=t))
    np.testing.assert_allclose(inner.patch_scores.numpy(), every.patch_scores.numpy())
    counted = batch.solid & (batch.brain_share >= t - 1e-6)
    want = np.where(counted, every.patch_scores.numpy(), 0.0).max(axis=1)
    np.testing.assert_allclose(inner.image_scores, want, rtol=1e-6)
    assert not np.allclose(inner.image_scores, every.image_scores)


def test_patient_baseline_changes_only_the_patient_scores(cohort):
    from codegraph_ad.volumes.api import score_batch
    from codegraph_ad.volumes.pipeline import tokens_from_paths

    paths = sorted((cohort / "volumes").glob("*.nii.gz"))
    batch = tokens_from_paths(paths, CFG, backbone=FakeBackbone(D), progress=False)
    every, _ = score_batch(batch, replace(CFG, patient_baseline="none"))
    based, _ = score_batch(batch, CFG)  # the default: position median
    np.testing.assert_allclose(based.patch_scores.numpy(), every.patch_scores.numpy())
    np.testing.assert_allclose(every.image_scores, np.where(batch.solid, every.patch_scores.numpy(), 0).max(axis=1),
                               rtol=1e-6)
    s = np.where(batch.solid, every.patch_scores.numpy(), np.nan)
    median = np.nanmedian(s, axis=0)
    assert (median > 0).any()  # a baseline that changes something
    np.testing.assert_allclose(based.image_scores, np.nanmax(s - median, axis=1), rtol=1e-5, atol=1e-7)
    assert not np.allclose(based.image_scores, every.image_scores)


def test_staggered_lattice_end_to_end(cohort, tmp_path):
    cfg = replace(CFG, staggered=True)
    out = tmp_path / "run"
    res = detect_volumes(cohort / "volumes", out, cfg, progress=False, backbone=FakeBackbone(D))
    assert res.maps.shape == res.solid.shape == (5, 4, 4, 4)  # half-cube maps of a 2^3 grid
    assert int(np.argmax(res.scores.image_scores)) == 4
    assert res.scores.patch_scores.shape == (5, 2 ** 3 + 1)
    assert np.load(out / "token_scores.npy").shape == (5, 4, 4, 4)
    assert json.loads((out / "run.json").read_text())["grid"] == [4, 4, 4]
    for i in (0, 1):
        src = nib.load(str(cohort / "volumes" / f"s{i}.nii.gz"))
        amap = nib.load(str(out / "maps" / f"s{i}.nii.gz"))
        assert amap.shape == src.shape
        np.testing.assert_allclose(amap.affine, src.affine, atol=1e-6)
    ev = evaluate_volumes(cohort, tmp_path / "ev", replace(cfg, run=replace(cfg.run, method="codegraph")),
                          progress=False, backbone=FakeBackbone(D))
    assert ev.run.excluded is not None and ev.run.excluded.shape == (5, 4, 4, 4)
    assert ev.metrics["patient"]["auroc"] == 1.0


def test_token_dtype_float16_holds_half_and_scores_like_the_same_values(cohort):
    """FeatureConfig.token_dtype reaches the volume tokens: float16 held, the scores those of
    the same (rounded) values held in float32."""
    from codegraph_ad.features.extract import held_as
    from codegraph_ad.volumes.api import score_batch
    from codegraph_ad.volumes.pipeline import tokens_from_paths

    paths = sorted((cohort / "volumes").glob("*.nii.gz"))
    half_cfg = replace(CFG, run=replace(CFG.run, features=replace(CFG.run.features, token_dtype="float16")))
    half = tokens_from_paths(paths, half_cfg, backbone=FakeBackbone(D), progress=False)
    assert half.features.layers.dtype == torch.float16
    full = replace(half, features=held_as(half.features, "float32"))
    a, _ = score_batch(half, half_cfg)
    b, _ = score_batch(full, CFG)
    assert torch.equal(a.patch_scores, b.patch_scores)
