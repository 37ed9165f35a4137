"""Position-restricted references (``--window w``) on real batches (issue 27 item 4).

    python benchmarks/window.py [--sizes 224] [--categories bottle,mpdd] [--windows none,1,2,3,4]
        [--methods musc,codegraph] [--threads 2] [--limit N]

Two parts per size and category (the test split, features cached, not timed):
1. Where the nearest patches are today: from the unrestricted first pass (layer 1 and the
   deepest layer, r = 1), the Chebyshev grid offset between each patch and its nearest patch
   in each of the ceil(0.3 (N-1)) nearest images (the ones MSM averages), as the share of
   matches within w = 0..6 cells: the w a user should pick for an aligned product.
2. MuSc (q 0.3) and CoDeGraph (defaults) with each window: scoring time of fit_predict,
   image AUROC, pixel AUROC, pixel F1-max, AUPRO, against the unrestricted run.
Writes benchmarks/results/window_<size>[_limit<N>].json and .md.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import RESULTS, machine_info, peak_rss_mb  # noqa: E402
from codegraph_matrix import CATEGORIES  # noqa: E402
from screening import Category  # noqa: E402

from codegraph_ad.api import versions  # noqa: E402
from codegraph_ad.engine.mutual import pair_minima  # noqa: E402
from codegraph_ad.features.lnamd import lnamd  # noqa: E402
from codegraph_ad.io.atomic import write_json  # noqa: E402

MAX_OFFSET = 6


def offset_shares(feats: torch.Tensor, grid: tuple[int, int], q: float = 0.3) -> list[float]:
    """Share of nearest-patch matches (in each patch's ceil(q (N-1)) nearest images) whose
    grid offset is at most w, for w = 0..MAX_OFFSET."""
    n, m, _ = feats.shape
    pm = pair_minima(feats, with_argmin=True)
    k = max(1, math.ceil(q * (n - 1) - 1e-9))
    nearest = torch.topk(pm.dist, k, dim=1, largest=False).indices  # (N, k, M) image ids
    arg = torch.gather(pm.argmin.long(), 1, nearest)  # (N, k, M) patch index in that image
    own = torch.arange(m).view(1, 1, m)
    w = grid[1]
    cheb = torch.maximum((arg // w - own // w).abs(), (arg % w - own % w).abs())
    return [round(float((cheb <= r).float().mean()), 4) for r in range(MAX_OFFSET + 1)]


def run_size(size: int, a: argparse.Namespace) -> None:
    stem = f"window_{size}" + (f"_limit{a.limit}" if a.limit else "")
    path = Path(a.out_dir) / f"{stem}.json"
    windows = [None if w == "none" else int(w) for w in a.windows.split(",") if w]
    out: dict[str, Any] = {"benchmark": "window", "command": " ".join(sys.argv[1:]), "size": size,
                           "threads": a.threads, "limit": a.limit, "categories": {}, "complete": False,
                           "machine": machine_info()}
    a.precision = "fp32"
    for name in [c for c in a.categories.split(",") if c]:
        cat = Category(name, size, a)
        layers = cat.features.layers
        offsets = {f"layer {li + 1}": offset_shares(lnamd(layers[:, li], cat.features.grid, 1), cat.features.grid)
                   for li in (0, layers.shape[1] - 1)}
        print(f"{name} {size} px: {len(cat.labels)} images; share of matches within w = 0..{MAX_OFFSET}: {offsets}",
              flush=True)
        rows: list[dict] = []
        out["categories"][name] = {"n_images": int(len(cat.labels)), "n_anomalous": int(cat.labels.sum()),
                                   "grid": list(cat.features.grid), "offset_shares": offsets, "rows": rows}
        for window in windows:
            for method in [m for m in a.methods.split(",") if m]:
                r = cat.score(method, 100.0, a, window)
                rows.append(r)
                print(f"  {method} w={window}: {r['time_s']} s, image AUROC {r['image']['auroc']}, "
                      f"pixel F1 {r['pixel']['f1_max']}, AUPRO {r['pixel']['aupro']}", flush=True)
                base = next((b for b in rows if b["method"] == method and b["window"] is None), None)
                if base is not None:
                    r["time_vs_unrestricted"] = round(r["time_s"] / base["time_s"], 3)
                    r["f1_vs_unrestricted_points"] = round(r["pixel"]["f1_max"] - base["pixel"]["f1_max"], 2)
                write_json(path, out)
    out.update(complete=True, peak_rss_mb=round(peak_rss_mb(), 1), versions=versions())
    write_json(path, out)
    write_markdown(out, path.with_suffix(".md"))


def write_markdown(out: dict, path: Path) -> None:
    mach = out["machine"]
    lines = [f"# Position windows at {out['size']} px", "",
             f"Machine: {mach.get('cpu', '?')}, torch CPU capability {mach.get('torch_cpu_capability', '?')}, "
             f"{out['threads']} threads, fp32. Scoring time of fit_predict only (features cached).", ""]
    for name, cat in out["categories"].items():
        lines += [f"## {name} ({cat['n_images']} images, grid {cat['grid'][0]}x{cat['grid'][1]})", "",
                  "Share of today's nearest-patch matches (in the images MSM averages) within w cells:", "",
                  "| layer | " + " | ".join(f"w={w}" for w in range(MAX_OFFSET + 1)) + " |",
                  "|---|" + "---|" * (MAX_OFFSET + 1)]
        lines += [f"| {k} | " + " | ".join(f"{100 * v:.1f}%" for v in vals) + " |"
                  for k, vals in cat["offset_shares"].items()]
        lines += ["", "| method | window | time s | time vs none | image AUROC | pixel AUROC | pixel F1-max (vs none) "
                  "| AUPRO | excluded % |", "|---|---|---|---|---|---|---|---|---|"]
        for r in cat["rows"]:
            d = r.get("f1_vs_unrestricted_points")
            lines.append(f"| {r['method']} | {r['window'] if r['window'] is not None else 'none'} | {r['time_s']} | "
                         f"{r.get('time_vs_unrestricted', '-')} | {r['image']['auroc']} | {r['pixel']['auroc']} | "
                         f"{r['pixel']['f1_max']}{'' if d is None else f' ({d:+.2f})'} | {r['pixel']['aupro']} | "
                         f"{'-' if r['exclusion_rate_pct'] is None else r['exclusion_rate_pct']} |")
        lines.append("")
    path.write_text("\n".join(lines) + "\n")
    print(f"wrote {path}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="224")
    ap.add_argument("--categories", default="bottle,mpdd")
    ap.add_argument("--windows", default="none,1,2,3,4")
    ap.add_argument("--methods", default="musc,codegraph")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--limit", type=int, default=0, help="images per category, spread over the split (smoke runs)")
    ap.add_argument("--out-dir", default=str(RESULTS))
    a = ap.parse_args()
    unknown = [c for c in a.categories.split(",") if c and c not in CATEGORIES]
    if unknown:
        sys.exit(f"--categories: unknown {unknown} (one of {', '.join(CATEGORIES)})")
    for size in (int(s) for s in a.sizes.split(",") if s):
        run_size(size, a)


if __name__ == "__main__":
    main()
