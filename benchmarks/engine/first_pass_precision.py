"""CoDeGraph's first pass (minima with argmins, every layer and degree) per block precision,
on real features, in one process.

    python benchmarks/engine/first_pass_precision.py [--size 224] [--repeats 2] [--settings fp32,bf16_none]

writes benchmarks/results/first_pass_precision_<cpu capability>_<size>.json and .md. Random
features have no near duplicates, so they hide the fp32 recompute of small distances
(engine/mutual.py ``_exact_small_distances``); bottle's dark background makes many, so the
batch is MVTec bottle's test set (83 images). Settings, interleaved, best of ``--repeats``:
fp32; bf16 and int8 with the recompute on the graph degree's maps only (what CoDeGraph
asks for); bf16 with it on every map (session 22's rule); bf16 without any; bf16x3 (each
operand in two bf16 parts, no recompute: what ``fast`` may pick for CoDeGraph). For each:
seconds, the share of graph-map entries below the recompute bound, the largest distance error
against fp32 on the graph maps' small entries (the ones the endurance ratios divide), and on
every map the median and 99th-percentile relative error of the distances below 0.05 (the
dependency ratios read all maps).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import BOTTLE, RESULTS, machine_info  # noqa: E402

from codegraph_ad.config import EngineConfig, FeatureConfig, GraphConfig, LNAMDConfig, RunConfig  # noqa: E402
from codegraph_ad.datasets.mvtec import read_mvtec_category  # noqa: E402
from codegraph_ad.engine import mutual  # noqa: E402
from codegraph_ad.engine.products import precision_available  # noqa: E402
from codegraph_ad.features.extractor import FeatureExtractor  # noqa: E402
from codegraph_ad.io.batch import load_batch  # noqa: E402
from codegraph_ad.methods.first_pass import compute_first_pass  # noqa: E402

GRAPH_DEGREE = GraphConfig().graph_degree
DEGREES = LNAMDConfig().degrees
SETTINGS = {  # name: (precision, degrees recomputed in fp32; () = none)
    "fp32": ("fp32", None),
    "bf16_graph_maps": ("bf16", (GRAPH_DEGREE,)),
    "bf16_every_map": ("bf16", tuple(DEGREES)),
    "bf16_none": ("bf16", ()),
    "int8_graph_maps": ("int8", (GRAPH_DEGREE,)),
    "bf16x3": ("bf16x3", None),  # two bf16 parts per operand: no recompute (engine/products.py)
}


def bottle_features(size: int):
    samples = read_mvtec_category(BOTTLE, split="test")
    batch = load_batch([s.image_path for s in samples], size, progress=False)
    cfg = RunConfig(features=FeatureConfig(image_size=size))
    return FeatureExtractor.from_config(cfg, cache=False).transform_batch(batch)


def run(features, precision: str, exact: tuple[int, ...] | None):
    t0 = time.perf_counter()
    first = compute_first_pass(features, LNAMDConfig(), EngineConfig(precision=precision), exact_degrees=exact)
    return time.perf_counter() - t0, first


def graph_error(first, reference) -> tuple[float, float]:
    """(share of graph-map entries below the bound, largest |d - d_fp32| among them)."""
    small = total = 0
    worst = 0.0
    for (li, r), pm in reference.minima.items():
        if r != GRAPH_DEGREE:
            continue
        ref = pm.dist
        finite = torch.isfinite(ref)
        below = finite & (ref < mutual._EXACT_BELOW)
        small += int(below.sum())
        total += int(finite.sum())
        if below.any():
            worst = max(worst, float((first.minima[(li, r)].dist[below] - ref[below]).abs().max()))
    return small / max(total, 1), worst


def all_maps_relative_error(first, reference, below: float = 0.05) -> tuple[float, float]:
    """(median, 99th percentile) of |d - d_fp32| / d_fp32 over every map's entries below ``below``."""
    rel = []
    for key, pm in reference.minima.items():
        ref = pm.dist
        small = torch.isfinite(ref) & (ref < below) & (ref > 0)
        if small.any():
            rel.append(((first.minima[key].dist[small] - ref[small]).abs() / ref[small]).double())
    if not rel:
        return 0.0, 0.0
    r = torch.cat(rel)
    r = r[torch.randperm(r.numel(), generator=torch.Generator().manual_seed(0))[:1_000_000]]  # quantile's size limit
    return float(r.median()), float(torch.quantile(r, 0.99))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--settings", default=",".join(SETTINGS), help="comma-separated names (fp32 always runs)")
    a = ap.parse_args()
    if not BOTTLE.exists():
        raise SystemExit(f"bottle not found at {BOTTLE}")
    features = bottle_features(a.size)
    wanted = {"fp32", *a.settings.split(",")}
    settings = {k: v for k, v in SETTINGS.items() if k in wanted and precision_available(v[0], "cpu")}
    best: dict[str, float] = {}
    firsts = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the reduced-precision warning, expected here
        for _ in range(a.repeats):
            for name, (precision, exact) in settings.items():
                secs, first = run(features, precision, exact)
                best[name] = min(best.get(name, float("inf")), secs)
                firsts[name] = first
                print(f"{name}: {secs:.1f} s", flush=True)
    reference = firsts["fp32"]
    rows = []
    for name, (precision, exact) in settings.items():
        share, worst = graph_error(firsts[name], reference)
        med, p99 = all_maps_relative_error(firsts[name], reference)
        rows.append({"setting": name, "precision": precision, "recomputed_degrees": exact,
                     "seconds": round(best[name], 2), "vs_fp32": round(best["fp32"] / best[name], 2),
                     "graph_entries_below_bound": round(share, 4), "graph_small_max_error": worst,
                     "all_maps_below_0.05_relative_error_median": med, "all_maps_below_0.05_relative_error_p99": p99})
    out = {"benchmark": "first_pass_precision", "size": a.size, "n_images": features.n_images,
           "bound": mutual._EXACT_BELOW, "repeats": a.repeats, "threads": torch.get_num_threads(),
           "machine": machine_info(), "rows": rows}
    cap = str(out["machine"].get("torch_cpu_capability", "cpu")).lower()
    stem = RESULTS / f"first_pass_precision_{cap}_{a.size}"
    stem.with_suffix(".json").write_text(json.dumps(out, indent=2) + "\n")
    lines = [f"# CoDeGraph first pass per precision: bottle, {features.n_images} images, {a.size} px",
             "", f"{out['machine'].get('cpu')} ({cap}), {out['threads']} threads, best of {a.repeats}. "
             f"Bound {mutual._EXACT_BELOW}: distances below it are recomputed in fp32 on the listed degrees.", "",
             "| setting | seconds | fp32 / setting | graph entries below bound | max error there "
             "| every map, d < 0.05: median / p99 relative error |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['setting']} | {r['seconds']} | {r['vs_fp32']}x | {100 * r['graph_entries_below_bound']:.1f}% "
                     f"| {r['graph_small_max_error']:.2e} | {r['all_maps_below_0.05_relative_error_median']:.1e} / "
                     f"{r['all_maps_below_0.05_relative_error_p99']:.1e} |")
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
