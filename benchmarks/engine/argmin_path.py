"""CoDeGraph's first-pass product (minima with argmins) along its three column-reduction
paths, in one process (engine/products.py):

- ``padded`` (today): CPU blocks are written with rows padded by a cache line
  (``_padded_product``), and every reduction runs in place;
- ``transposed`` (sessions 22-24): unpadded blocks, whose 4 KB-aliased column reductions go
  through transposed row copies (``_best_over_rows``);
- ``in_place``: unpadded blocks reduced in place whatever the stride (PyTorch's max with
  indices over the aliased stride).

    python benchmarks/engine/argmin_path.py [--n 24] [--repeats 3] [--threads 1] [--tag T]
writes benchmarks/results/argmin_path_<cpu capability>_t<threads>[_<tag>].json. The paths are
the same code with ``_ROW_PAD_BYTES`` set to 0 and ``_aliased_reduction`` forced to False;
runs interleaved, best of ``--repeats``. Random unit features, C = 384; M = 1,024 (448 px)
and M = 256 (224 px).
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
PATHS = ("padded", "transposed", "in_place")


def timed_minima(x: torch.Tensor, precision: str, path: str) -> tuple[float, torch.Tensor, torch.Tensor]:
    aliased, pad = products._aliased_reduction, products._ROW_PAD_BYTES
    if path != "padded":
        products._ROW_PAD_BYTES = 0
    if path == "in_place":
        products._aliased_reduction = lambda sim, dim: False
    try:
        t0 = time.perf_counter()
        got = pair_minima(x, precision=precision, with_argmin=True)
        return time.perf_counter() - t0, got.dist, got.argmin
    finally:
        products._aliased_reduction, products._ROW_PAD_BYTES = aliased, pad


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=24)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--precisions", default="fp32,bf16,bf16x3")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    ap.add_argument("--tag", default="")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    rows = []
    for m in (1024, 256):
        n = a.n if m == 1024 else a.n * 4
        x = torch.nn.functional.normalize(torch.randn(n, m, 384, generator=torch.Generator().manual_seed(0)), dim=-1)
        for precision in a.precisions.split(","):
            best = dict.fromkeys(PATHS, float("inf"))
            out = {}
            for _ in range(a.repeats):
                for path in PATHS:
                    secs, dist, arg = timed_minima(x, precision, path)
                    best[path] = min(best[path], secs)
                    out[path] = (dist, arg)
            row = {"m": m, "n": n, "precision": precision,
                   **{f"seconds_{p}": round(best[p], 3) for p in PATHS},
                   "padded_vs_transposed": round(best["transposed"] / best["padded"], 2),
                   "padded_vs_in_place": round(best["in_place"] / best["padded"], 2),
                   "same_minima": all(torch.equal(out[p][0], out["padded"][0]) for p in PATHS),
                   "same_argmins": all(torch.equal(out[p][1], out["padded"][1]) for p in PATHS)}
            print(json.dumps(row), flush=True)
            rows.append(row)
    result = {"machine": machine_info(), "threads": torch.get_num_threads(), "c": 384, "rows": rows}
    cap = str(result["machine"].get("torch_cpu_capability", "cpu")).lower()
    RESULTS.mkdir(exist_ok=True)
    name = f"argmin_path_{cap}_t{result['threads']}" + (f"_{a.tag}" if a.tag else "")
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
