"""One real small run per session (backbone loaded once), shared by the report tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.report.runs import SMALL, make_category


@pytest.fixture(scope="session")
def small_backbone():
    from codegraph_ad.api import load_backbone

    return load_backbone(SMALL)


@pytest.fixture(scope="session")
def evaluated_run(tmp_path_factory, small_backbone) -> Path:
    """An ``evaluate`` run (labels, masks, metrics.json, CoDeGraph diagnostics) at 56 px."""
    from codegraph_ad.api import evaluate

    root = tmp_path_factory.mktemp("category")
    cat = make_category(root)
    out = root / "run"
    evaluate(cat, out, SMALL, progress=False, backbone=small_backbone)
    return out
