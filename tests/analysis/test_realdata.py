"""Bottle at 112 px: the scaling law holds on real normal patches; analysis and report build.

Slow (a full evaluate run of 83 images): excluded from the default test command.
"""

from __future__ import annotations

import re

import pytest

from codegraph_ad.analysis.config import AnalysisConfig
from codegraph_ad.analysis.run import analyze_run
from codegraph_ad.config import FeatureConfig, RunConfig

pytestmark = [pytest.mark.realdata, pytest.mark.slow]


def test_bottle_scaling_law_and_report(bottle_dir, tmp_path):
    from codegraph_ad.api import evaluate
    from codegraph_ad.report.html import write_report

    run = tmp_path / "run"
    evaluate(bottle_dir, run, RunConfig(features=FeatureConfig(image_size=112)), progress=False)
    result = analyze_run(run, None, AnalysisConfig(hill_references=32), progress=False)
    assert result["n_images"] == 83 and result["n_normal_patches"] == 20 * 64
    assert result["groups"]["n_anomalous"] > 0
    for layer in result["layers"]:
        fit = layer["scaling"]["fit"]
        # Measured 2026-11 on this data: slopes -0.57..-0.68, R^2 0.967..0.991 (ranks 1..25).
        assert -1.5 < fit["exponent"] < -0.3 and fit["r2"] > 0.9
        assert 1.0 < layer["hill"]["plateau"] < 20.0
        assert 1.0 < layer["beta"]["alpha"] < 20.0 and layer["beta"]["ks"] < 0.15
    page = write_report(run).read_text()
    assert len(re.findall(r'<tr data-idx="\d+"', page)) == 83
