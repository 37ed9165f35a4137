"""The pixel-level decision: detect, evaluate and score write a mask per flagged image.

A random-init ViT registered as a backbone keeps the runs fast (and lets ``score`` rebuild
it by name); the batch holds 9 noise images and 3 with a red square, which the image-level
decision flags, so every run has flagged and unflagged images to tell apart.
"""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from codegraph_ad.api import evaluate, score_new
from codegraph_ad.backbones import register_backbone
from codegraph_ad.cli import main
from codegraph_ad.config import FeatureConfig, PseudoMaskConfig, RunConfig
from codegraph_ad.distill.pseudomask_run import batch_threshold
from codegraph_ad.io.images import load_mask
from codegraph_ad.io.run_folder import MASKS, RunFolder, read_run_folder
from codegraph_ad.registry import BACKBONES
from tests.backbones.test_custom import DEPTH, PATCH, TinyViT
from tests.distill.conftest import make_toy_run

NAME = "mask_test_vit"
SMALL = ["--backbone", NAME, "--image-size", "32", "--layers", "2,3", "--quiet", "--no-overlays"]


@pytest.fixture(scope="module")
def vit() -> Iterator[str]:
    register_backbone(NAME, TinyViT, patch_size=PATCH, depth=DEPTH, mean=TinyViT.mean, std=TinyViT.std)
    yield NAME
    BACKBONES.unregister(NAME)


def _images(folder: Path, n_normal: int, n_defect: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    for i in range(n_normal + n_defect):
        rgb = np.clip(rng.normal(120, 10, (48, 48, 3)), 0, 255).astype(np.uint8)
        if i >= n_normal:
            y, x = rng.integers(4, 28, 2)
            rgb[y:y + 14, x:x + 14] = (240, 20, 20)
        Image.fromarray(rgb).save(folder / f"{'defect' if i >= n_normal else 'normal'}_{seed}_{i:02d}.png")
    return folder


@pytest.fixture(scope="module")
def detected(vit, tmp_path_factory) -> Path:
    """A finished detect run (CLI, default decision, masks on) over 9 normal + 3 defect images."""
    root = tmp_path_factory.mktemp("masks")
    assert main(["detect", str(_images(root / "batch", 9, 3, seed=0)), "--out", str(root / "run"),
                 "--method", "musc", *SMALL]) == 0
    return root / "run"


def _flags(run: Path) -> dict[str, bool]:
    with (run / "scores.csv").open() as fh:
        return {r["name"]: r["anomalous"] == "true" for r in csv.DictReader(fh)}


def _mask_names(run: Path) -> set[str]:
    return {p.stem for p in (run / MASKS).glob("*.png")} if (run / MASKS).is_dir() else set()


def _check_masks(folder: RunFolder, threshold: float) -> None:
    """Every flagged image has a mask equal to ``map > threshold``, stored as 0/255; no other has one."""
    flags = {r.name: r.anomalous for r in folder.score_rows}
    assert _mask_names(folder.root) == {n for n, a in flags.items() if a}
    for i, name in enumerate(folder.names):
        if not flags[name]:
            assert not folder.mask_file(name).exists()
            continue
        expected = folder.load_map(i) > threshold
        png = np.asarray(Image.open(folder.mask_file(name)))
        assert png.dtype == np.uint8 and set(np.unique(png)) <= {0, 255}
        np.testing.assert_array_equal(png == 255, expected)
        np.testing.assert_array_equal(load_mask(folder.mask_file(name), expected.shape), expected)


def test_detect_writes_a_mask_for_each_flagged_image_and_none_for_the_others(detected):
    flags = _flags(detected)
    assert {n for n, a in flags.items() if a} == {n for n in flags if n.startswith("defect_")}
    folder = read_run_folder(detected)
    stored = folder.pixel_decision
    assert stored is not None and stored["source"] == "batch"
    assert stored["config"] == asdict(PseudoMaskConfig()) and stored["fit"]["threshold"] == stored["threshold"]
    _check_masks(folder, stored["threshold"])
    # the defects stand out: their masks hold pixels, and the threshold leaves most normal pixels out
    assert all(np.asarray(Image.open(folder.mask_file(n))).any() for n, a in flags.items() if a)
    normal = np.concatenate([folder.load_map(i).ravel() for i, n in enumerate(folder.names) if not flags[n]])
    assert (normal > stored["threshold"]).mean() < 0.05


def test_the_threshold_is_the_pseudomask_commands_batch_fit(detected):
    """One fit on the pooled maps of the batch, drawn as `codegraph-ad pseudomask` draws it."""
    folder = read_run_folder(detected)
    assert folder.pixel_decision["threshold"] == batch_threshold(folder, PseudoMaskConfig()).threshold


def test_no_masks_writes_none_and_moves_no_score(vit, detected, tmp_path):
    out = tmp_path / "bare"
    assert main(["detect", str(detected.parent / "batch"), "--out", str(out), "--method", "musc", "--no-masks",
                 *SMALL]) == 0
    assert not (out / MASKS).exists() and read_run_folder(out).pixel_decision is None
    assert "pixel_decision" not in json.loads((out / "scores.json").read_text())
    assert (out / "scores.csv").read_bytes() == (detected / "scores.csv").read_bytes()


def test_score_writes_masks_at_the_reference_runs_threshold(vit, detected, tmp_path):
    new = _images(tmp_path / "new", 2, 2, seed=5)
    out = tmp_path / "scored"
    assert main(["score", str(detected), str(new), "--out", str(out), "--quiet", "--no-overlays"]) == 0
    flags = _flags(out)
    assert any(flags.values()) and not all(flags.values()), flags
    reference = read_run_folder(detected).pixel_decision
    folder = read_run_folder(out)
    assert folder.pixel_decision["source"] == "reference"
    assert folder.pixel_decision["threshold"] == reference["threshold"]
    assert folder.pixel_decision["fit"] == reference["fit"]
    _check_masks(folder, reference["threshold"])

    quiet = score_new(detected, new, tmp_path / "no_masks", progress=False, overlays=False, masks=False)
    assert quiet.pixel_decision is None and not (tmp_path / "no_masks" / MASKS).exists()


def test_score_against_a_run_without_a_stored_threshold_fits_it_on_the_runs_maps(vit, detected, tmp_path):
    """A reference written before masks (or with --no-masks) has none: its maps give the same fit."""
    old = tmp_path / "old"
    shutil.copytree(detected, old)
    shutil.rmtree(old / MASKS)
    scores = json.loads((old / "scores.json").read_text())
    threshold = scores.pop("pixel_decision")["threshold"]
    (old / "scores.json").write_text(json.dumps(scores))
    result = score_new(old, _images(tmp_path / "new", 2, 2, seed=5), tmp_path / "scored", progress=False,
                       overlays=False)
    assert result.pixel_decision.threshold == threshold and result.pixel_decision.source == "reference"
    _check_masks(read_run_folder(tmp_path / "scored"), threshold)


def test_evaluate_writes_masks_of_its_flagged_images(vit, tmp_path):
    toy = make_toy_run(tmp_path, n_normal=8, n_defect=4)
    config = RunConfig(method="musc", features=FeatureConfig(backbone=vit, image_size=32, layers=(2, 3)))
    res = evaluate(toy["category"], tmp_path / "eval", config, eval_size=32, progress=False, overlays=False)
    assert res.run.decision.anomalous.any() and not res.run.decision.anomalous.all()
    folder = read_run_folder(tmp_path / "eval")
    assert folder.pixel_decision["threshold"] == res.run.pixel_decision.threshold
    _check_masks(folder, res.run.pixel_decision.threshold)
