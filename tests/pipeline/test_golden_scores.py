"""Issue 24 item 6: refactoring the house must not move a single score.

The golden file is the scores.csv of ``codegraph-ad evaluate bottle --image-size 224
--no-cache --no-overlays`` written by the code before the refactor (commit b8119d9),
with the category folder replaced by ``{CATEGORY}``. Float results depend on the CPU's
kernels, so the file is named after ``torch.backends.cpu.get_cpu_capability()``; on a
machine of another capability the test skips rather than compare across kernels.

Columns added since (``anomalous``, issue 26) are not in the golden file: the test compares
exactly the golden file's columns, every value string-identical, and checks the new ones
separately.
"""

from __future__ import annotations

import csv
import io
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
    old_rows = list(csv.reader(io.StringIO(golden.read_text())))
    new_rows = list(csv.reader(io.StringIO(written)))
    header = new_rows[0]
    assert set(old_rows[0]) <= set(header) and len(new_rows) == len(old_rows)
    keep = [header.index(c) for c in old_rows[0]]
    assert [[r[i] for i in keep] for r in new_rows] == old_rows
    assert header == [*old_rows[0][:4], "anomalous", *old_rows[0][4:]]
    assert {r[header.index("anomalous")] for r in new_rows[1:]} <= {"true", "false"}
