"""One engine-benchmark case, run in its own process so that its peak memory is its own.

    python cases.py --kind naive|engine --precision fp32|fast --n 100 --m 1024 [--real FEATS.pt]
prints one JSON line: seconds, executed GFLOP, peak RSS, whether the scores are finite, and
the matrix-multiply peak of the case's own product type measured right before and right after
its timed part (the development machine is a VM whose speed drifts by 2x within an hour: a
peak taken minutes earlier is no reference).
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import torch

from codegraph_ad.engine.msm import msm_k, msm_scores
from codegraph_ad.engine.autotune import product_seconds
from codegraph_ad.engine.mutual import pair_minima, resolve_precision
from codegraph_ad.engine.products import make_product

PEAK_SIDE = 2048  # the product the peak is measured on: (2048 x 384) @ (384 x 2048)


def product_peak(product, c: int = 384, repeats: int = 5) -> float:
    """GOPS of the best of ``repeats`` square block products of ``product``'s type."""
    a = torch.nn.functional.normalize(torch.randn(PEAK_SIDE, c, generator=torch.Generator().manual_seed(1)), dim=1)
    return 2 * PEAK_SIDE * PEAK_SIDE * c / product_seconds(product, a, repeats) / 1e9


Q = 0.3


def naive_scores(x: torch.Tensor, q: float = Q) -> torch.Tensor:
    """The straightforward MuSc loop: per query image, distances to every patch of every other image."""
    n, m, c = x.shape
    k = msm_k(n - 1, q)
    out = torch.empty(n, m)
    for i in range(n):
        others = torch.cat([x[:i], x[i + 1 :]]).reshape(-1, c)  # ((N-1) M, C)
        d = torch.sqrt(torch.clamp(2 - 2 * (x[i] @ others.T), min=0))  # (M, (N-1) M)
        per_image = d.view(m, n - 1, m).min(dim=2).values  # (M, N-1)
        out[i] = per_image.topk(k, dim=1, largest=False).values.mean(dim=1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kind", choices=["naive", "engine"], required=True)
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--m", type=int, default=1024)
    ap.add_argument("--c", type=int, default=384)
    ap.add_argument("--real", default=None, help="a .pt file with (N, M, C) unit features")
    ap.add_argument("--save", default=None, help="write the scores here (.pt) for the accuracy check")
    a = ap.parse_args()
    if a.real:
        x = torch.load(a.real)
    else:
        g = torch.Generator().manual_seed(0)
        x = torch.nn.functional.normalize(torch.randn(a.n, a.m, a.c, generator=g), dim=-1)
    n, m, c = x.shape
    product = make_product("fp32" if a.kind == "naive" else resolve_precision(a.precision, m), m)  # 'fast' calibrates here
    mode = type(product).__name__
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    peak_before = product_peak(product, c)
    t0 = time.perf_counter()
    if a.kind == "naive":
        scores = naive_scores(x)
        gflop = 2.0 * n * (n - 1) * m * m * c / 1e9
        mode = "fp32"
    else:
        minima = pair_minima(x, precision=a.precision)
        scores = msm_scores(minima.dist, Q)
        gflop = 2.0 * (n * (n + 1) / 2) * m * m * c / 1e9  # one block per unordered pair (+ diagonal)
    secs = time.perf_counter() - t0
    peak_after = product_peak(product, c)
    if a.save:
        torch.save(scores, a.save)
    print(json.dumps({
        "kind": a.kind, "precision": a.precision, "product": mode, "n": n, "m": m, "c": c,
        "seconds": round(secs, 3), "gflop": round(gflop, 1), "gflops": round(gflop / secs, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "features_rss_mb": round(base_rss, 1), "threads": torch.get_num_threads(),
        "finite": bool(torch.isfinite(scores).all()),
        "local_peak_gflops": round(max(peak_before, peak_after), 1),
        "local_peak_before_after": [round(peak_before, 1), round(peak_after, 1)],
    }))


if __name__ == "__main__":
    main()
