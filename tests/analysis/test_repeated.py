"""The repeated-defect group: named by globs or read from a SynCA manifest; its burnout."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from codegraph_ad.analysis.burnout import split_anomalous_patches
from codegraph_ad.analysis.config import AnalysisConfig
from codegraph_ad.analysis.repeated import match_patterns, repeated_images, synca_members
from codegraph_ad.analysis.run import analyze_layer, analyze_run
from codegraph_ad.errors import InputError
from codegraph_ad.report.html import write_report
from tests.analysis.test_burnout import _planted_batch


def _layout(root: Path, names: list[str]) -> list[Path]:
    paths = []
    for name in names:
        p = root / "test" / f"{name}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.touch()
        paths.append(p)
    return paths


def test_patterns_match_key_file_name_or_path(tmp_path):
    paths = _layout(tmp_path / "cat", ["good/000", "crack/000", "crack/synca_000", "crack/synca_001"])
    assert match_patterns(paths, ["crack/synca_*"]).tolist() == [False, False, True, True]
    assert match_patterns(paths, ["crack/000", "synca_001.png"]).tolist() == [False, True, False, True]
    assert match_patterns(paths, [str(tmp_path / "cat" / "test" / "good" / "*")]).tolist() == [True, False, False, False]
    found, source = repeated_images(paths, ["crack/synca_*"])
    assert found.sum() == 2 and "crack/synca_*" in source
    with pytest.raises(InputError, match="no image of the run matches"):
        repeated_images(paths, ["scratch/*"])


def test_synca_manifest_names_source_and_copies(tmp_path):
    root = tmp_path / "synca"
    paths = _layout(root, ["good/000", "crack/000", "crack/001", "crack/synca_000", "crack/synca_001"])
    assert synca_members(paths) is None  # no manifest: no group
    manifest = {"kind": "synca", "source": {"name": "crack/000"},
                "copies": [{"image": "test/crack/synca_000.png"}, {"image": "test/crack/synca_001.png"}]}
    (root / "manifest.json").write_text(json.dumps(manifest))
    found, source = repeated_images(paths, [])
    assert found.tolist() == [False, True, False, True, True] and "SynCA" in source
    (root / "manifest.json").write_text(json.dumps({**manifest, "kind": "something else"}))
    assert repeated_images(paths, []) == (None, None)
    (root / "manifest.json").write_text("{not json")
    assert synca_members(paths) is None


def test_repeated_group_burnout_at_the_number_of_copies():
    g = 5
    dist, planted = _planted_batch(g)
    normal = ~planted
    scores = np.where(planted, 10.0, np.linspace(0, 1, planted.size).reshape(planted.shape))  # MuSc misses none
    groups = split_anomalous_patches(planted, normal, scores)
    assert groups.consistent.sum() == 0  # SPEC's consistent group is empty here ...
    hill = np.sort(np.random.default_rng(0).random((4, 30)) + 0.1, axis=1)
    layer = analyze_layer(dist, hill, normal, groups, k_ref=10, config=AnalysisConfig(), repeated=planted)
    assert layer["burnout"]["repeated"]["n_patches"] == g + 1
    assert layer["burnout"]["repeated"]["burnout_rank"] == g  # ... the repeated group still shows the cliff
    assert layer["burnout"]["consistent"]["n_patches"] == 0


def test_analyze_run_with_repeated_patterns(evaluated_run, small_backbone, tmp_path):
    out = tmp_path / "analysis"
    config = AnalysisConfig(hill_references=12, hill_k_max=40, repeated_images=("spot/00[01]",))
    result = analyze_run(evaluated_run, out, config, backbone=small_backbone, progress=False)
    rep = result["groups"]["repeated"]
    assert rep["n_images"] == 2 and len(rep["images"]) == 2 and rep["n_patches"] > 0
    assert rep["source"].startswith("patterns")
    assert all("repeated" in layer["burnout"] for layer in result["layers"])
    assert "burnout" in result["figures"]
    # the report shows the repeated group's rank when the analysis sits in the run's folder
    run = tmp_path / "run"
    shutil.copytree(evaluated_run, run)
    shutil.copytree(out, run / "analysis")
    assert "burnout rank (repeated defect)" in write_report(run).read_text()
