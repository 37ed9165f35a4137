"""How far any removal of the repeated defect can go: CoDeGraph against exclusion oracles.

    python benchmarks/exclusion_ceiling.py --category bottle --size 224 --sources abc \
        --cells clean,c_15,c_25,c_35,a+b_15,b+c_15

Issue 23's rule for a batch with 15% copies or more compares CoDeGraph on that batch with
MuSc q = 0.3 on the *clean* batch, a different population of defect pixels. Whether a cell can
pass at all depends on how well the repeated defect itself is scored once its copies no longer
vouch for each other. This measures it with oracles that know the labels (what no method has),
each scored by CoDeGraph's own final pass (MSM at ``final_q`` against the base set without the
excluded patches; the same code, ``methods.codegraph.refined_score_fn``):

- ``oracle_defect``: exclude exactly the repeated images' defect patches (any ground-truth
  pixel in the patch), grown by LNAMD's reach (the largest degree's half-width), since the
  aggregated features of a defect's neighbours carry it too; everything else stays a reference.
- ``oracle_images``: exclude every patch of every repeated image (source and copies).

Next to them MuSc q = 0.3 on the cell and CoDeGraph at the defaults, with where CoDeGraph's
excluded patches lie (``excluded_where``, percent of the batch's patches): on the repeated
images' defects within LNAMD's reach (what the defect oracle removes), elsewhere on the
repeated images, on the other anomalous images, on good images. Reads the matrix's stored
first pass (benchmarks/codegraph_matrix.py). Writes
benchmarks/results/exclusion_ceiling_<category>_<size>[_<tag>].json and prints a table.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import numpy as np
import torch
from codegraph_matrix import EVAL_SIZE, Cell, add_matrix_options, stored_cells
from common import pct, run_record, write_result
from scipy.ndimage import binary_dilation

from codegraph_ad.config import FeatureConfig, MSMConfig, RunConfig
from codegraph_ad.evaluation import batch_metrics, eval_maps
from codegraph_ad.methods import CoDeGraph, MuSc, ScoreResult
from codegraph_ad.methods.base import finish_image_scores
from codegraph_ad.methods.codegraph import refined_score_fn


def defect_patches(cell: Cell, images: list[int], reach: int) -> np.ndarray:
    """(N, M) bool: the given images' patches touching their ground truth, grown by ``reach``."""
    h, w = cell.first.features.grid
    out = np.zeros(cell.fractions.shape, dtype=bool)
    grown = np.ones((2 * reach + 1, 2 * reach + 1), dtype=bool)
    for i in images:
        touched = cell.fractions[i].reshape(h, w) > 0
        out[i] = binary_dilation(touched, structure=grown).reshape(-1) if reach else touched.reshape(-1)
    return out


def oracle_result(cell: Cell, excluded: np.ndarray) -> ScoreResult:
    """CoDeGraph's final pass against the base set without ``excluded``."""
    q = cell.cfg.graph.final_q
    patch = refined_score_fn(cell.first, q)(np.ones(cell.first.n_images, dtype=bool), excluded)
    patch = torch.from_numpy(patch).float()
    raw, final = finish_image_scores(patch, cell.first.features.cls, cell.cfg.rscin)
    return ScoreResult(patch, final, raw, cell.first.features.grid, None, {})


def measure(cell: Cell, result: ScoreResult, excluded: np.ndarray | None) -> dict:
    """Whole-batch and per-group pixel metrics, the exclusion rate and the group's capture rate."""
    maps = eval_maps(result.patch_scores, cell.first.features.grid, cell.cfg.features.image_size, EVAL_SIZE)
    m = batch_metrics(result.image_scores, maps, cell.masks, cell.labels)
    out = {"image": pct(m["image"]), "pixel": pct(m["pixel"]),
           "exclusion_rate_pct": round(100 * (0.0 if excluded is None else float(excluded.mean())), 3),
           "groups": {}}
    repeated = sorted({i for idx in cell.groups.values() for i in idx})
    if repeated:
        out["group_capture_rate_pct"], out["group_n_consistent_patches"] = cell.capture(excluded, repeated)
    for tag, idx in cell.groups.items():
        out["groups"][tag] = {"pixel": pct(batch_metrics(result.image_scores, maps, cell.masks, cell.labels,
                                                         idx)["pixel"])}
    if repeated:  # the rest of the batch: what removing the repeated images' patches costs the others
        others = sorted(set(range(len(cell.labels))) - set(repeated))
        out["others_pixel"] = pct(batch_metrics(result.image_scores, maps, cell.masks, cell.labels, others)["pixel"])
    return out


