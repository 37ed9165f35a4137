"""The detection-limit study's summary (benchmarks/volumes_lesion_sensitivity.py): how measured
probes translate into cohorts drawn as the volume issue specifies."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from volumes_lesion_sensitivity import grid_table, implied_cohorts  # noqa: E402


def probes(auroc_of_contrast: dict[float, list[float]], diameters=(10.0, 24.0)) -> list[dict]:
    return [{"contrast_set": c, "diameter_mm": d, "position_median": {"auroc": v}}
            for c, values in auroc_of_contrast.items() for d in diameters for v in values]


def test_faint_half_of_the_range_missed_halves_the_expected_auroc():
    # contrasts are uniform in 15-40%; 0.15 is the nearest grid value below 27.5%, 0.40 above it
    rows = probes({0.15: [0.0, 0.0], 0.40: [1.0, 1.0]})
    out = implied_cohorts(rows, "position_median", [0.15, 0.40], [10.0, 24.0], draws=40000)
    assert out["expected_random_lesion_auroc"] == pytest.approx(0.5, abs=0.01)
    assert out["expected_cohort_auroc_if_consistent_perfect"] == pytest.approx(0.75, abs=0.005)
    # random-lesion AUROC >= 0.9 needs all five draws above 27.5%: 0.5 ** 5
    assert out["share_of_draws_random_auroc_ge_0.9"] == pytest.approx(0.5 ** 5, abs=0.005)


def test_replicates_are_resampled_not_averaged():
    rows = probes({0.15: [0.8, 1.0], 0.40: [1.0, 1.0]})
    out = implied_cohorts(rows, "position_median", [0.15, 0.40], [10.0, 24.0], draws=40000)
    assert out["expected_random_lesion_auroc"] == pytest.approx(0.95, abs=0.01)
    assert 0.0 < out["share_of_draws_random_auroc_ge_0.9"] < 1.0  # the mean (0.9) alone would give 1


def test_grid_table_reports_each_cell():
    table = grid_table(probes({0.15: [0.2, 0.6], 0.40: [1.0, 1.0]}), "position_median", [0.15, 0.40], [10.0, 24.0])
    assert table["c0.15_d10"] == {"mean": 0.4, "min": 0.2, "n": 2}
    assert table["c0.4_d24"] == {"mean": 1.0, "min": 1.0, "n": 2}
