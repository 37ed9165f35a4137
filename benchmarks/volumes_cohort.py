"""Volumes: MuSc vs CoDeGraph on a synthetic lesion cohort, plus one real BraTS case.

    python benchmarks/volumes_cohort.py --size 112 --slice-stride 2
writes benchmarks/results/volumes_cohort.json. The cohort (and a few mosaics) go to
--work (default: a folder under /tmp), never into the repository.

1. Build a seeded cohort from the healthy, skull-stripped volumes in shared/data/mri
   (colin27 ch2bet, MNI152 2009a T1): --healthy subjects, --random with one random lesion,
   --consistent with the repeated lesion type.
2. Read every cohort volume and the BraTS case (brats_case_a t1n) in ONE batch: one Nyul
   standardisation and one token extraction, timed per volume.
3. Cohort run: the cohort volumes only; MuSc (q = 0.1) and CoDeGraph (defaults): patient
   AUROC / F1-max, voxel AUROC, Dice (all, lesioned, per group), scoring time.
4. BraTS run: the healthy cohort volumes + the BraTS case, both methods: the case's patient
   score against every healthy one, and the Dice of its map against the provided
   segmentation (a model's prediction, labels 1-3 merged) at the run's grid-F1 threshold.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from common import DATA, RESULTS, peak_rss_mb

from codegraph_ad.api import versions
from codegraph_ad.config import MSMConfig, config_to_dict
from codegraph_ad.io.atomic import write_json, write_png
from codegraph_ad.metrics import image_metrics
from codegraph_ad.volumes.api import evaluate_run, read_cohort, result_from_batch, score_batch
from codegraph_ad.volumes.cohort import build_cohort
from codegraph_ad.volumes.config import CohortConfig, VolumeConfig
from codegraph_ad.volumes.mosaic import volume_mosaic
from codegraph_ad.volumes.nifti import nifti_stem
from codegraph_ad.volumes.outputs import batch_scale, upsample_grid
from codegraph_ad.volumes.pipeline import build_tokens, load_volume_backbone, prepare_volumes, token_batch

MRI = DATA / "mri"
SOURCES = (MRI / "colin27" / "ch2bet.nii.gz",
           MRI / "mni152_2009a_sym" / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz")
BRATS = MRI / "brats_case_a" / "t1n.nii.gz"
BRATS_SEG = MRI / "brats_case_a" / "segmentation.nii.gz"


def r4(x: Any) -> Any:
    return None if x is None else round(float(x), 4)


def method_configs(base: VolumeConfig) -> dict[str, VolumeConfig]:
    return {
        "musc_q0.1": replace(base, run=replace(base.run, method="musc", msm=MSMConfig(q=0.1))),
        "codegraph": replace(base, run=replace(base.run, method="codegraph")),
    }


def summary(m: dict[str, Any]) -> dict[str, Any]:
    return {"patient_auroc": r4(m["patient"]["auroc"]), "patient_f1_max": r4(m["patient"]["f1_max"]),
            "patient_ap": r4(m["patient"]["ap"]), "voxel_auroc": r4(m["voxel_auroc"]),
            "dice_all": r4(m["dice_mean"]), "dice_lesioned": r4(m["dice_lesioned"]),
            "dice_by_group": {k: r4(v) for k, v in m.get("dice_by_group", {}).items()},
            "token_f1": r4(m["token_f1"])}


def excluded_lesion_share(run, gts, groups: dict[str, str]) -> dict[str, float | None]:
    """Per group: share of lesion cubes (ground truth max-pooled to the grid) that CoDeGraph
    removed from the references, and share of all other cubes removed."""
    if run.scores.excluded is None:
        return {}
    g = run.maps.shape[1:]
    ex = run.scores.excluded.numpy().reshape(-1, *g)
    t = torch.from_numpy(np.stack(gts).astype(np.float32))[:, None]
    lesion = (F.adaptive_max_pool3d(t, g)[:, 0] > 0).numpy()
    out: dict[str, float | None] = {}
    for kind in sorted(set(groups.values())):
        rows = [i for i, n in enumerate(run.names) if groups[n] == kind]
        hit = lesion[rows]
        out[f"lesion_cubes_excluded_{kind}"] = r4(ex[rows][hit].mean()) if hit.any() else None
    out["other_cubes_excluded"] = r4(ex[~lesion].mean())
    return out


def interior_auroc(run, share: np.ndarray, labels: list[int], min_share: float) -> float | None:
    """Patient AUROC when only cubes with >= ``min_share`` brain count (analysis: the
    partial-volume cubes at the brain surface are where healthy volumes score highest)."""
    maps = run.maps.reshape(len(labels), -1)
    scores = np.where(share >= min_share, maps, 0.0).max(axis=1)
    return r4(image_metrics(scores, np.asarray(labels))["auroc"])


def save_mosaics(folder: Path, result, gts, names: list[str]) -> None:
    """A few mosaics for a look by eye (outside the repository)."""
    scale = batch_scale(result.maps, result.solid)
    for n in names:
        i = result.names.index(n)
        v = result.volumes[i]
        amap = upsample_grid(result.maps[i], v.cube.image.shape)
        write_png(folder / f"{n}.png", volume_mosaic(v.cube.image, amap, scale, mask=gts[i]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=112, help="cube side D")
    ap.add_argument("--slice-stride", type=int, default=2)
    ap.add_argument("--healthy", type=int, default=22)
    ap.add_argument("--random", type=int, default=5)
    ap.add_argument("--consistent", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "codegraph_volumes_cohort")
    ap.add_argument("--tag", default="")
    ap.add_argument("--reuse-tokens", action="store_true",
                    help="load the tokens (and their timing) stored in --work by an earlier run with the same "
                         "size, stride and cohort, instead of extracting them again (for scoring experiments)")
    a = ap.parse_args()

    t0 = time.perf_counter()
    cohort_cfg = CohortConfig(sources=tuple(str(s) for s in SOURCES), n_healthy=a.healthy, n_random=a.random,
                              n_consistent=a.consistent, seed=a.seed)
    build_cohort(a.work / "cohort", cohort_cfg, overwrite=True, progress=False)
    cohort_s = time.perf_counter() - t0
    paths, masks, groups = read_cohort(a.work / "cohort")
    n_cohort = len(paths)

    base = VolumeConfig(size=a.size, slice_stride=a.slice_stride)
    t0 = time.perf_counter()
    volumes = prepare_volumes([*paths, BRATS], base, progress=False)
    read_s = time.perf_counter() - t0
    stash = a.work / f"tokens_d{a.size}_s{a.slice_stride}_seed{a.seed}_{n_cohort}.pt"
    if a.reuse_tokens and stash.exists():
        saved = torch.load(stash, weights_only=False)
        tokens, tokens_s = saved["tokens"], saved["tokens_s"]
    else:
        t0 = time.perf_counter()
        tokens = build_tokens(volumes, base, load_volume_backbone(base), progress=False)
        tokens_s = time.perf_counter() - t0
        torch.save({"tokens": tokens, "tokens_s": tokens_s}, stash)
    batch = token_batch(volumes, tokens, base)
    per_volume = {"read_and_prepare_s": r4(read_s / len(volumes)), "tokens_s": r4(tokens_s / len(volumes))}
    print(f"tokens: {tokens_s:.1f} s for {len(volumes)} volumes", flush=True)

    cohort_batch = batch.subset(range(n_cohort))
    healthy_idx = [i for i, p in enumerate(paths) if groups[nifti_stem(p)] == "healthy"]
    brats_batch = batch.subset([*healthy_idx, n_cohort])
    brats_masks = [masks[i] for i in healthy_idx] + [BRATS_SEG]
    brats_paths = [paths[i] for i in healthy_idx] + [BRATS]

    results: dict[str, Any] = {}
    for name, cfg in method_configs(base).items():
        scores, scoring_s = score_batch(cohort_batch, cfg)
        run = result_from_batch(cohort_batch, scores, cfg, paths, {"scoring_s": scoring_s})
        m, gts = evaluate_run(run, masks, groups)
        lesioned = [r["name"] for r in m["per_volume"] if r["label"]]
        save_mosaics(a.work / "mosaics" / name, run, gts, lesioned[:4] + ["sub-000"])
        bscores, bscoring_s = score_batch(brats_batch, cfg)
        brun = result_from_batch(brats_batch, bscores, cfg, brats_paths, {"scoring_s": bscoring_s})
        bm, bgts = evaluate_run(brun, brats_masks)
        save_mosaics(a.work / "mosaics" / f"{name}_brats", brun, bgts, [brun.names[-1]])
        healthy_scores = np.asarray([r["score"] for r in bm["per_volume"][:-1]])
        brats = bm["per_volume"][-1]
        labels = [r["label"] for r in m["per_volume"]]
        results[name] = {
            "cohort": summary(m),
            "patient_auroc_interior_cubes_only": {
                str(t): interior_auroc(run, cohort_batch.brain_share, labels, t) for t in (0.75, 0.9)},
            "scoring_s_per_volume": r4(scoring_s / n_cohort),
            "exclusion_rate": r4(scores.diagnostics.get("exclusion_rate")),
            "exclusion": excluded_lesion_share(run, gts, groups),
            "outlier_communities": [
                [f"{run.names[i]} ({groups[run.names[i]]})" for i in c["images"]]
                for sub in scores.diagnostics.get("subsets", []) for c in sub.get("communities", []) if c["outlier"]
            ],
            "per_volume": [{k: (r4(v) if isinstance(v, float) else v) for k, v in r.items()} for r in m["per_volume"]],
            "brats": {
                "score": r4(brats["score"]),
                "healthy_scores": [r4(s) for s in healthy_scores],
                "healthy_at_or_above": int((healthy_scores >= brats["score"]).sum()),
                "patient_auroc": r4(bm["patient"]["auroc"]),
                "dice_vs_segmentation": r4(brats["dice"]),
                "voxel_auroc": r4(bm["voxel_auroc"]),
                "lesion_voxels_in_cube": brats["lesion_voxels"],
                "scoring_s_per_volume": r4(bscoring_s / len(brats_paths)),
            },
        }
        brief = {k: v for k, v in results[name]["brats"].items() if k != "healthy_scores"}
        print(name, json.dumps({"cohort": results[name]["cohort"], "brats": brief}), flush=True)

    kinds = [groups[nifti_stem(p)] for p in paths]
    out = {
        "benchmark": "volumes_cohort",
        "cohort": {"volumes": n_cohort, "healthy": kinds.count("healthy"), "random_lesion": kinds.count("random"),
                   "consistent_lesion": kinds.count("consistent"),
                   "sources": [str(s.relative_to(DATA)) for s in SOURCES],
                   "config": config_to_dict(cohort_cfg), "build_s": r4(cohort_s)},
        "brats_case": {"volume": str(BRATS.relative_to(DATA)), "segmentation": str(BRATS_SEG.relative_to(DATA)),
                       "note": "segmentation predicted by a model (labels 1-3 merged), not expert ground truth; "
                               "run = the healthy cohort volumes + this case"},
        "protocol": "SPEC section 9: patient score = max token score; Dice at the token-grid F1-best threshold, "
                    "lesion-free volumes with no prediction score 1; "
                    "metrics in the D^3 cube of each volume's brain box; "
                    "Nyul standardisation over all cohort volumes + the BraTS case (one token extraction)",
        "methods": results,
        "time_s_per_volume": per_volume,
        "time_s_total": {"tokens": r4(tokens_s), "read_and_prepare": r4(read_s)},
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "config": config_to_dict(base),
        "versions": versions(),
        "machine": {"cpu_count": __import__("os").cpu_count(), "processor": platform.processor(),
                    "load_average_at_end": list(__import__("os").getloadavg())},
    }
    name = "volumes_cohort" + (f"_{a.tag}" if a.tag else "")
    write_json(RESULTS / f"{name}.json", out)
    print(f"wrote {RESULTS / (name + '.json')}")


if __name__ == "__main__":
    main()
