"""Where the look-alike fence's AUPRO cost lies, and whether a score gate removes it.

    python benchmarks/lookalike_cost.py --category mpdd --size 224 --sources a --cells a_5,a_25,a_35

On matrix cells (stored first pass of benchmarks/codegraph_matrix.py) it runs CoDeGraph with
the thesis's dependency population (look_alike_kappa none) and with the fence (the default),
then:

1. swaps the fence run's final patch scores for the thesis run's on one set of patches at a
   time (the repeated group's normal / defect patches, the originals' normal / defect
   patches) and recomputes the pixel metrics: the set whose swap restores the metrics is
   where the cost lies;
2. tries gates that keep the fence's exclusions only where the patch is anomalous without
   the outlier union (its score against the references outside the union above the p-th
   percentile of the outside patches' scores), grown by the largest LNAMD neighbourhood
   (a patch within (r_max - 1) / 2 grid cells of a defect carries it in its aggregated
   feature) inside the fence's exclusions.

Writes results/lookalike_cost_<category>_<size>.json.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
from common import RESULTS, machine_info

import codegraph_matrix as cm
from codegraph_ad.config import GraphConfig, RunConfig
from codegraph_ad.evaluation import batch_metrics, eval_maps
from codegraph_ad.graph.filtering import DefectGate
from codegraph_ad.io.atomic import write_json
from codegraph_ad.methods import CoDeGraph
from codegraph_ad.methods.codegraph import refined_score_fn

GATE_PERCENTILES = (80.0, 90.0, 95.0, 99.0)


def pixel_metrics(cell: cm.Cell, patch: np.ndarray, image_scores: np.ndarray, size: int) -> dict:
    maps = eval_maps(torch.from_numpy(patch), cell.first.features.grid, size, cm.EVAL_SIZE)
    m = batch_metrics(image_scores, maps, cell.masks, cell.labels)["pixel"]
    return {k: round(100 * float(m[k]), 2) for k in ("f1_max", "ap", "aupro")}


def analyse(cell: cm.Cell, cfg: RunConfig) -> dict:
    size = cfg.features.image_size
    ungated = replace(GraphConfig(), defect_gate_percentile=None)  # the gates are applied below, one by one
    runs = {name: CoDeGraph.from_config(replace(cfg, graph=replace(ungated, look_alike_kappa=k))).rescore(cell.first)
            for name, k in (("thesis", None), ("fence", GraphConfig().look_alike_kappa))}
    thesis, fence = runs["thesis"], runs["fence"]
    pa, pb = thesis.patch_scores.numpy(), fence.patch_scores.numpy()
    ex_fence = fence.excluded.numpy()
    n = pa.shape[0]
    defect = cell.fractions >= 0.5
    group = np.zeros(n, dtype=bool)
    for idx in cell.groups.values():
        group[idx] = True
    out: dict = {"n_images": n, "methods": {
        "musc_q0.3": pixel_metrics(cell, cell.musc, cell.musc.max(axis=1), size),
        "thesis": {**pixel_metrics(cell, pa, thesis.image_scores, size),
                   "excluded_pct": round(100 * float(thesis.excluded.numpy().mean()), 2)},
        "fence": {**pixel_metrics(cell, pb, fence.image_scores, size), "excluded_pct": round(100 * float(ex_fence.mean()), 2)}}}
    sets = {"group_normal": group[:, None] & ~defect, "group_defect": group[:, None] & defect,
            "originals_normal": ~group[:, None] & ~defect, "originals_defect": ~group[:, None] & defect}
    out["fence_with_thesis_scores_on"] = {
        name: {**pixel_metrics(cell, np.where(sel, pa, pb), fence.image_scores, size),
               "mean_score_thesis": round(float(pa[sel].mean()), 4), "mean_score_fence": round(float(pb[sel].mean()), 4)}
        for name, sel in sets.items() if sel.any()}
    union = np.zeros(n, dtype=bool)
    for c in fence.diagnostics["subsets"][0]["communities"]:
        if c["outlier"]:
            union[c["images"]] = True
    score_fn = refined_score_fn(cell.first, GraphConfig().final_q)
    without_union = score_fn(~union, np.zeros_like(ex_fence))
    radius = (max(cfg.lnamd.degrees) - 1) // 2
    grid = tuple(cell.first.features.grid)
    outside = np.broadcast_to(~union[:, None], ex_fence.shape)
    out["gates"] = {}
    for p in GATE_PERCENTILES:
        level = float(np.percentile(without_union[outside], p))
        for r in (0, radius):
            ex = DefectGate(p, grid, r).apply(ex_fence, without_union, outside)
            refined = score_fn(np.ones(n, dtype=bool), ex)
            out["gates"][f"p{p:g}_grow{r}"] = {
                **pixel_metrics(cell, refined, fence.image_scores, size), "level": round(level, 4),
                "excluded_pct": round(100 * float(ex.mean()), 2),
                "group_defect_excluded_pct": round(100 * float(ex[sets["group_defect"]].mean()), 1),
                "group_normal_excluded_pct": round(100 * float(ex[sets["group_normal"]].mean()), 1)}
            print(cell.name, f"p{p:g}_grow{r}", out["gates"][f"p{p:g}_grow{r}"], flush=True)
    return out


def main() -> None:
    a = cm.stored_cells_args(__doc__.split("\n\n")[0], cells="a_5,a_25,a_35")
    path = RESULTS / f"lookalike_cost_{a.category}_{a.size}.json"
    result = {"machine": machine_info(), "cells": {}}
    for cell in cm.stored_cells(a):
        result["cells"][cell.name] = analyse(cell, cell.cfg)
        write_json(path, result)  # every finished cell survives an interrupted run
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
