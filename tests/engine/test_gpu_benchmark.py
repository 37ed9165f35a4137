"""benchmarks/gpu.py: its smoke mode runs on the CPU and writes a complete results file, so the
script is known to work before a GPU machine is lent (the full smoke, every part, takes about
40 s on 2 cores; this runs the engine parts in a few seconds)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu.py"


@pytest.fixture(scope="module")
def gpu_bench():
    spec = importlib.util.spec_from_file_location("gpu_bench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_smoke_arguments(gpu_bench) -> None:
    a = gpu_bench.parse(["--smoke"])
    assert a.device == "cpu" and a.size == 56 and a.scale_n == [8, 12] and a.references == 4
    assert a.parts == list(gpu_bench.PARTS)
    full = gpu_bench.parse([])
    assert full.device == "cuda" and full.size == 448 and full.scale_n == [1000, 10000]
    assert full.references == 100 and full.volume_size == 336 and full.precisions == ["fp32", "bf16", "int8"]
    with pytest.raises(SystemExit):
        gpu_bench.parse(["--parts", "bottle,warp"])


def test_smoke_engine_parts_write_a_complete_file(gpu_bench, tmp_path: Path) -> None:
    out = tmp_path / "gpu_smoke.json"
    path = gpu_bench.main(["--smoke", "--parts", "env,agreement,scale", "--precisions", "fp32,int8",
                           "--out", str(out)])
    assert path == out
    record = json.loads(out.read_text())
    assert record["status"] == "complete" and record["smoke"] is True
    assert record["env"]["device"] == "cpu" and record["env"]["block_cap_mb"] == 4.0
    assert [e["name"] for e in record["agreement"]] == ["musc fp32 cpu"]
    runs = record["scale"]["runs"]
    assert "random Gaussian tokens" in record["scale"]["note"]
    assert [e["name"] for e in runs] == [
        "random tokens N=8", "musc fp32 N=8 K=4", "musc int8 N=8 K=4", "codegraph fp32 N=8 K=4",
        "codegraph int8 N=8 K=4", "random tokens N=12", "musc fp32 N=12 K=4", "musc int8 N=12 K=4",
        "codegraph fp32 N=12 K=4", "codegraph int8 N=12 K=4"]
    assert not [e for e in runs if "error" in e or "skipped" in e]
    assert all(e["scores_finite"] and e["seconds"] > 0 for e in runs if "ms_per_image" in e)


def test_an_error_is_kept_and_the_run_goes_on(gpu_bench, tmp_path: Path) -> None:
    import torch

    rec = gpu_bench.Recorder(tmp_path / "r.json", {"part": []}, 1.0, torch.device("cpu"))

    def boom() -> dict:
        raise RuntimeError("CUDA out of memory")

    assert rec.entry(rec.record["part"], "too big", boom) is None
    assert rec.entry(rec.record["part"], "fine", lambda: {"seconds": 1.0}) == {"name": "fine", "seconds": 1.0}
    saved = json.loads((tmp_path / "r.json").read_text())["part"]
    assert saved[0]["name"] == "too big" and "out of memory" in saved[0]["error"] and saved[1]["seconds"] == 1.0
    rec.deadline = 0.0
    rec.entry(rec.record["part"], "late", lambda: {"seconds": 2.0})
    assert rec.record["part"][-1] == {"name": "late", "skipped": "--max-minutes reached"}
