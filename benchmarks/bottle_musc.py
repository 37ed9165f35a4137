"""MuSc on the MVTec AD bottle test split: metrics, time split, peak memory.

    python benchmarks/bottle_musc.py --size 448 --q 0.3
writes benchmarks/results/bottle_musc_<size>_q<q>[_<tag>].json (run each size in its own
process so that peak memory is per configuration).
"""

from __future__ import annotations

import argparse
import json
import platform
import time

from common import BOTTLE, RESULTS, peak_rss_mb, pct

import numpy as np

from codegraph_ad import EngineConfig, FeatureConfig, MSMConfig, RsCINConfig, RunConfig, evaluate
from codegraph_ad.metrics import image_metrics
from codegraph_ad.api import load_backbone, versions
from codegraph_ad.config import config_to_dict
from codegraph_ad.engine.mutual import resolve_precision
from codegraph_ad.engine.products import make_product


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=448)
    ap.add_argument("--q", type=float, default=0.3)
    ap.add_argument("--final-norm", action="store_true")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--tag", default="")
    ap.add_argument("--note", default="", help="conditions of this measurement, kept in the results file")
    ap.add_argument("--run-dir", default=None, help="also write the run's outputs here (for `codegraph-ad analyze`)")
    a = ap.parse_args()
    # RsCIN on in this run only so that both image scores (with and without) come out of it
    cfg = RunConfig(method="musc", features=FeatureConfig(image_size=a.size, final_norm=a.final_norm),
                    msm=MSMConfig(q=a.q), rscin=RsCINConfig(enabled=True), engine=EngineConfig(precision=a.precision))
    t0 = time.perf_counter()
    backbone = load_backbone(cfg)
    load_s = time.perf_counter() - t0
    ev = evaluate(BOTTLE, a.run_dir, cfg, progress=False, overlays=False, backbone=backbone, overwrite=True)
    t = ev.run.timings
    labels = np.array([0 if p.parent.name == "good" else 1 for p in ev.run.paths])
    out = {
        "benchmark": "bottle_musc",
        "dataset": "MVTec AD bottle test split (83 images)",
        "protocol": "pixel metrics at 256x256, masks resized bilinearly and binarised at 0.5",
        # image scores as the default configuration gives them (max of the map, RsCIN off),
        # and with RsCIN on, both from the same run
        "image": pct(image_metrics(ev.run.scores.raw_image_scores, labels)),
        "image_with_rscin": pct(ev.metrics["image"]),
        "pixel": pct(ev.metrics["pixel"]),
        "time_s": {"backbone_load": round(load_s, 2), "read": round(t["read_s"], 2),
                   "feature_extraction": round(t["features_s"], 2), "scoring": round(t["scoring_s"], 2),
                   "metrics": round(t["metrics_s"], 2)},
        "total_s": round(load_s + sum(t[k] for k in ("read_s", "features_s", "scoring_s", "metrics_s")), 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        # what `fast` resolved to in this process (the choice is cached per patch count)
        "product": type(make_product(resolve_precision(a.precision, (a.size // 14) ** 2), (a.size // 14) ** 2)).__name__,
        "config": config_to_dict(cfg),
        "versions": versions(),
        "machine": {"cpu_count": __import__("os").cpu_count(), "processor": platform.processor()},
    }
    name = f"bottle_musc_{a.size}_q{a.q}" + ("_finalnorm" if a.final_norm else "") + (f"_{a.tag}" if a.tag else "")
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    if path.exists():  # keep the time of the run this one replaces, side by side
        old = json.loads(path.read_text())
        out["previous"] = {"time_s": old.get("time_s"), "total_s": old.get("total_s", round(sum(old.get("time_s", {}).values()), 1)),
                           "versions": old.get("versions"), "note": old.get("note")}
    if a.note:
        out["note"] = a.note
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({k: out[k] for k in ("image", "image_with_rscin", "pixel", "time_s", "peak_rss_mb")}, indent=1))


if __name__ == "__main__":
    main()
