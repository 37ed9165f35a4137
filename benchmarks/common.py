"""Helpers shared by the benchmark scripts: peak memory, result files, data location."""

from __future__ import annotations

import os
import resource
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("CODEGRAPH_AD_DATA", REPO.parent / "shared" / "data"))
BOTTLE = DATA / "mvtec_ad_bottle" / "bottle"
RESULTS = REPO / "benchmarks" / "results"


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def pct(metrics: dict) -> dict:
    """Fractions -> percentages rounded to 2 decimals (None stays None)."""
    return {k: (None if v is None else round(100 * v, 2)) for k, v in metrics.items()}
