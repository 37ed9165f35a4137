"""Means that skip undefined values, and the published section kept apart from measured rows."""

from __future__ import annotations

import pytest

from codegraph_ad.suite.published import PUBLISHED, published_for
from codegraph_ad.suite.tables import markdown, mean_rows, to_csv


def _row(category: str, method: str, auroc: float | None, aupro: float) -> dict:
    return {"dataset": "mvtec_ad", "category": category, "method": method, "backbone": "b", "image_size": 56,
            "n_images": 10, "n_anomalous": 4, "image_auroc": auroc, "image_f1_max": 0.5, "image_ap": 0.5,
            "pixel_auroc": 0.9, "pixel_f1_max": 0.4, "pixel_ap": 0.3, "pixel_aupro": aupro,
            "exclusion_rate": None, "capture_rate": None, "n_consistent_patches": None,
            "features_s": 1.0, "scoring_s": 2.0, "wall_s": 3.0, "s_per_image": 0.3}


def test_mean_skips_undefined_values_and_marks_them():
    rows = [_row("a", "musc", 0.8, 0.6), _row("b", "musc", None, 0.8)]
    (mean,) = mean_rows(rows)
    assert mean["image_auroc"] == pytest.approx(0.8) and mean["n_defined"]["image_auroc"] == 1
    assert mean["pixel_aupro"] == pytest.approx(0.7) and mean["exclusion_rate"] is None
    assert mean["n_images"] == 20
    md = markdown("T", [], rows, [mean], [], [])
    assert "| **mean** | musc | 80.0* |" in md and "| b | musc | n/a |" in md
    assert to_csv(rows + [mean]).splitlines()[2].split(",")[7] == ""  # None -> empty cell


def test_published_rows_split_by_backbone_and_stay_in_their_section():
    same, other = published_for("mvtec_ad", "clip_vitl14_336")
    assert {r.subset for r in same} >= {"bottle", "cable", "metal_nut", "pill", "mean of 15"}
    assert all(r.backbone != "clip_vitl14_336" for r in other) and other
    assert published_for("mvtec_ad", "dinov2_vits14_imgfocus")[0] == []
    assert published_for("brats", "clip_vitl14_336") == ([], [])
    rows = [_row("bottle", "musc", 0.9, 0.9)]
    md = markdown("T", [], rows, mean_rows(rows), same, other)
    measured, published = md.split("## Published numbers")
    assert "99.92" not in measured and "99.92" in published
    assert "Same dataset and backbone as this run:" in published
    assert "other backbones (not comparable" in published


def test_published_values_are_percentages_with_sources():
    for r in PUBLISHED:
        assert r.source and r.metrics
        assert all(0.0 <= v <= 100.0 for v in r.metrics.values())
