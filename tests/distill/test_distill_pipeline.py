"""End to end with the embedded ViT-S: run folder -> head -> per-image predictions, API and CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from codegraph_ad.config import FeatureConfig, LNAMDConfig, RunConfig
from codegraph_ad.distill.config import (
    DistillConfig,
    HeadConfig,
    PseudoMaskConfig,
    TrainConfig,
)
from codegraph_ad.distill.distill_head import train_patch_head
from codegraph_ad.distill.model_file import load_model
from codegraph_ad.distill.predict import predict_images
from codegraph_ad.errors import InputError
from codegraph_ad.io.run_folder import read_run_folder

from .test_pseudomask_run import distill_cli

SMALL = FeatureConfig(image_size=56, batch_size=8)  # 4 x 4 patches: seconds on a shared CPU
FAST = TrainConfig(epochs=15, lr=3e-3, batch_images=4)


@pytest.fixture(scope="module")
def backbone():
    from codegraph_ad.distill.detector import load_feature_backbone

    return load_feature_backbone(SMALL, threads=1)


def test_head_on_pseudo_and_real_masks_predicts_single_images(tmp_path: Path, toy_run: dict, backbone) -> None:
    cfg = DistillConfig(features=SMALL, head=HeadConfig(hidden=32), train=FAST)
    det, rep = train_patch_head(toy_run["run"], tmp_path / "head.pt", cfg, pseudo=PseudoMaskConfig(scope="batch"),
                                progress=False, backbone=backbone)
    assert rep.history[-1] < rep.history[0]
    assert rep.source["kind"] == "pseudo" and rep.source["n_positive_images"] >= 4
    saved = load_model(tmp_path / "head.pt")
    assert saved.kind == "patch_head" and saved.config["features"]["image_size"] == 56

    res = predict_images(det, toy_run["category"] / "test", tmp_path / "pred", progress=False)
    assert res.patch_scores.shape == (8, 16) and res.grid == (4, 4)
    assert float(res.patch_scores.min()) >= 0.0 and float(res.patch_scores.max()) <= 1.0
    run = read_run_folder(tmp_path / "pred")  # a prediction folder reads like any run
    assert run.names == ["good__000", "good__001", "good__002", "good__003",
                         "stain__004", "stain__005", "stain__006", "stain__007"]
    assert run.load_map(5).shape == (64, 64)
    assert run.backbone is not None and run.backbone.source == "embedded"  # the frozen ViT the head reads
    assert (tmp_path / "pred" / "overlays" / "stain__005.png").is_file()
    rows = list(csv.DictReader((tmp_path / "pred" / "scores.csv").open()))
    assert [r["name"] for r in rows] == run.names
    meta = json.loads((tmp_path / "pred" / "scores.json").read_text())
    assert meta["timings"]["mean_backbone_s"] > 0 and meta["config"]["kind"] == "patch_head"

    # no batch: one image alone gets exactly the map it got among the others
    alone = predict_images(det, [toy_run["paths"][5]], None, progress=False)
    np.testing.assert_allclose(alone.patch_scores[0].numpy(), res.patch_scores[5].numpy(), rtol=1e-5, atol=1e-6)


def test_cli_distill_and_predict(tmp_path: Path, toy_run: dict, capsys: pytest.CaptureFixture[str], backbone,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    from codegraph_ad.distill import detector, distill_head

    def shared(features: FeatureConfig, threads: int | None = None):  # the same ViT-S, built once per module
        assert features.image_size == 56 and threads == 1
        return backbone

    monkeypatch.setattr(distill_head, "load_feature_backbone", shared)
    monkeypatch.setattr(detector, "load_feature_backbone", shared)
    model = tmp_path / "head.pt"
    args = ["distill", str(toy_run["run"]), "--out", str(model), "--image-size", "56", "--epochs", "5",
            "--hidden", "16", "--scope", "batch", "--threads", "1", "--quiet"]
    assert distill_cli(args) == 0
    assert "model written" in capsys.readouterr().out
    with pytest.raises(InputError, match="overwrite"):
        distill_cli(args)
    img = toy_run["paths"][6]
    assert distill_cli(["predict", str(model), str(img), "--out", str(tmp_path / "p"), "--quiet", "--no-overlays",
                        "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "per image:" in out and "backbone" in out
    assert (tmp_path / "p" / "maps" / "006.npy").is_file()
    assert not (tmp_path / "p" / "overlays").exists()


def test_real_detect_run_feeds_pseudomasks_and_distill(tmp_path: Path, toy_run: dict, backbone) -> None:
    from codegraph_ad import detect

    cfg = RunConfig(method="musc", features=SMALL, lnamd=LNAMDConfig((1,)))
    detect(toy_run["category"] / "test", tmp_path / "detect_run", cfg, progress=False, overlays=False, backbone=backbone)
    assert distill_cli(["pseudomask", str(tmp_path / "detect_run"), "--out", str(tmp_path / "pm"), "--quiet"]) == 0
    masks = sorted((tmp_path / "pm" / "ground_truth").rglob("*_mask.png"))
    assert [m.parent.name for m in masks] == ["good"] * 4 + ["stain"] * 4
    _, rep = train_patch_head(tmp_path / "detect_run", None, DistillConfig(features=SMALL, train=FAST),
                              masks=tmp_path / "pm", progress=False, backbone=backbone)
    assert rep.source["kind"] == "masks" and rep.source["n_with_mask_file"] == 8
    # real masks: the category's ground truth, good images without a mask file count as normal
    _, rep_real = train_patch_head(tmp_path / "detect_run", None, DistillConfig(features=SMALL, train=FAST),
                                   masks=toy_run["category"], progress=False, backbone=backbone)
    assert rep_real.source["n_with_mask_file"] == 4 and rep_real.source["n_positive_images"] == 4
