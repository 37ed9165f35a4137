"""The judge of every change to CoDeGraph's graph stages: MuSc and CoDeGraph over a matrix of batches.

    python benchmarks/codegraph_matrix.py --category bottle --size 224
    python benchmarks/codegraph_matrix.py --category mpdd --size 448 --variants '{"q01": {"final_q": 0.1}}'
    python benchmarks/codegraph_matrix.py --table      # docs table from every results file

Batches (cells) of one category, all cut from one "super batch":
- ``clean``: the category's test split as it is;
- ``<src>_<p>``: the clean batch plus copies of one defect image so that the copies are p% of
  the batch (p = 5, 15, 25, 35), for three source images of different defect types (bottle:
  one per type; MPDD has one type, so the images at the 90th, 50th and 25th percentile of
  defect area);
- ``<a>+<b>_15``: two repeated defects at once (the 15% copies of two sources).
The copies come from the project's own builder (``build_synca``, one build per source with
the 35% count; a p% batch takes that build's first copies, so the batches are nested).

Features are extracted once per image and size, and the first pass (every layer and degree's
minima with argmins) once for the super batch; every cell's first pass is cut from it
(``FirstPass.subset``: exact, no recomputation), and every method and setting reuses it.
Methods: MuSc q = 0.3 (the judge), MuSc q = 0.1, CoDeGraph at the library defaults, and any
``--variants`` (GraphConfig changes by name). Per cell and method: whole-batch image and pixel
metrics, the metrics of each repeated group (source + copies), exclusion rate, capture rate
(``evaluation.consistency_rates``: the one definition; over the whole batch, and over the
repeated images' own patches, which the acceptance rule reads), share of the repeated images inside
outlier communities, the outlier communities with their member images, and time.
Writes benchmarks/results/codegraph_matrix_<category>_<size>[_<tag>].json.
"""

from __future__ import annotations

import argparse
import sys
import json
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from common import BOTTLE, DATA, RESULTS, graph_with, machine_info, peak_rss_mb, pct

from codegraph_ad.api import versions
from codegraph_ad.config import EngineConfig, FeatureConfig, GraphConfig, MSMConfig, RunConfig
from codegraph_ad.datasets.mvtec import read_mvtec_category
from codegraph_ad.datasets.synca import SynCAConfig, build_synca
from codegraph_ad.evaluation import batch_metrics, consistency_rates, eval_maps, eval_masks
from codegraph_ad.features.extractor import FeatureExtractor
from codegraph_ad.io.atomic import write_json
from codegraph_ad.io.batch import load_batch
from codegraph_ad.io.masks import grid_shares
from codegraph_ad.methods import CoDeGraph, MuSc, ScoreResult
from codegraph_ad.engine.plan import exact_plan
from codegraph_ad.methods.first_pass import FirstPass

WORK = Path.home() / ".cache" / "codegraph-ad" / "bench" / "matrix"
CATEGORIES = {"bottle": BOTTLE, "mpdd": DATA / "mpdd_metal_plate" / "metal_plate"}
PERCENTS = (5, 15, 25, 35)
TWO_GROUP_PERCENT = 15
EVAL_SIZE = 256


def n_copies(n_original: int, percent: float) -> int:
    """Copies that make ``percent`` of a batch of ``n_original`` originals plus the copies."""
    return int(round(percent / 100.0 * n_original / (1.0 - percent / 100.0)))


def choose_sources(samples: list) -> list[str]:
    """Three source images of different defect types; one type: spread over defect area."""
    anomalous = [s for s in samples if s.label == 1 and s.mask_paths]
    types = sorted({s.defect for s in anomalous})
    if len(types) >= 3:
        return [sorted((s for s in anomalous if s.defect == t), key=lambda s: s.name)[0].name for t in types[:3]]
    from PIL import Image

    area = {s.name: float(np.mean([np.asarray(Image.open(p)).astype(bool).mean() for p in s.mask_paths]))
            for s in anomalous}
    ranked = sorted(area, key=lambda k: (area[k], k))
    return [ranked[int(round(f * (len(ranked) - 1)))] for f in (0.9, 0.5, 0.25)]


