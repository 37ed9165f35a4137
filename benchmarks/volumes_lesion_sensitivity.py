"""Volumes: which lesions the pipeline finds, by contrast and size (a detection-limit study).

    python benchmarks/volumes_lesion_sensitivity.py --size 224 --tag d224
writes benchmarks/results/volumes_lesion_sensitivity_<tag>.json. Volumes go to --work.

The cohort benchmark (volumes_cohort.py) draws 5 random lesions per cohort, so one faint or
small draw moves its patient AUROC by 0.05-0.1 and six cohorts cannot say where the limit
lies. This study fixes the lesion instead of drawing it:

1. A healthy backdrop: --healthy subjects of one source brain (the cohort builder, seed --seed).
2. Probes: for every (contrast, diameter) of the grid, --replicates fresh subjects with one
   random lesion of exactly that |contrast| and largest diameter (random place, sign,
   orientation and other axes; ``LesionConfig`` ranges with equal ends), each from its own
   builder seed, so no probe shares a subject with the backdrop or another probe.
3. All volumes are read in ONE batch (one Nyul standardisation, one token extraction).
4. The probes are dealt at random into --groups runs; each run scores the healthy backdrop
   plus its probes (22 + 10 by default, the cohort benchmark's mix without the consistent
   type), so the probes' lesions are the only lesions and none repeats.
5. Per probe: its patient score against the run's healthy volumes (how many score at or
   above it; its own AUROC against them, ties counted half), for the configured score
   (excess over the position median) and SPEC's maximum; its Dice at the run's F1 threshold.
6. Summary: per-probe AUROC by contrast x diameter, and what it implies for a cohort drawn
   as the issue specifies (random lesions uniform in 8-30 mm and 15-40%): the expected
   AUROC of its random lesions, and by resampling the measured probes (nearest grid cell,
   one replicate at random) the share of 5-lesion draws whose random-lesion AUROC is
   >= 0.9 (with 5 perfectly ranked consistent lesions, the cohort's patient AUROC is then
   >= 0.95).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from common import run_record, write_result
from mri_sources import SOURCE_NAMES, stripped_source
from volumes_cohort import cached, method_configs, r4, variant_scores

from codegraph_ad.volumes.api import evaluate_run, read_cohort, result_from_batch, score_batch
from codegraph_ad.volumes.cohort import build_cohort
from codegraph_ad.volumes.config import CohortConfig, LesionConfig, VolumeConfig
from codegraph_ad.volumes.pipeline import build_tokens, load_volume_backbone, prepare_volumes, token_batch

ISSUE_DIAMETER_MM = (8.0, 30.0)
ISSUE_CONTRAST = (0.15, 0.40)


def build_volumes(a: argparse.Namespace) -> tuple[list[Path], list[Path], list[dict[str, Any]], str]:
    """Backdrop and probe volumes in ``a.work``; returns paths, masks, probe rows, a digest of all."""
    source = str(stripped_source(a.source, a.work))
    base = CohortConfig(sources=(source,), n_healthy=0, n_random=0, n_consistent=0,
                        deformation_mm=a.deformation_mm, seed=a.seed)
    manifests = [build_cohort(a.work / "healthy", replace(base, n_healthy=a.healthy), overwrite=True,
                              progress=False)]
    paths, masks, _ = read_cohort(a.work / "healthy")
    probes: list[dict[str, Any]] = []
    cell = 0
    for contrast in a.contrasts:
        for diameter in a.diameters:
            cell += 1
            folder = a.work / "cells" / f"c{round(100 * contrast):02d}_d{diameter:g}"
            lesion = replace(LesionConfig(), diameter_mm=(diameter, diameter), contrast=(contrast, contrast))
            cfg = replace(base, n_random=a.replicates, lesion=lesion, seed=1000 * a.seed + 100 + cell)
            manifests.append(build_cohort(folder, cfg, overwrite=True, progress=False))
            cell_paths, cell_masks, _ = read_cohort(folder)
            subjects = json.loads(manifests[-1].read_text())["subjects"]
            for p, m, s in zip(cell_paths, cell_masks, subjects):
                name = f"{folder.name}_{s['name']}"  # volume names must be unique within a batch
                for src, kind, out in ((p, "volumes", paths), (m, "masks", masks)):
                    out.append(a.work / "probes" / kind / f"{name}.nii.gz")
                    out[-1].parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(src, out[-1])
                probes.append({"name": name, "contrast_set": contrast,
                               "contrast": abs(s["lesion"]["contrast"]),
                               "sign": int(np.sign(s["lesion"]["contrast"])), "diameter_mm": diameter,
                               "lesion_voxels_1p5mm": s["lesion"]["voxels"]})
    digest = hashlib.sha256(b"".join(m.read_bytes() for m in manifests)).hexdigest()[:10]
    return paths, masks, probes, digest


def probe_rows(run, batch, metrics: dict[str, Any], n_healthy: int) -> list[dict[str, Any]]:
    """Each probe of one run against that run's healthy volumes."""
    scores = {"position_median": variant_scores(run, batch, None, True),
              "spec_max": variant_scores(run, batch, None, False)}
    rows = []
    for i in range(n_healthy, len(run.names)):
        row: dict[str, Any] = {"dice": r4(metrics["per_volume"][i]["dice"])}
        for key, s in scores.items():
            healthy, probe = s[:n_healthy], s[i]
            row[key] = {"score": r4(probe), "healthy_at_or_above": int((healthy >= probe).sum()),
                        "auroc": r4((healthy < probe).mean() + 0.5 * (healthy == probe).mean())}
        rows.append(row)
    return rows


