"""Tokens held in float16 against float32 on real batches (``--token-dtype``, issue 27).

    python benchmarks/token_dtype.py [--sizes 224] [--categories bottle,mpdd] [--methods musc,codegraph]

For each size and category (the test split, features from the cache) both methods at their
defaults (MuSc q = 0.3) score the same tokens twice: held in float32, and rounded to float16
(``features.extract.held_as``). Recorded: the largest change of an image score and of a patch
score, the metrics of both, CoDeGraph's exclusion rate of both, and the tokens' memory.
Writes benchmarks/results/token_dtype.json and .md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import RESULTS, machine_info, pct  # noqa: E402
from screening import Category, estimator  # noqa: E402

from codegraph_ad.api import versions  # noqa: E402
from codegraph_ad.evaluation import batch_metrics, eval_maps  # noqa: E402
from codegraph_ad.features.extract import held_as  # noqa: E402
from codegraph_ad.io.atomic import write_json, write_text  # noqa: E402

EVAL_SIZE = 256


def scored(cat: Category, method: str, features, a: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    res = estimator(method, cat.size, 100.0, a).fit_predict(features)
    maps = eval_maps(res.patch_scores, res.grid, cat.size, EVAL_SIZE)
    m = batch_metrics(res.image_scores, maps, cat.masks, cat.labels)
    rate = (res.diagnostics or {}).get("exclusion_rate")
    return res, {"image": pct(m["image"]), "pixel": pct(m["pixel"]),
                 "exclusion_rate_pct": None if rate is None else round(100 * rate, 3)}


def compare(cat: Category, method: str, a: argparse.Namespace) -> dict[str, Any]:
    half = held_as(cat.features, "float16")
    full_res, full = scored(cat, method, cat.features, a)
    half_res, halved = scored(cat, method, half, a)
    image_diff = float(torch.as_tensor(full_res.image_scores - half_res.image_scores).abs().max())
    patch_diff = float((torch.as_tensor(full_res.patch_scores) - torch.as_tensor(half_res.patch_scores)).abs().max())
    return {"method": method, "float32": full, "float16": halved,
            "max_image_score_change": image_diff, "max_patch_score_change": patch_diff,
            "token_mb": {"float32": round(cat.features.layers.nbytes / 2**20, 1),
                         "float16": round(half.layers.nbytes / 2**20, 1)}}


def report(out: dict[str, Any]) -> str:
    lines = ["# Tokens held in float16 against float32", "",
             f"Machine: {out['machine'].get('cpu', '?')}, torch CPU capability "
             f"{out['machine'].get('torch_cpu_capability', '?')}. Same cached features; scores from fit_predict.", "",
             "| size | category | method | max image score change | max patch score change | image AUROC 32 / 16 "
             "| pixel F1-max 32 / 16 | AUPRO 32 / 16 | excluded % 32 / 16 | tokens MiB 32 / 16 |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in out["rows"]:
        f, h = r["float32"], r["float16"]
        lines.append(
            f"| {r['size']} | {r['category']} | {r['method']} | {r['max_image_score_change']:.2e} | "
            f"{r['max_patch_score_change']:.2e} | {f['image']['auroc']} / {h['image']['auroc']} | "
            f"{f['pixel']['f1_max']} / {h['pixel']['f1_max']} | {f['pixel']['aupro']} / {h['pixel']['aupro']} | "
            f"{f['exclusion_rate_pct']} / {h['exclusion_rate_pct']} | "
            f"{r['token_mb']['float32']} / {r['token_mb']['float16']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="224")
    ap.add_argument("--categories", default="bottle,mpdd")
    ap.add_argument("--methods", default="musc,codegraph")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--out-dir", default=str(RESULTS))
    a = ap.parse_args()
    a.precision = "fp32"
    torch.set_num_threads(a.threads)
    out: dict[str, Any] = {"benchmark": "token_dtype", "command": " ".join(sys.argv[1:]), "rows": [],
                           "machine": machine_info(), "versions": versions()}
    for size in [int(s) for s in a.sizes.split(",")]:
        for name in a.categories.split(","):
            cat = Category(name, size, a)
            for method in a.methods.split(","):
                row = {"size": size, "category": name, **compare(cat, method, a)}
                out["rows"].append(row)
                print(size, name, method, row["max_image_score_change"], row["max_patch_score_change"],
                      row["float32"]["pixel"], row["float16"]["pixel"], flush=True)
    stem = Path(a.out_dir) / "token_dtype"
    write_json(stem.with_suffix(".json"), out)
    write_text(stem.with_suffix(".md"), report(out))


if __name__ == "__main__":
    main()
