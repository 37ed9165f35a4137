"""Issue 24 item 6: refactoring the house must not move a single score.

The golden file is the scores.csv of ``codegraph-ad evaluate bottle --image-size 224
--no-cache --no-overlays`` written by the code before the refactor (commit b8119d9),
with the category folder replaced by ``{CATEGORY}``. Float results depend on the CPU's
kernels, so the file is named after ``torch.backends.cpu.get_cpu_capability()``; on a
machine of another capability the test skips rather than compare across kernels.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from codegraph_ad.cli import main

GOLDEN = Path(__file__).parent / "golden"


@pytest.mark.realdata
def test_bottle_224_scores_csv_is_byte_identical_to_the_golden_file(bottle_dir, tmp_path):
    capability = torch.backends.cpu.get_cpu_capability()
    golden = GOLDEN / f"bottle_224_codegraph_scores.{capability}.csv"
    if not golden.is_file():
        pytest.skip(f"no golden scores for CPU capability {capability} (have: "
                    f"{sorted(p.name for p in GOLDEN.glob('bottle_224_*.csv'))})")
    out = tmp_path / "eval"
    assert main(["evaluate", str(bottle_dir), "--out", str(out), "--image-size", "224", "--no-cache",
                 "--no-overlays", "--quiet"]) == 0
    written = (out / "scores.csv").read_text().replace(str(bottle_dir), "{CATEGORY}")
    assert written == golden.read_text()
