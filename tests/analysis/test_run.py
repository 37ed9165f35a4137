"""``analyze`` on a real small run: every number and figure is written, inputs are cached."""

from __future__ import annotations

import argparse
import json
import shutil

import numpy as np
import pytest

from codegraph_ad.analysis.cli import register
from codegraph_ad.analysis.config import AnalysisConfig
from codegraph_ad.analysis.inputs import CACHE_NAME
from codegraph_ad.analysis.run import ANALYSIS_JSON, analyze_run, write_figures
from codegraph_ad.cli import _COMMAND_MODULES

FAST = AnalysisConfig(hill_references=12, hill_k_max=40)


def test_analyze_evaluate_run(evaluated_run, small_backbone, tmp_path):
    out = tmp_path / "analysis"
    result = analyze_run(evaluated_run, out, FAST, backbone=small_backbone, progress=False)
    on_disk = json.loads((out / ANALYSIS_JSON).read_text())
    assert on_disk["n_images"] == result["n_images"] == 8
    assert on_disk["normal_patches"] == "patches of images labelled normal"
    assert on_disk["n_normal_patches"] == 5 * 16
    assert result["masks"] and result["groups"]["n_anomalous"] > 0
    assert result["groups"]["n_consistent"] + result["groups"]["n_inconsistent"] == result["groups"]["n_anomalous"]
    assert [layer["block"] for layer in result["layers"]] == [3, 6, 9, 12]
    for layer in result["layers"]:
        assert len(layer["scaling"]["mean_tau"]) == 6  # ranks 1..N-2
        assert layer["scaling"]["fit"] is not None and np.isfinite(layer["scaling"]["fit"]["r2"])
        assert layer["hill"]["n_references"] == 12 and layer["hill"]["plateau"] > 0
        assert layer["beta"]["alpha"] > 0 and 0 <= layer["beta"]["ks"] <= 1
        assert set(layer["burnout"]) == {"consistent", "inconsistent"}
    assert set(result["figures"]) == {"scaling", "burnout", "hill", "beta_qq"}
    for name in result["figures"].values():
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert result["timings"]["cache_hit"] == 0.0 and (out / CACHE_NAME).exists()
    # A second call reuses the inputs (no backbone needed) and gives the same numbers.
    again = analyze_run(evaluated_run, out, FAST, backbone=None, progress=False, figures=False)
    assert again["timings"]["cache_hit"] == 1.0
    assert again["layers"] == result["layers"]


def test_analyze_unlabelled_run_uses_scores(evaluated_run, small_backbone, tmp_path):
    """Without labels or masks: normal = below the median score, no burnout figure."""
    run = tmp_path / "run"
    shutil.copytree(evaluated_run, run)
    scores = json.loads((run / "scores.json").read_text())
    for row in scores["images"]:
        row.pop("label"), row.pop("defect"), row.pop("mask_paths", None)
    manifest = json.loads((run / "run.json").read_text())
    moved = tmp_path / "images"
    moved.mkdir()
    new_paths = []
    for i, p in enumerate(manifest["paths"]):  # outside the MVTec layout: no masks either
        new_paths.append(str(shutil.copy(p, moved / f"{i}.png")))
    manifest["paths"] = new_paths
    (run / "run.json").write_text(json.dumps(manifest))
    (run / "scores.json").write_text(json.dumps(scores))
    result = analyze_run(run, None, FAST, backbone=small_backbone, progress=False, figures=False)
    assert (run / "analysis" / ANALYSIS_JSON).exists()
    assert result["normal_patches"] == "patches below the median patch score of the run"
    assert not result["labels"] and not result["masks"] and result["groups"] is None
    assert write_figures(result["layers"], tmp_path / "figs").keys() == {"scaling", "hill", "beta_qq"}
    assert all(layer["burnout"] is None for layer in result["layers"])
    # The report of the run shows the analysis found in its default folder.
    from codegraph_ad.report.html import write_report

    page = write_report(run).read_text()
    assert 'id="analysis"' in page and page.count("<td>12</td>") >= 1


def test_cli_analyze(evaluated_run, small_backbone, tmp_path, capsys, monkeypatch):
    import codegraph_ad.backbones.from_config as from_config

    monkeypatch.setattr(from_config, "backbone_from_config", lambda features, threads=None: small_backbone)
    assert "codegraph_ad.analysis.cli" in _COMMAND_MODULES
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    a = parser.parse_args(["analyze", str(evaluated_run), "--out", str(tmp_path / "a"), "--hill-references", "8",
                           "--hill-k-max", "20", "--quiet", "--no-figures"])
    assert a.func(a) == 0
    out = capsys.readouterr().out
    assert "slope" in out and "analysis written to" in out
    assert json.loads((tmp_path / "a" / ANALYSIS_JSON).read_text())["layers"][0]["hill"]["n_references"] == 8


def test_missing_patch_scores_is_a_clear_error(evaluated_run, tmp_path):
    from codegraph_ad.errors import InputError

    run = tmp_path / "run"
    shutil.copytree(evaluated_run, run)
    (run / "patch_scores.npy").unlink()
    with pytest.raises(InputError, match="patch_scores.npy"):
        analyze_run(run, None, FAST, progress=False)
