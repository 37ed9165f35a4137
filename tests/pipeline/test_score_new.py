"""`codegraph-ad score`: new images scored against a finished run, with detect's outputs."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest

from codegraph_ad.api import detect, score_new
from codegraph_ad.cli import main
from codegraph_ad.config import FeatureConfig, RunConfig
from codegraph_ad.demo import make_demo_images
from codegraph_ad.errors import InputError
from codegraph_ad.io.run_folder import REFERENCE, read_run_folder
from tests.volumes.helpers import FakeBackbone

SMALL = ["--image-size", "112", "--quiet"]


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    """A run folder of 8 normal images, and new images: 2 normal and the 3 defects."""
    root = tmp_path_factory.mktemp("score")
    make_demo_images(root / "all", n_normal=10)
    for sub in ("batch", "new"):
        (root / sub).mkdir()
    for p in sorted((root / "all").iterdir()):
        into = "batch" if p.stem.startswith("normal_") and int(p.stem[-2:]) < 8 else "new"
        shutil.copy(p, root / into / p.name)
    return root


@pytest.mark.parametrize("method", ["musc", "codegraph"])
def test_score_cli_writes_detects_outputs_and_ranks_the_defects_first(split, tmp_path, method, capsys):
    run, out = tmp_path / "run", tmp_path / "new_scores"
    assert main(["detect", str(split / "batch"), "--out", str(run), "--method", method, *SMALL]) == 0
    folder = read_run_folder(run)
    layers, cls = folder.reference()
    assert layers.dtype == np.float16 and layers.shape == (8, 4, 64, 384) and cls.shape == (8, 384)
    assert main(["score", str(run), str(split / "new"), "--out", str(out), "--quiet"]) == 0
    with (out / "scores.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 5
    ranked = [r["name"] for r in sorted(rows, key=lambda r: -float(r["score"]))]
    assert set(ranked[:3]) == {"defect_scratch", "defect_stain", "defect_foreign"}, ranked
    for r in rows:
        assert np.load(out / "maps" / f"{r['name']}.npy").shape == (256, 256)
        assert (out / "overlays" / f"{r['name']}.png").exists()
    meta = json.loads((out / "scores.json").read_text())
    assert meta["config"]["method"] == method and meta["diagnostics"]["reference"]["images"] == 8
    assert meta["diagnostics"]["reference"]["source"] == str(run)
    assert (out / "report.html").exists() and (out / "run.json").exists() and not (out / REFERENCE).exists()
    assert read_run_folder(out).backbone == folder.backbone
    assert "scored against the 8 images" in capsys.readouterr().out


def test_one_new_image_scores_as_in_a_list(split, tmp_path):
    run = tmp_path / "run"
    config = RunConfig(method="musc", features=FeatureConfig(image_size=112))
    detect(split / "batch", run, config, progress=False, overlays=False)
    alone = score_new(run, split / "new" / "defect_stain.png", None, progress=False)
    together = score_new(run, split / "new", None, progress=False)
    i = together.names.index("defect_stain")
    np.testing.assert_allclose(alone.scores.patch_scores[0].numpy(), together.scores.patch_scores[i].numpy(),
                               rtol=1e-5, atol=1e-6)
    # new images are judged by the run's own threshold, alone or together
    stored = read_run_folder(run).decision
    for result in (alone, together):
        assert result.decision.threshold == stored["threshold"] and result.decision.rule == stored["rule"]
        np.testing.assert_array_equal(result.decision.anomalous, result.scores.image_scores > stored["threshold"])


def test_the_runs_window_and_fixed_k_reach_the_new_images(split, tmp_path):
    """score reads the run's engine settings: new images are matched inside its window, against
    K references as its own images were (tests/methods/test_reference.py checks the values)."""
    from dataclasses import replace

    from codegraph_ad.config import EngineConfig
    from codegraph_ad.features.extract import FeatureSet
    from codegraph_ad.methods.reference import ReferenceSet

    run = tmp_path / "run"
    config = RunConfig(method="musc", features=FeatureConfig(image_size=112),
                       engine=EngineConfig(window=1, references=4))
    detect(split / "batch", run, config, progress=False, overlays=False)
    got = score_new(run, split / "new", None, progress=False, masks=False)
    ref = ReferenceSet.from_run(read_run_folder(run))
    assert ref.config.engine.window == 1 and ref.config.engine.references == 4
    layers, cls = read_run_folder(run).reference()
    member = FeatureSet.from_arrays(layers[:2], ref.grid, cls[:2])  # two of the run's own images
    plain = replace(ref, config=replace(ref.config, engine=EngineConfig()))
    assert not np.allclose(ref.score_new(member).patch_scores.numpy(), plain.score_new(member).patch_scores.numpy())
    assert got.scores.diagnostics["reference"]["images"] == 8


def test_refusals_name_the_reason(split, tmp_path, capsys):
    bare = tmp_path / "bare"
    assert main(["detect", str(split / "batch"), "--out", str(bare), "--method", "musc", "--no-store-reference",
                 "--no-overlays", *SMALL]) == 0
    assert not (bare / REFERENCE).exists()
    assert main(["score", str(bare), str(split / "new"), "--out", str(tmp_path / "x"), "--quiet"]) == 2
    assert "stored no reference set" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()

    custom = tmp_path / "custom"
    detect(split / "batch", custom, RunConfig(method="musc", features=FeatureConfig(image_size=28, layers=(1, 2))),
           progress=False, overlays=False, backbone=FakeBackbone(28))
    assert (custom / REFERENCE).exists()
    with pytest.raises(InputError, match="custom backbone object"):
        score_new(custom, split / "new", tmp_path / "y", progress=False)
    with pytest.raises(InputError, match="not a finished run folder"):
        score_new(tmp_path / "nowhere", split / "new", tmp_path / "z", progress=False)
    with pytest.raises(InputError, match="reference run's folder"):
        score_new(custom, split / "new", custom, overwrite=True, progress=False)