class SuperBatch:
    """Originals + every source's copies, with the cells as index lists into it."""

    def __init__(self, category: str, tags: str = "abc"):
        root = CATEGORIES[category]
        self.originals = read_mvtec_category(root)
        self.sources = choose_sources(self.originals)
        n0 = len(self.originals)
        self.max_copies = n_copies(n0, max(PERCENTS))
        self.samples = list(self.originals)
        self.copies: dict[str, list[int]] = {}
        self.source_index = {s: next(i for i, x in enumerate(self.originals) if x.name == s) for s in self.sources}
        self.builds = {}
        for j, src in enumerate(self.sources):
            tag = "abc"[j]
            if tag not in tags:
                continue
            out = WORK / category / f"synca_{tag}"
            manifest = out / "manifest.json"
            prefix = f"synca{tag}"
            if not (manifest.exists() and json.loads(manifest.read_text()).get("n_copies") == self.max_copies
                    and (json.loads(manifest.read_text()).get("source") or {}).get("name") == src):
                build_synca(root, out, n_copies=self.max_copies, source=src, seed=j,
                            config=SynCAConfig(prefix=prefix), overwrite=True)
            self.builds[tag] = json.loads(manifest.read_text())
            built = [s for s in read_mvtec_category(out) if s.image_path.stem.startswith(prefix + "_")]
            built.sort(key=lambda s: s.image_path.stem)
            self.copies[tag] = list(range(len(self.samples), len(self.samples) + len(built)))
            self.samples.extend(built)
        self.tags = {"abc"[j]: src for j, src in enumerate(self.sources) if "abc"[j] in tags}

    def cells(self) -> dict[str, dict]:
        """name -> {"index": super-batch indices, "groups": {tag: indices of source + copies}}."""
        n0 = len(self.originals)
        base = list(range(n0))
        out = {"clean": {"index": base, "groups": {}}}
        for tag, src in self.tags.items():
            for p in PERCENTS:
                c = self.copies[tag][: n_copies(n0, p)]
                out[f"{tag}_{p}"] = {"index": base + c, "groups": {tag: [self.source_index[src]] + c}}
        for a, b in [(a, b) for a, b in (("a", "b"), ("b", "c"), ("a", "c")) if a in self.tags and b in self.tags][:2]:
            ca = self.copies[a][: n_copies(n0, TWO_GROUP_PERCENT)]
            cb = self.copies[b][: n_copies(n0, TWO_GROUP_PERCENT)]
            out[f"{a}+{b}_{TWO_GROUP_PERCENT}"] = {
                "index": base + ca + cb,
                "groups": {a: [self.source_index[self.tags[a]]] + ca, b: [self.source_index[self.tags[b]]] + cb}}
        return out


def first_pass_for(sb: SuperBatch, category: str, cfg: RunConfig) -> tuple[FirstPass, dict, list]:
    """The super batch's first pass (computed once, stashed), its timings and original sizes."""
    size, prec = cfg.features.image_size, cfg.engine.precision
    tags = "".join(sb.tags)
    stash = WORK / category / f"first_pass_{size}_{prec}{'' if tags == 'abc' else '_' + tags}.pt"
    names = [str(s.image_path) for s in sb.samples]
    if stash.exists():
        saved = torch.load(stash, weights_only=False)
        if saved["names"] == names:
            return _upgraded(saved["first"]), saved["time_s"], saved["sizes"]
    batch = load_batch([s.image_path for s in sb.samples], size, progress=False)
    t0 = time.perf_counter()
    feats = FeatureExtractor.from_config(cfg, cache=False).transform_batch(batch)
    t_feat = time.perf_counter() - t0
    print(f"features {len(batch)} images: {t_feat:.0f} s", flush=True)
    t0 = time.perf_counter()
    # the same for every method and setting; CoDeGraph's, so that in bf16/int8 the small
    # distances are recomputed in fp32 on the graph degree's maps only, as in a CoDeGraph run
    first = CoDeGraph.from_config(cfg).first_pass(feats)
    t_first = time.perf_counter() - t0
    print(f"first pass: {t_first:.0f} s", flush=True)
    timings = {"features": round(t_feat, 1), "first_pass": round(t_first, 1), "n_images": len(batch)}
    torch.save({"first": first, "time_s": timings, "names": names, "sizes": batch.original_sizes}, stash)
    return first, timings, batch.original_sizes


def stored_cells_args(description: str, cells: str) -> argparse.Namespace:
    """The command line of the analyses that read the matrix's stored first pass."""
    ap = argparse.ArgumentParser(description=description)
    add_matrix_options(ap, category="mpdd", sources="a", precision=False)
    ap.add_argument("--cells", default=cells, help="comma-separated cell names")
    return ap.parse_args()


