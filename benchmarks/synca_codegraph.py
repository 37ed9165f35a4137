"""CoDeGraph vs MuSc on the clean MVTec bottle batch and on its SynCA variant, plus a sweep.

    python benchmarks/synca_codegraph.py --size 448 [--sweep]

Builds SynCA (12 seeded copies of broken_large/000) outside the repo, extracts features
once for all 95 images, computes the first pass once (the clean batch's first pass is cut
from it: no recomputation), then scores MuSc (q = 0.3, 0.1) and CoDeGraph on both batches.
Reports whole-batch metrics, metrics of the group "source image + its copies", exclusion
and capture rates (capture rate: ``evaluation.consistency_rates``, the one definition, with
MuSc at its default q = 0.3; ``group_defect_capture_rate`` is another quantity: the share of
all the group's anomalous patches excluded). ``--sweep`` varies one reconstructed parameter
at a time around the defaults (k, alpha, coverage, kappa, dependency percentile) on both batches.
Writes benchmarks/results/synca_codegraph_<size>.json (and _sweep_<size>.json).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
from common import BOTTLE, RESULTS, graph_with, pct, peak_rss_mb

from codegraph_ad.api import versions
from codegraph_ad.config import EngineConfig, FeatureConfig, GraphConfig, MSMConfig, RunConfig, config_to_dict
from codegraph_ad.datasets.mvtec import read_mvtec_category
from codegraph_ad.datasets.synca import build_synca
from codegraph_ad.evaluation import (
    ConsistencyConfig,
    batch_metrics,
    consistency_rates,
    eval_maps,
    eval_masks,
)
from codegraph_ad.features.extractor import FeatureExtractor
from codegraph_ad.io.batch import load_batch
from codegraph_ad.io.masks import grid_shares
from codegraph_ad.methods import CoDeGraph, MuSc, ScoreResult

WORK = Path.home() / ".cache" / "codegraph-ad" / "bench"
SOURCE = "broken_large/000"
N_COPIES = 12
BLOCKS = FeatureConfig().layers  # the blocks every batch here extracts (graph_blocks names them)


def summarize_metrics(m: dict) -> dict:
    return {"image": pct(m["image"]), "pixel": pct(m["pixel"]), "n_images": m["n_images"]}


class Batch:
    """One batch (clean or SynCA) with its first pass and its evaluation targets."""

    def __init__(self, name, first, samples, sizes, config, eval_size=256):
        self.name = name
        self.first = first
        self.samples = samples
        self.labels = np.array([s.label for s in samples])
        self.masks = eval_masks(samples, sizes, eval_size)
        self.grid = first.features.grid
        self.config = config
        self.eval_size = eval_size
        self.group = [i for i, s in enumerate(samples)
                      if s.image_path.stem.startswith("synca_") or s.name == SOURCE]
        self.fractions = grid_shares(self.masks, self.grid)
        self.anomalous_patches = self.fractions >= ConsistencyConfig().anomalous_fraction
        # "MuSc score" in the capture rate: MuSc at its default q (evaluation.consistency_rates)
        self.musc = first.scores(MSMConfig().q).numpy()

    def musc(self, q: float) -> ScoreResult:
        return MuSc.from_config(replace(self.config, msm=MSMConfig(q))).rescore(self.first)

    def codegraph(self, graph: GraphConfig) -> ScoreResult:
        return CoDeGraph.from_config(replace(self.config, graph=graph), blocks=BLOCKS).rescore(self.first)

    def evaluate(self, result: ScoreResult) -> dict:
        patch, image_scores = result.patch_scores, result.image_scores
        excluded = None if result.excluded is None else result.excluded.numpy()
        maps = eval_maps(patch, self.grid, self.config.features.image_size, self.eval_size)
        out = {"all": summarize_metrics(batch_metrics(image_scores, maps, self.masks, self.labels))}
        if self.group:
            g = batch_metrics(image_scores, maps, self.masks, self.labels, self.group)
            out["group"] = {"pixel": pct(g["pixel"]), "n_images": g["n_images"]}
        rates = consistency_rates(self.musc, excluded, self.fractions, self.labels)
        out["exclusion_rate"] = 0.0 if excluded is None else rates["exclusion_rate"]
        out["capture_rate"] = rates["capture_rate"]
        out["n_consistent"] = rates["n_consistent_patches"]
        if excluded is not None and self.group:
            # not the capture rate: the share of the repeated defect itself (anomalous patches
            # of the source and its copies, whatever their MuSc score) that was excluded
            defect = np.zeros_like(self.anomalous_patches)
            defect[self.group] = self.anomalous_patches[self.group]
            n = int(defect.sum())
            out["group_defect_patches"] = n
            out["group_defect_capture_rate"] = float((excluded & defect).sum() / n) if n else None
            per_image = excluded[self.group].mean(axis=1)
            out["group_excluded_share_per_image"] = {self.samples[i].name: round(float(v), 3)
                                                     for i, v in zip(self.group, per_image)}
        return out


def run_methods(batch: Batch, graph: GraphConfig) -> dict:
    res = {}
    for q in (0.3, 0.1):
        res[f"musc_q{q}"] = batch.evaluate(batch.musc(q))
    t0 = time.perf_counter()
    result = batch.codegraph(graph)
    diag = result.diagnostics["subsets"][0]
    res["codegraph"] = batch.evaluate(result)
    res["codegraph"]["graph_s"] = round(time.perf_counter() - t0, 2)
    outliers = [c for c in diag["communities"] if c["outlier"]]
    res["codegraph"]["outlier_communities"] = [
        {"names": [batch.samples[i].name for i in c["images"]], "density": round(c["density"], 2)} for c in outliers]
    res["codegraph"]["densities_top5"] = sorted((round(c["density"], 2) for c in diag["communities"]), reverse=True)[:5]
    res["codegraph"]["fence"] = diag["quartiles"]["fence"]
    res["codegraph"]["links"] = {k: diag["links"][k] for k in ("n_links", "coverage", "reached_target")}
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=448)
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--sweep", action="store_true")
    ap.add_argument("--only-sweep", action="store_true", help="skip the main comparison")
    ap.add_argument("--sweep-params", default="", help="comma-separated subset of the sweep's parameters")
    ap.add_argument("--graph", default="{}",
                    help='GraphConfig fields to change, as JSON, e.g. \'{"graph_blocks": [9], "graph_degree": 3}\'; '
                         "the main comparison then goes to synca_codegraph_<size>_<--tag>.json")
    ap.add_argument("--tag", default="")
    a = ap.parse_args()
    changes = json.loads(a.graph)
    if changes and not a.tag:
        ap.error("--graph needs a --tag, so that the defaults' results file is not overwritten")
    cfg = RunConfig(features=FeatureConfig(image_size=a.size), engine=EngineConfig(precision=a.precision),
                    graph=graph_with(GraphConfig(), changes))
    synca_dir = WORK / "synca_bottle"
    build_synca(BOTTLE, synca_dir, n_copies=N_COPIES, source=SOURCE, seed=0, overwrite=True)
    samples = read_mvtec_category(synca_dir)
    clean_idx = [i for i, s in enumerate(samples) if not s.image_path.stem.startswith("synca_")]

    batch = load_batch([s.image_path for s in samples], a.size, progress=False)
    stash = WORK / f"synca_first_pass_{a.size}_{a.precision}.pt"
    if stash.exists():  # features and first pass of an earlier run with the same build and settings
        saved = torch.load(stash, weights_only=False)
        first, t_feat, t_first = saved["first"], saved["t_feat"], saved["t_first"]
    else:
        t0 = time.perf_counter()
        feats = FeatureExtractor.from_config(cfg, cache=False).transform_batch(batch)
        t_feat = time.perf_counter() - t0
        t0 = time.perf_counter()
        first = MuSc.from_config(cfg).first_pass(feats)
        t_first = time.perf_counter() - t0
        torch.save({"first": first, "t_feat": t_feat, "t_first": t_first}, stash)

    synca = Batch("synca", first, samples, batch.original_sizes, cfg)
    clean = Batch("clean", first.subset(clean_idx), [samples[i] for i in clean_idx],
                  [batch.original_sizes[i] for i in clean_idx], cfg)
    results = {"benchmark": "synca_codegraph", "size": a.size, "source": SOURCE, "n_copies": N_COPIES,
               "time_s": {"features": round(t_feat, 1), "first_pass_95_images": round(t_first, 1)},
               "config": config_to_dict(cfg), "versions": versions()}
    if not a.only_sweep:
        for b in (clean, synca):
            results[b.name] = run_methods(b, cfg.graph)
            print(b.name, json.dumps(results[b.name], indent=1), flush=True)
        results["peak_rss_mb"] = round(peak_rss_mb(), 1)
        RESULTS.mkdir(parents=True, exist_ok=True)
        name = f"synca_codegraph_{a.size}" + (f"_{a.tag}" if a.tag else "")
        (RESULTS / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")
    if a.sweep or a.only_sweep:
        sweep(cfg.graph, clean, synca, a.size, [p for p in a.sweep_params.split(",") if p], a.tag)


SWEEP_GRID = {"alpha": [0.5, 0.25, 1.0], "kappa": [5.0, 1.5], "dependency_percentile": [99.9, 99.99, 95.0],
              "target_coverage": [0.9, 0.99, 0.8], "k_fraction": [0.5, 0.7], "graph_degree": [3, 5],
              "graph_blocks": [(9,), (6, 9)]}


def sweep(base: GraphConfig, clean: Batch, synca: Batch, size: int, params: list[str] | None = None,
          tag: str = "") -> None:
    """One parameter at a time around the defaults; the most informative values first.

    params: a subset of SWEEP_GRID's names, written to a file of its own so that a partial
    sweep never overwrites the full one. base: the defaults, or the --graph changes (then the
    file name carries the --tag).
    """
    grid = {k: v for k, v in SWEEP_GRID.items() if not params or k in params}
    path = RESULTS / (f"synca_codegraph_sweep_{size}" + (f"_{tag}" if tag else "")
                      + ("_" + "_".join(params) if params else "") + ".json")
    rows = []
    for name, values in grid.items():
        for v in values:
            g = replace(base, **{name: v})
            row = {"param": name, "value": v}
            for b in (clean, synca):
                result = b.codegraph(g)
                diag = result.diagnostics["subsets"][0]
                r = b.evaluate(result)
                row[b.name] = {"pixel": r["all"]["pixel"], "image_auroc": r["all"]["image"]["auroc"],
                               "group_pixel": r.get("group", {}).get("pixel"),
                               "exclusion_rate": r["exclusion_rate"], "capture_rate": r.get("capture_rate"),
                               "group_defect_capture_rate": r.get("group_defect_capture_rate"),
                               "outlier_communities": [[b.samples[i].name for i in c["images"]]
                                                       for c in diag["communities"] if c["outlier"]]}
            print(json.dumps(row), flush=True)
            rows.append(row)
            path.write_text(json.dumps({"base": asdict(base), "rows": rows, "complete": False}, indent=2) + "\n")
    path.write_text(json.dumps({"base": asdict(base), "rows": rows, "complete": True}, indent=2) + "\n")


if __name__ == "__main__":
    main()
