"""Helpers shared by the benchmark scripts: peak memory, result files, data location."""

from __future__ import annotations

import os
import platform
import resource
from pathlib import Path
from typing import Any

import torch

from codegraph_ad.api import versions
from codegraph_ad.config import GraphConfig, config_to_dict
from codegraph_ad.io.atomic import write_json

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


def machine_info() -> dict:
    """What decides which product is fastest: the CPU's model and vector extensions."""
    model, flags = platform.processor(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and not model:
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_int8", "amx_bf16")
    return {"cpu": model, "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "extensions": [f for f in wanted if f in flags], "torch": torch.__version__}


def run_record(config: Any) -> dict:
    """What every result file closes with: peak memory, the run's config, versions, machine."""
    return {"peak_rss_mb": round(peak_rss_mb(), 1), "config": config_to_dict(config), "versions": versions(),
            "machine": machine_info()}


def write_result(stem: str, tag: str, out: dict) -> Path:
    """``benchmarks/results/<stem>[_<tag>].json``, written atomically; returns its path."""
    path = RESULTS / (f"{stem}_{tag}.json" if tag else f"{stem}.json")
    write_json(path, out)
    print(f"wrote {path}")
    return path


def graph_with(graph: GraphConfig, changes: dict[str, Any]) -> GraphConfig:
    """``graph`` with GraphConfig fields changed from a command line's JSON (lists become tuples)."""
    from dataclasses import replace

    return replace(graph, **{k: tuple(v) if isinstance(v, list) else v for k, v in changes.items()})