def add_matrix_options(ap: argparse.ArgumentParser, category: str = "bottle", sources: str = "abc",
                       precision: bool = True) -> None:
    """The options that pick a matrix's super batch and its stored first pass."""
    ap.add_argument("--category", choices=sorted(CATEGORIES), default=category)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--sources", default=sources,
                    help="which of the three sources' copies enter the super batch (448 px: fewer, for time)")
    if precision:
        ap.add_argument("--precision", default="fp32", help="the first pass's precision (448 px MPDD a: bf16x3)")


def stored_cells(a: argparse.Namespace) -> Iterator["Cell"]:
    """The cells ``a.cells`` at the default settings and ``a.size``, cut one at a time from the
    stored first pass of ``a.category`` / ``a.sources`` (computed and stashed if missing)."""
    cfg = RunConfig(features=FeatureConfig(image_size=a.size))
    sb = SuperBatch(a.category, a.sources)
    first, _, sizes = first_pass_for(sb, a.category, cfg)
    specs = sb.cells()
    for name in a.cells.split(","):
        yield Cell(name, specs[name], sb, first, sizes, cfg)


def _upgraded(first: FirstPass) -> FirstPass:
    """A stash written before FirstPass had a reference plan and a window was an exact,
    windowless first pass: give it those fields instead of recomputing an hour of work."""
    if "plan" not in vars(first):
        first.plan = exact_plan(first.n_images)
    if "window" not in vars(first):
        first.window = None
    return first


class Cell:
    """One batch of the matrix: its cut first pass and its evaluation targets."""

    def __init__(self, name: str, spec: dict, sb: SuperBatch, first: FirstPass, sizes: list, cfg: RunConfig):
        self.name = name
        self.index = spec["index"]
        self.first = first.subset(self.index)
        self.samples = [sb.samples[i] for i in self.index]
        pos = {g: i for i, g in enumerate(self.index)}
        self.groups = {tag: [pos[i] for i in idx] for tag, idx in spec["groups"].items()}
        self.labels = np.array([s.label for s in self.samples])
        self.masks = eval_masks(self.samples, [sizes[i] for i in self.index], EVAL_SIZE)
        self.fractions = grid_shares(self.masks, self.first.features.grid)
        self.cfg = cfg
        self.musc = self.first.scores(MSMConfig().q).numpy()  # what "MuSc score" means in capture rate

    def capture(self, excluded: np.ndarray | None, images: list[int] | None = None) -> tuple[float | None, int | None]:
        """Capture rate (percent) and the consistent patches it is over, of ``images`` or the batch."""
        rates = consistency_rates(self.musc, excluded, self.fractions, self.labels, images=images)
        pct_ = None if rates["capture_rate"] is None else round(100 * rates["capture_rate"], 1)
        return pct_, rates["n_consistent_patches"]

    def evaluate(self, result: ScoreResult) -> dict:
        patch, image_scores = result.patch_scores, result.image_scores
        excluded = None if result.excluded is None else result.excluded.numpy()
        diag = result.diagnostics["subsets"][0] if result.excluded is not None else None
        maps = eval_maps(patch, self.first.features.grid, self.cfg.features.image_size, EVAL_SIZE)
        m = batch_metrics(image_scores, maps, self.masks, self.labels)
        out = {"image": pct(m["image"]), "pixel": pct(m["pixel"])}
        out["exclusion_rate_pct"] = round(100 * (0.0 if excluded is None else float(np.mean(excluded))), 3)
        out["capture_rate_pct"], out["n_consistent_patches"] = self.capture(excluded)
        flagged: set[int] = set()
        if diag is not None:
            comms = [c for c in diag["communities"] if c["outlier"]]
            for c in comms:
                flagged.update(c["images"])
            out["outlier_communities"] = [
                {"size": len(c["images"]), "density": round(c["density"], 2),
                 "members": [self.samples[i].name for i in c["images"]]} for c in comms]
            out["fence"] = round(diag["quartiles"]["fence"], 2)
            out["n_communities"] = len(diag["communities"])
        if self.groups:  # the acceptance's capture rate: the repeated images' own consistent patches
            repeated = sorted({i for idx in self.groups.values() for i in idx})
            out["group_capture_rate_pct"], out["group_n_consistent_patches"] = self.capture(excluded, repeated)
        out["groups"] = {}
        for tag, idx in self.groups.items():
            g = batch_metrics(image_scores, maps, self.masks, self.labels, idx)
            rec = {"pixel": pct(g["pixel"]), "n_images": len(idx)}
            if diag is not None:
                rec["in_outlier_communities_pct"] = round(100 * len(flagged & set(idx)) / len(idx), 1)
                defect = self.fractions[idx] >= 0.5
                ex = excluded[idx]
                rec["defect_patches_excluded_pct"] = round(100 * float(ex[defect].mean()), 1) if defect.any() else None
                rec["capture_rate_pct"], rec["n_consistent_patches"] = self.capture(excluded, idx)
            out["groups"][tag] = rec
        return out


