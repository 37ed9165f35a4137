"""A large batch through MuSc's full scoring: N = 500, M = 1024, C = 384, 4 layers x 3 degrees.

    python benchmarks/engine/large_batch.py [--device cpu|cuda] [--precision fp32|fast]
                                             [--degrees 1,3,5] [--out FILE]

Random tokens stand in for features (the cost does not depend on their values). Reports
wall time, peak host memory (RSS) and, on a GPU, peak device memory. Maps are scored one
at a time, so peak memory does not grow with the number of maps: a run with
``--degrees 1 --layers 1`` measures the same peak as the full 12 maps at 1/12 of the time.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import time
from pathlib import Path

import torch

from codegraph_ad.engine.memory import estimate_memory
from codegraph_ad.engine.mutual import resolve_precision
from codegraph_ad.engine.products import make_product
from codegraph_ad.features.extract import FeatureSet
from codegraph_ad.methods.musc import MuSc


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--m", type=int, default=1024)
    ap.add_argument("--c", type=int, default=384)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--degrees", default="1,3,5")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--budget-mb", type=int, default=8000)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    dev = torch.device(a.device)
    side = int(a.m ** 0.5)
    g = torch.Generator(device=dev).manual_seed(0)
    layers = torch.randn(a.n, a.layers, a.m, a.c, generator=g, device=dev)
    feats = FeatureSet(layers, torch.randn(a.n, a.c), (side, side))
    degrees = tuple(int(x) for x in a.degrees.split(","))
    est = estimate_memory(a.n, a.m, a.c, a.layers, len(degrees), "musc")
    method = MuSc(degrees=degrees, q=0.3, precision=a.precision, memory_budget_mb=a.budget_mb)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    res = method.fit_predict(feats)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    secs = time.perf_counter() - t0
    out = {
        "n": a.n, "m": a.m, "c": a.c, "layers": a.layers, "degrees": list(degrees), "maps": a.layers * len(degrees),
        "device": str(dev), "device_name": torch.cuda.get_device_name(0) if dev.type == "cuda" else platform.processor(),
        "precision": a.precision, "product": type(make_product(resolve_precision(a.precision, a.m), a.m)).__name__,  # cached choice
        "seconds": round(secs, 2),
        "peak_host_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "peak_device_mb": round(torch.cuda.max_memory_allocated() / 1e6, 1) if dev.type == "cuda" else None,
        "estimate_mb": round(est.total_mb, 1),
        "scores_finite": bool(torch.isfinite(res.patch_scores).all()),
        "torch": torch.__version__,
    }
    print(json.dumps(out, indent=1))
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