def excluded_where(cell: Cell, excluded: np.ndarray, defect: np.ndarray, repeated: list[int]) -> dict:
    """Percent of the batch's patches excluded, split by where they lie."""
    rows = np.zeros(cell.fractions.shape, dtype=bool)
    rows[repeated] = True
    anomalous = np.broadcast_to((cell.labels == 1)[:, None], rows.shape)
    parts = {"repeated_defect_reach": excluded & defect, "repeated_elsewhere": excluded & rows & ~defect,
             "other_anomalous": excluded & ~rows & anomalous, "good": excluded & ~rows & ~anomalous}
    return {k: round(100 * float(v.mean()), 3) for k, v in parts.items()}


def run_cell(cell: Cell) -> dict:
    repeated = sorted({i for idx in cell.groups.values() for i in idx})
    reach = (max(cell.first.degrees) - 1) // 2
    res: dict = {"n_images": len(cell.index), "group_sizes": {t: len(i) for t, i in cell.groups.items()},
                 "lnamd_reach_patches": reach, "methods": {}}
    t0 = time.perf_counter()
    res["methods"]["musc_q0.3"] = measure(cell, MuSc.from_config(
        replace(cell.cfg, method="musc", msm=MSMConfig(0.3))).rescore(cell.first), None)
    cg = CoDeGraph.from_config(cell.cfg).rescore(cell.first)
    res["methods"]["codegraph"] = measure(cell, cg, cg.excluded.numpy())
    if repeated:
        whole = np.zeros(cell.fractions.shape, dtype=bool)
        whole[repeated] = True
        defect = defect_patches(cell, repeated, reach)
        res["methods"]["codegraph"]["excluded_where"] = excluded_where(cell, cg.excluded.numpy(), defect, repeated)
        for name, excluded in (("oracle_defect", defect), ("oracle_images", whole)):
            res["methods"][name] = measure(cell, oracle_result(cell, excluded), excluded)
    res["time_s"] = round(time.perf_counter() - t0, 1)
    return res


def row(name: str, rec: dict) -> str:
    p = rec["pixel"]
    groups = " / ".join(f"{t} {g['pixel']['f1_max']:.1f}" for t, g in rec["groups"].items()) or "-"
    return (f"| {name} | {p['f1_max']:.1f} / {p['ap']:.1f} / {p['aupro']:.1f} | {rec['exclusion_rate_pct']:.2f} | "
            f"{groups} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_matrix_options(ap, precision=False)
    ap.add_argument("--cells", default="clean,c_25,c_35")
    ap.add_argument("--tag", default="")
    a = ap.parse_args()
    out: dict = {"benchmark": "exclusion_ceiling", "category": a.category, "size": a.size, "sources": a.sources,
                 "cells": {}}
    for cell in stored_cells(a):
        out["cells"][cell.name] = run_cell(cell)
        print(f"\n{cell.name}\n| method | F1 / AP / AUPRO | excl % | group F1 |\n|---|---|---|---|")
        for name, rec in out["cells"][cell.name]["methods"].items():
            print(row(name, rec), flush=True)
        if "excluded_where" in out["cells"][cell.name]["methods"]["codegraph"]:
            print("CoDeGraph's excluded patches (% of the batch):", out["cells"][cell.name]["methods"]["codegraph"]["excluded_where"])
            print("the other images' pixel F1 / AP / AUPRO:", {m: [r["others_pixel"][k] for k in ("f1_max", "ap", "aupro")]
                                                            for m, r in out["cells"][cell.name]["methods"].items()})
        write_result("exclusion_ceiling", f"{a.category}_{a.size}" + (f"_{a.tag}" if a.tag else ""),
                     {**out, **run_record(RunConfig(features=FeatureConfig(image_size=a.size)))})


if __name__ == "__main__":
    main()