def run_cell(cell: Cell, variants: dict[str, GraphConfig]) -> dict:
    res = {"n_images": len(cell.index), "n_anomalous": int(cell.labels.sum()),
           "group_sizes": {t: len(i) for t, i in cell.groups.items()}, "methods": {}}
    for q in (0.3, 0.1):
        t0 = time.perf_counter()
        r = cell.evaluate(MuSc.from_config(replace(cell.cfg, method="musc", msm=MSMConfig(q))).rescore(cell.first))
        r["time_s"] = round(time.perf_counter() - t0, 2)
        res["methods"][f"musc_q{q}"] = r
    for name, graph in variants.items():
        t0 = time.perf_counter()
        result = CoDeGraph.from_config(replace(cell.cfg, graph=graph)).rescore(cell.first)
        t_graph = time.perf_counter() - t0
        r = cell.evaluate(result)
        r["time_s"] = round(t_graph, 2)
        res["methods"][name] = r
    return res


def parse_variants(text: str) -> dict[str, GraphConfig]:
    out = {"codegraph": GraphConfig()}
    for name, changes in json.loads(text).items():
        out[name] = graph_with(GraphConfig(), changes)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_matrix_options(ap)
    ap.add_argument("--variants", default="{}", help='extra CoDeGraph settings: {"name": {GraphConfig changes}}')
    ap.add_argument("--cells", default="", help="comma-separated cell names (default: all)")
    ap.add_argument("--tag", default="")
    ap.add_argument("--prepare-only", action="store_true", help="build, extract and stash the first pass only")
    ap.add_argument("--table", action="store_true", help="write docs tables from the results files and exit")
    a = ap.parse_args()
    if a.table:
        from matrix_table import write_tables

        write_tables(RESULTS)
        return
    cfg = RunConfig(features=FeatureConfig(image_size=a.size), engine=EngineConfig(precision=a.precision))
    sb = SuperBatch(a.category, a.sources)
    first, timings, sizes = first_pass_for(sb, a.category, cfg)
    if a.prepare_only:
        return
    variants = parse_variants(a.variants)
    cells = sb.cells()
    wanted = [c for c in a.cells.split(",") if c] or list(cells)
    stem = f"codegraph_matrix_{a.category}_{a.size}" + (f"_{a.precision}" if a.precision != "fp32" else "")
    path = RESULTS / (f"{stem}_{a.tag}.json" if a.tag else f"{stem}.json")
    out = {"benchmark": "codegraph_matrix", "category": a.category, "command": " ".join(sys.argv[1:]), "size": a.size, "precision": a.precision,
           "sources": sb.tags, "copies_per_percent": {p: n_copies(len(sb.originals), p) for p in PERCENTS},
           "super_batch_time_s": timings, "variants": {k: asdict(v) for k, v in variants.items()},
           "cells": {}, "complete": False}
    for name in wanted:
        t0 = time.perf_counter()
        cell = Cell(name, cells[name], sb, first, sizes, cfg)
        out["cells"][name] = run_cell(cell, variants)
        out["cells"][name]["cell_time_s"] = round(time.perf_counter() - t0, 1)
        summary = {m: (r["pixel"]["f1_max"], r["pixel"]["ap"], r["pixel"]["aupro"], r.get("exclusion_rate_pct"))
                   for m, r in out["cells"][name]["methods"].items()}
        print(name, json.dumps(summary), flush=True)
        write_json(path, out)
    out.update(complete=True, peak_rss_mb=round(peak_rss_mb(), 1), versions=versions(), machine=machine_info())
    write_json(path, out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
