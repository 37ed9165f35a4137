"""CoDeGraph's first-pass product (minima with argmins) with and without the transposed-row
reduction for 4 KB-aliased strides (engine/products.py: ``_best_over_rows``), in one process.

    python benchmarks/engine/argmin_path.py [--n 24] [--repeats 3] [--threads 1]
writes benchmarks/results/argmin_path_<cpu capability>_t<threads>.json. The old path is the same code
with ``_aliased_reduction`` forced to False; the runs are interleaved, best of ``--repeats``.
Random unit features, C = 384; M = 1,024 (448 px) and M = 256 (224 px, where the rule keeps
the in-place reduction, so both columns should match).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import machine_info  # noqa: E402

from codegraph_ad.engine import products  # noqa: E402
from codegraph_ad.engine.mutual import pair_minima  # noqa: E402

RESULTS = Path(__file__).resolve().parents[1] / "results"


def timed_minima(x: torch.Tensor, precision: str, transposed: bool) -> tuple[float, torch.Tensor, torch.Tensor]:
    original = products._aliased_reduction
    if not transposed:
        products._aliased_reduction = lambda sim, dim: False
    try:
        t0 = time.perf_counter()
        got = pair_minima(x, precision=precision, with_argmin=True)
        return time.perf_counter() - t0, got.dist, got.argmin
    finally:
        products._aliased_reduction = original


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=24)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    rows = []
    for m in (1024, 256):
        n = a.n if m == 1024 else a.n * 4
        x = torch.nn.functional.normalize(torch.randn(n, m, 384, generator=torch.Generator().manual_seed(0)), dim=-1)
        for precision in a.precisions.split(","):
            best = {True: float("inf"), False: float("inf")}
            out = {}
            for _ in range(a.repeats):
                for transposed in (False, True):
                    secs, dist, arg = timed_minima(x, precision, transposed)
                    best[transposed] = min(best[transposed], secs)
                    out[transposed] = (dist, arg)
            row = {"m": m, "n": n, "precision": precision, "seconds_in_place": round(best[False], 3),
                   "seconds_transposed": round(best[True], 3), "speedup": round(best[False] / best[True], 2),
                   "same_minima": bool(torch.equal(out[True][0], out[False][0])),
                   "same_argmins": bool(torch.equal(out[True][1], out[False][1]))}
            print(json.dumps(row), flush=True)
            rows.append(row)
    result = {"machine": machine_info(), "threads": torch.get_num_threads(), "c": 384, "rows": rows}
    cap = str(result["machine"].get("torch_cpu_capability", "cpu")).lower()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"argmin_path_{cap}_t{result['threads']}.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