def grid_table(probes: list[dict[str, Any]], key: str, contrasts: list[float],
               diameters: list[float]) -> dict[str, Any]:
    """Mean per-probe AUROC (and min) for each contrast x diameter cell."""
    table = {}
    for c in contrasts:
        for d in diameters:
            v = [p[key]["auroc"] for p in probes if p["contrast_set"] == c and p["diameter_mm"] == d]
            table[f"c{c:g}_d{d:g}"] = {"mean": r4(np.mean(v)), "min": r4(min(v)), "n": len(v)}
    return table


def implied_cohorts(probes: list[dict[str, Any]], key: str, contrasts: list[float], diameters: list[float],
                    n_random: int = 5, draws: int = 20000, seed: int = 0) -> dict[str, Any]:
    """What the measured probes imply for cohorts whose random lesions are drawn as the issue says.

    Each drawn lesion (uniform diameter and contrast in the issue's ranges) takes the AUROC of
    a random replicate of the nearest grid cell: a resampling estimate that inherits the
    grid's coarseness, stated as such in the result file."""
    rng = np.random.default_rng(seed)
    by_cell = {(c, d): [p[key]["auroc"] for p in probes if p["contrast_set"] == c and p["diameter_mm"] == d]
               for c in contrasts for d in diameters}
    cs, ds = np.asarray(contrasts), np.asarray(diameters)
    c_draw = rng.uniform(*ISSUE_CONTRAST, size=(draws, n_random))
    d_draw = rng.uniform(*ISSUE_DIAMETER_MM, size=(draws, n_random))
    ci = np.abs(c_draw[..., None] - cs).argmin(-1)
    di = np.abs(d_draw[..., None] - ds).argmin(-1)
    values = np.empty((draws, n_random))
    for i in range(len(cs)):
        for j in range(len(ds)):
            cell = np.asarray(by_cell[(contrasts[i], diameters[j])])
            hit = (ci == i) & (di == j)
            values[hit] = cell[rng.integers(len(cell), size=int(hit.sum()))]
    random_auroc = values.mean(axis=1)
    return {"expected_random_lesion_auroc": r4(random_auroc.mean()),
            "share_of_draws_random_auroc_ge_0.9": r4((random_auroc >= 0.9).mean()),
            "expected_cohort_auroc_if_consistent_perfect": r4(0.5 * random_auroc.mean() + 0.5),
            "draws": draws, "random_lesions_per_cohort": n_random}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=224, help="cube side D")
    ap.add_argument("--slice-stride", type=int, default=VolumeConfig.slice_stride)
    ap.add_argument("--healthy", type=int, default=22)
    ap.add_argument("--contrasts", type=float, nargs="+", default=[0.15, 0.2, 0.25, 0.3, 0.4])
    ap.add_argument("--diameters", type=float, nargs="+", default=[10.0, 16.0, 24.0], help="largest diameter, mm")
    ap.add_argument("--replicates", type=int, default=2, help="probes per contrast x diameter cell")
    ap.add_argument("--groups", type=int, default=3, help="runs the probes are dealt into")
    ap.add_argument("--source", choices=SOURCE_NAMES, default="colin27")
    ap.add_argument("--deformation-mm", type=float, default=CohortConfig.deformation_mm)
    ap.add_argument("--seed", type=int, default=10, help="seed of the backdrop; probes use 1000 seed + 100 + cell")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "codegraph_volumes_sensitivity")
    ap.add_argument("--tag", default="")
    ap.add_argument("--reuse-tokens", action="store_true", help="reload tokens stored in --work for these volumes")
    ap.add_argument("--methods", nargs="+", choices=list(method_configs(VolumeConfig())), default=["codegraph"])
    a = ap.parse_args()

    base = VolumeConfig(size=a.size, slice_stride=a.slice_stride)
    t0 = time.perf_counter()
    for folder in ("cells", "probes"):
        shutil.rmtree(a.work / folder, ignore_errors=True)
    paths, masks, probes, digest = build_volumes(a)
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    volumes = prepare_volumes(paths, base, progress=False)
    read_s = time.perf_counter() - t0
    backbone = load_volume_backbone(base)
    tokens, tokens_s = cached(a.work / f"tokens_d{a.size}_s{a.slice_stride}_{digest}.pt", a.reuse_tokens,
                              lambda: build_tokens(volumes, base, backbone, progress=False))
    batch = token_batch(volumes, tokens, base)
    print(f"{len(volumes)} volumes: built {build_s:.0f} s, read {read_s:.0f} s, tokens {tokens_s:.0f} s", flush=True)

    n_h = a.healthy
    order = np.random.default_rng(a.seed).permutation(len(probes))
    groups = [sorted(int(i) for i in g) for g in np.array_split(order, a.groups)]
    results: dict[str, Any] = {}
    for name, cfg in method_configs(base).items():
        if name not in a.methods:
            continue
        rows: list[dict[str, Any]] = [{} for _ in probes]
        healthy_scores, scoring_s = [], 0.0
        for g, members in enumerate(groups):
            idx = [*range(n_h), *(n_h + i for i in members)]
            sub = batch.subset(idx)
            scores, seconds = score_batch(sub, cfg)
            scoring_s += seconds
            run = result_from_batch(sub, scores, cfg, [paths[i] for i in idx], {"scoring_s": seconds})
            m, _ = evaluate_run(run, [masks[i] for i in idx])
            for i, row in zip(members, probe_rows(run, sub, m, n_h)):
                rows[i] = {**probes[i], "group": g, **row}
            healthy_scores.append([r4(r["score"]) for r in m["per_volume"][:n_h]])
            print(f"{name} group {g}: {seconds:.0f} s", flush=True)
        results[name] = {
            "by_cell_position_median": grid_table(rows, "position_median", a.contrasts, a.diameters),
            "by_cell_spec_max": grid_table(rows, "spec_max", a.contrasts, a.diameters),
            "implied_issue_cohorts_position_median": implied_cohorts(rows, "position_median", a.contrasts,
                                                                     a.diameters),
            "implied_issue_cohorts_spec_max": implied_cohorts(rows, "spec_max", a.contrasts, a.diameters),
            "probes": rows,
            "healthy_scores_per_group": healthy_scores,
            "scoring_s_per_volume": r4(scoring_s / sum(n_h + len(g) for g in groups)),
        }
        print(name, json.dumps({k: v for k, v in results[name].items() if k not in ("probes",
                                                                                  "healthy_scores_per_group")}),
              flush=True)

    out = {
        "benchmark": "volumes_lesion_sensitivity",
        "protocol": "healthy backdrop + probes with one fixed-size, fixed-|contrast| random lesion each; "
                    "probes dealt into groups, each group scored with the whole backdrop; per-probe AUROC = "
                    "share of the run's healthy volumes scoring below the probe (ties half); "
                    "implied_issue_cohorts resamples the probes (nearest grid cell) for 5 random lesions drawn "
                    "uniformly in 8-30 mm and 15-40%",
        "grid": {"contrasts": a.contrasts, "diameters_mm": a.diameters, "replicates": a.replicates,
                 "groups": groups, "healthy": n_h, "source": a.source, "seed": a.seed,
                 "deformation_mm": a.deformation_mm},
        "methods": results,
        "time_s_per_volume": {"tokens": r4(tokens_s / len(volumes)), "read_and_prepare": r4(read_s / len(volumes))},
        **run_record(base),
    }
    write_result("volumes_lesion_sensitivity", a.tag, out)


if __name__ == "__main__":
    main()
