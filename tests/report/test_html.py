"""report.html from real and synthetic run folders: content, offline-ness and size."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from codegraph_ad.cli import _COMMAND_MODULES
from codegraph_ad.errors import InputError
from codegraph_ad.io.atomic import write_json
from codegraph_ad.report.cli import register
from codegraph_ad.report.html import ASSETS_DIR, REPORT_NAME, ReportConfig, write_report


def _data(page: str) -> dict:
    return json.loads(re.search(r'id="report-data">(.*?)</script>', page, re.S).group(1))


def _assert_offline(page: str) -> None:
    """No resource is fetched from a network: every src/href is inline, relative or an anchor."""
    for attr, value in re.findall(r'\b(src|href)="([^"]*)"', page):
        assert not re.match(r"(https?:)?//", value), f"{attr}={value[:60]}"
    assert "@import" not in page and "url(http" not in page


def test_report_of_evaluate_run(evaluated_run):
    path = write_report(evaluated_run)
    assert path == evaluated_run / REPORT_NAME
    page = path.read_text()
    _assert_offline(page)
    manifest = json.loads((evaluated_run / "run.json").read_text())
    n = len(manifest["names"])
    assert len(re.findall(r'<tr data-idx="\d+"', page)) == n
    for name in manifest["names"]:
        assert f">{name}<" in page
    assert 'id="metrics-table"' in page and "aupro" in page
    assert 'data-key="label"' in page and 'id="filter-label"' in page
    assert "<svg" in page and 'data-open="' in page  # CoDeGraph graph section
    data = _data(page)
    assert len(data["details"]) == n
    assert all({"input", "map", "overlay"} <= set(d) for d in data["details"])
    assert all(v.startswith("data:image/jpeg;base64,") for d in data["details"] for v in d.values())
    # Rows come sorted by score, highest first.
    scores = [float(v) for v in re.findall(r'data-key="score" data-value="([^"]+)"', page)]
    assert scores == sorted(scores, reverse=True)


def _cli(argv: list[str]) -> int:
    """Run this package's subcommand through its own ``register`` (the CLI's hook)."""
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    a = parser.parse_args(argv)
    return a.func(a)


def test_cli_report(evaluated_run, capsys):
    assert "codegraph_ad.report.cli" in _COMMAND_MODULES
    assert _cli(["report", str(evaluated_run), "--thumb-size", "64"]) == 0
    assert "report written to" in capsys.readouterr().out


def test_missing_run_folder_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="not a finished run folder"):
        _cli(["report", str(tmp_path)])


def _synthetic_run(root: Path, n: int, side: int = 16, grid: tuple[int, int] = (4, 4), excluded: bool = False) -> Path:
    """A run folder written directly: tiny maps and overlays, no input images on disk."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    m = grid[0] * grid[1]
    names = [f"img_{i:04d}" for i in range(n)]
    patch = rng.random((n, m)).astype(np.float32)
    np.save(root / "patch_scores.npy", patch)
    (root / "maps").mkdir()
    (root / "overlays").mkdir()
    for i, name in enumerate(names):
        amap = np.kron(patch[i].reshape(grid), np.ones((side // grid[0], side // grid[1]), np.float32))
        np.save(root / "maps" / f"{name}.npy", amap)
        Image.fromarray((rng.random((side, side, 3)) * 255).astype(np.uint8)).save(root / "overlays" / f"{name}.png")
    if excluded:
        np.save(root / "excluded.npy", rng.random((n, m)) < 0.1)
    rows = [{"name": name, "path": f"/nonexistent/{name}.png", "score": float(patch[i].max()),
             "raw_score": float(patch[i].max())} for i, name in enumerate(names)]
    write_json(root / "scores.json", {"config": {}, "versions": {}, "timings": {}, "diagnostics": {"method": "musc"},
                                      "images": rows})
    write_json(root / "run.json", {"names": names, "paths": [r["path"] for r in rows],
                                   "original_sizes": [[side, side]] * n, "grid": list(grid),
                                   "config": {"method": "musc"}, "versions": {"python": "3"}, "timings": {"read_s": 1.0}})
    return root


def test_thousand_rows_stay_small(tmp_path):
    """1,000 tiny images: the page grows by about one thumbnail per row, details go to assets."""
    run = _synthetic_run(tmp_path / "run", 1000, excluded=True)
    page_path = write_report(run)
    size = page_path.stat().st_size
    page = page_path.read_text()
    assert len(re.findall(r'<tr data-idx="\d+"', page)) == 1000
    assert size < 1000 * 2500, f"{size} bytes for 1,000 tiny rows"
    data = _data(page)
    assert data["details"] is None and len(data["chunk_files"]) == 20
    chunk = (run / data["chunk_files"][0]).read_text()
    views = json.loads(chunk[chunk.index(",{") + 1 : chunk.rindex(");")])
    assert set(views) == {str(i) for i in range(50)}
    assert views["0"]["overlay"] == "overlays/img_0000.png"  # linked, not copied
    assert views["0"]["map"].startswith("data:image/jpeg;base64,")
    assert "input" not in views["0"]  # the input file is gone: no broken link
    _assert_offline(page)


def test_rebuild_removes_stale_chunks(tmp_path):
    run = _synthetic_run(tmp_path / "run", 12)
    write_report(run, ReportConfig(inline_detail_max_images=5, assets_chunk_images=5))
    assert sorted(p.name for p in (run / ASSETS_DIR).iterdir()) == [f"details_000{k}.js" for k in range(3)]
    write_report(run, ReportConfig(inline_detail_max_images=5, assets_chunk_images=12))
    assert sorted(p.name for p in (run / ASSETS_DIR).iterdir()) == ["details_0000.js"]
    write_report(run, ReportConfig(inline_detail_max_images=12))
    assert list((run / ASSETS_DIR).iterdir()) == []


def test_small_batch_inlines_everything(tmp_path):
    run = _synthetic_run(tmp_path / "run", 5)
    page = write_report(run, ReportConfig(inline_detail_max_images=5)).read_text()
    assert not (run / ASSETS_DIR).exists()
    assert all(v.startswith("data:") for d in _data(page)["details"] for v in d.values())


def test_names_are_escaped(tmp_path):
    run = _synthetic_run(tmp_path / "run", 3)
    scores = json.loads((run / "scores.json").read_text())
    scores["images"][0]["defect"] = "<script>alert(1)</script>"
    for r in scores["images"][1:]:
        r["defect"] = "ok"
    write_json(run / "scores.json", scores)
    page = write_report(run).read_text()
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_codegraph_graph_with_outlier_community(tmp_path):
    """A real CoDeGraph result on planted features: the outlier community is drawn in red."""
    from codegraph_ad.api import write_run
    from tests.report.runs import planted_codegraph_result

    result = planted_codegraph_result(tmp_path / "images")
    scores = result.scores
    write_run(result, tmp_path / "run", progress=False)
    page = write_report(tmp_path / "run").read_text()
    sub = scores.diagnostics["subsets"][0]
    assert sub["outlier_communities"], "the planted group should form an outlier community"
    assert page.count('fill="#d32f2f"') == sum(
        c["size"] for c in sub["communities"] if c["id"] in sub["outlier_communities"])
    assert 'class="outlier-row"' in page
    assert "<td>smallest community in the Tukey rule</td><td>2</td>" in page
    if scores.excluded.any():
        assert any("excluded" in d for d in _data(page)["details"])
