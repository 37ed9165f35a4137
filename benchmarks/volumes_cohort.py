"""Volumes: MuSc vs CoDeGraph on a synthetic lesion cohort, plus one real BraTS case.

    python benchmarks/volumes_cohort.py --seeds 0 1 2 --tag d168_colin27_3seeds
writes benchmarks/results/volumes_cohort_<tag>.json. The cohorts (and a few mosaics) go to
--work (default: a folder under /tmp), never into the repository.

Every step below runs once per cohort seed (--seeds): with 10 lesioned volumes a cohort's
lesion draw moves patient AUROC by 0.2 (seed 0: 0.74, seed 1: 0.95 at D = 168, two-source
cohorts), so the summary reports the mean and range over seeds.

1. Build a seeded cohort from healthy, skull-stripped source brains (--sources; default
   colin27 ``ch2bet`` alone, see docs/volumes.md; mni152, ixi012, ixi015 as well, the IXI
   scans brain-extracted first by mri_sources.py) with --deformation-mm (default: the
   CohortConfig default, 8 mm): --healthy subjects, --random with one random lesion,
   --consistent with the repeated lesion type.
2. Read every cohort volume and the BraTS case (brats_case_a t1n) in ONE batch: one Nyul
   standardisation and one token extraction, timed per volume.
3. Cohort run: the cohort volumes only; MuSc (q = 0.1) and CoDeGraph (defaults): patient
   AUROC / F1-max (the default patient score: excess over the batch median at each cube
   position), voxel AUROC, Dice (all, lesioned, per group), scoring time; patient metrics
   again with SPEC's max token score (``patient_baseline = "none"``), with the max over
   whole cubes only (``patient_min_share = 1``), with the position median alone and over
   whole cubes; the maps are the same.
4. BraTS run: the healthy cohort volumes + the BraTS case, both methods: the case's patient
   score against every healthy one, and the Dice of its map against the provided
   segmentation (a model's prediction, labels 1-3 merged) at the run's grid-F1 threshold.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from common import DATA, graph_with, run_record, write_result
from mri_sources import MRI, SOURCE_NAMES, stripped_source

from codegraph_ad.config import MSMConfig, config_to_dict
from codegraph_ad.io.atomic import write_png
from codegraph_ad.metrics import image_metrics
from codegraph_ad.volumes.api import evaluate_run, read_cohort, result_from_batch, score_batch
from codegraph_ad.volumes.cohort import build_cohort
from codegraph_ad.volumes.config import CohortConfig, VolumeConfig
from codegraph_ad.volumes.mosaic import volume_mosaic
from codegraph_ad.volumes.nifti import nifti_stem
from codegraph_ad.volumes.outputs import batch_scale, upsample_grid
from codegraph_ad.volumes.pipeline import build_tokens, load_volume_backbone, prepare_volumes, token_batch
from codegraph_ad.volumes.scoring import patient_cubes, patient_map
from codegraph_ad.volumes.tokens import TokenBuilder, staggered_tokens

BRATS = MRI / "brats_case_a" / "t1n.nii.gz"
BRATS_SEG = MRI / "brats_case_a" / "segmentation.nii.gz"


def r4(x: Any) -> Any:
    return None if x is None else round(float(x), 4)


def method_configs(base: VolumeConfig, variants: dict[str, dict[str, Any]] | None = None) -> dict[str, VolumeConfig]:
    """MuSc q = 0.1, CoDeGraph at the volume defaults, and each variant (``codegraph_<name>``:
    CoDeGraph with those GraphConfig changes on top of the volume defaults)."""
    codegraph = replace(base, run=replace(base.run, method="codegraph"))
    out = {
        "musc_q0.1": replace(base, run=replace(base.run, method="musc", msm=MSMConfig(q=0.1))),
        "codegraph": codegraph,
    }
    for name, changes in (variants or {}).items():
        out[f"codegraph_{name}"] = replace(codegraph, run=replace(codegraph.run, graph=graph_with(codegraph.run.graph, changes)))
    return out


def windowed(configs: dict[str, VolumeConfig], windows: list[str]) -> dict[str, VolumeConfig]:
    """Each method once per position window (``none``: unrestricted; ``w``: name ``<method>_w<w>``)."""
    out = {}
    for w in windows:
        for name, cfg in configs.items():
            if w == "none":
                out[name] = cfg
            else:
                out[f"{name}_w{int(w)}"] = replace(cfg, run=replace(cfg.run, engine=replace(cfg.run.engine, window=int(w))))
    return out


def summary(m: dict[str, Any]) -> dict[str, Any]:
    return {"patient_auroc": r4(m["patient"]["auroc"]), "patient_f1_max": r4(m["patient"]["f1_max"]),
            "patient_ap": r4(m["patient"]["ap"]), "voxel_auroc": r4(m["voxel_auroc"]),
            "dice_all": r4(m["dice_mean"]), "dice_lesioned": r4(m["dice_lesioned"]),
            "dice_by_group": {k: r4(v) for k, v in m.get("dice_by_group", {}).items()},
            "token_f1": r4(m["token_f1"])}


def excluded_lesion_share(run, gts, groups: dict[str, str]) -> dict[str, float | None]:
    """Per group: share of lesion cubes (ground truth max-pooled to the grid) that CoDeGraph
    removed from the references, and share of all other cubes removed."""
    if run.excluded is None:
        return {}
    g = run.maps.shape[1:]
    ex = run.excluded
    t = torch.from_numpy(np.stack(gts).astype(np.float32))[:, None]
    lesion = (F.adaptive_max_pool3d(t, g)[:, 0] > 0).numpy()
    out: dict[str, float | None] = {}
    for kind in sorted(set(groups.values())):
        rows = [i for i, n in enumerate(run.names) if groups[n] == kind]
        hit = lesion[rows]
        out[f"lesion_cubes_excluded_{kind}"] = r4(ex[rows][hit].mean()) if hit.any() else None
    out["other_cubes_excluded"] = r4(ex[~lesion].mean())
    return out


# Patient-score variants measured next to the configured one, from the same maps:
# (VolumeConfig.patient_min_share, VolumeConfig.patient_baseline == "position-median").
PATIENT_VARIANTS = {
    "spec_max": (None, False),
    "patient_min_share_1": (1.0, False),
    "position_median": (None, True),
    "position_median_whole_cubes": (1.0, True),
}


def variant_scores(run, batch, min_share: float | None, position_baseline: bool) -> np.ndarray:
    """Patient scores of one variant from the same run (the maps do not change)."""
    counted = patient_cubes(batch.brain_share, batch.solid, min_share)
    return patient_map(run.scores.patch_scores, batch.solid, counted, position_baseline).max(dim=1).values.double().numpy()


def patient_summary(scores: np.ndarray, labels: list[int]) -> dict[str, Any]:
    m = image_metrics(scores, np.asarray(labels))
    return {"patient_auroc": r4(m["auroc"]), "patient_f1_max": r4(m["f1_max"]), "patient_ap": r4(m["ap"])}


def save_mosaics(folder: Path, result, gts, names: list[str]) -> None:
    """A few mosaics for a look by eye (outside the repository)."""
    scale = batch_scale(result.maps, result.solid)
    for n in names:
        i = result.names.index(n)
        v = result.volumes[i]
        amap = upsample_grid(result.maps[i], v.cube.image.shape)
        write_png(folder / f"{n}.png", volume_mosaic(v.cube.image, amap, scale, mask=gts[i]))


def run_seed(a: argparse.Namespace, seed: int, backbone) -> dict[str, Any]:
    """Build, tokenise and score one seeded cohort (and the BraTS case among its healthy volumes)."""
    work = a.work / f"seed{seed}"
    t0 = time.perf_counter()
    sources = [stripped_source(name, a.work) for name in a.sources]
    cohort_cfg = CohortConfig(sources=tuple(str(s) for s in sources), n_healthy=a.healthy, n_random=a.random,
                              n_consistent=a.consistent, deformation_mm=a.deformation_mm,
                              smoothness_mm=a.smoothness_mm, seed=seed)
    build_cohort(work / "cohort", cohort_cfg, overwrite=True, progress=False)
    cohort_s = time.perf_counter() - t0
    paths, masks, groups = read_cohort(work / "cohort")
    n_cohort = len(paths)

    base = VolumeConfig(size=a.size, slice_stride=a.slice_stride, staggered=a.staggered,
                        projection_dim=a.projection_dim)
    t0 = time.perf_counter()
    volumes = prepare_volumes([*paths, BRATS], base, progress=False)
    read_s = time.perf_counter() - t0
    # the stash name carries a digest of cohort.json: another cohort never reloads these tokens
    # tokens of another projection size carry it in the name (128, the default, keeps the older names)
    dim = "" if a.projection_dim == VolumeConfig.projection_dim else f"_p{a.projection_dim}"
    stem = f"tokens_d{a.size}_s{a.slice_stride}{dim}_{cohort_digest(work / 'cohort')}"
    tokens, tokens_s = cached(work / f"{stem}.pt", a.reuse_tokens,
                              lambda: build_tokens(volumes, replace(base, staggered=False), backbone, progress=False))
    if a.staggered:  # the shifted grid is stored on its own, so the cubic tokens above are reused
        builder = TokenBuilder(backbone, base.size, base.projection_dim, base.projection_seed, base.slice_stride,
                               base.run.features.batch_size)
        shifted, shifted_s = cached(work / f"{stem}_shifted.pt",
                                    a.reuse_tokens,
                                    lambda: [builder.build_shifted(v.cube.image, v.cube.brain) for v in volumes])
        tokens = [staggered_tokens(c, sh) for c, sh in zip(tokens, shifted)]
        tokens_s += shifted_s
    batch = token_batch(volumes, tokens, base)
    per_volume = {"read_and_prepare_s": r4(read_s / len(volumes)), "tokens_s": r4(tokens_s / len(volumes))}
    print(f"seed {seed}: tokens {tokens_s:.1f} s for {len(volumes)} volumes", flush=True)

    cohort_batch = batch.subset(range(n_cohort))
    healthy_idx = [i for i, p in enumerate(paths) if groups[nifti_stem(p)] == "healthy"]
    brats_batch = batch.subset([*healthy_idx, n_cohort])
    brats_masks = [masks[i] for i in healthy_idx] + [BRATS_SEG]
    brats_paths = [paths[i] for i in healthy_idx] + [BRATS]

    results: dict[str, Any] = {}
    for name, cfg in windowed(method_configs(base, a.variants), a.windows).items():
        if name.split("_w")[0] not in a.methods:
            continue
        scores, scoring_s = score_batch(cohort_batch, cfg)
        run = result_from_batch(cohort_batch, scores, cfg, paths, {"scoring_s": scoring_s})
        m, gts = evaluate_run(run, masks, groups)
        lesioned = [r["name"] for r in m["per_volume"] if r["label"]]
        save_mosaics(work / "mosaics" / name, run, gts, lesioned[:4] + ["sub-000"])
        bscores, bscoring_s = score_batch(brats_batch, cfg)
        brun = result_from_batch(brats_batch, bscores, cfg, brats_paths, {"scoring_s": bscoring_s})
        bm, bgts = evaluate_run(brun, brats_masks)
        save_mosaics(work / "mosaics" / f"{name}_brats", brun, bgts, [brun.names[-1]])
        healthy_scores = np.asarray([r["score"] for r in bm["per_volume"][:-1]])
        brats = bm["per_volume"][-1]
        labels = [r["label"] for r in m["per_volume"]]
        variants = {}
        for key, (min_share, baseline) in PATIENT_VARIANTS.items():
            vs = variant_scores(run, cohort_batch, min_share, baseline)
            bvs = variant_scores(brun, brats_batch, min_share, baseline)
            variants[key] = {**patient_summary(vs, labels), "scores": {n: r4(v) for n, v in zip(run.names, vs)},
                             "brats_healthy_at_or_above": int((bvs[:-1] >= bvs[-1]).sum())}
        communities = community_record(scores.diagnostics, run.names, groups)
        results[name] = {
            "cohort": summary(m),
            **variants,
            "scoring_s_per_volume": r4(scoring_s / n_cohort),
            "exclusion_rate": r4(scores.diagnostics.get("exclusion_rate")),
            "exclusion": excluded_lesion_share(run, gts, groups),
            "outlier_communities": [c["volumes"] for sub in communities for c in sub["communities"] if c["outlier"]],
            "communities": communities,
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
        print(f"seed {seed}", name, json.dumps({"cohort": results[name]["cohort"], "brats": brief,
                                                 **{k: {x: y for x, y in v.items() if x != "scores"}
                                                    for k, v in variants.items()}}), flush=True)

    kinds = [groups[nifti_stem(p)] for p in paths]
    return {
        "cohort": {"volumes": n_cohort, "healthy": kinds.count("healthy"), "random_lesion": kinds.count("random"),
                   "consistent_lesion": kinds.count("consistent"),
                   "sources": list(a.sources),
                   "lesions": lesion_table(work / "cohort"),
                   "config": config_to_dict(cohort_cfg), "build_s": r4(cohort_s)},
        "methods": results,
        "time_s_per_volume": per_volume,
        "time_s_total": {"tokens": r4(tokens_s), "read_and_prepare": r4(read_s)},
    }


def community_record(diagnostics: dict[str, Any], names: list[str], groups: dict[str, str]) -> list[dict[str, Any]]:
    """Per graph subset: the Tukey quartiles and every community of two or more volumes with its
    density, eligibility (size >= GraphConfig.min_community_size) and members, so a result file
    shows why a group of volumes was (not) flagged."""
    out = []
    for sub in diagnostics.get("subsets", []):
        label = [f"{names[i]} ({groups[names[i]]})" for i in sub["images"]]
        out.append({
            "quartiles": {k: (v if v is None or isinstance(v, int) else r4(v)) for k, v in sub["quartiles"].items()},
            "resolution": r4(sub["resolution"]),
            "n_links": sub["links"]["n_links"],
            "communities": [{"density": r4(c["density"]), "eligible": c["eligible"], "outlier": c["outlier"],
                             "volumes": [label[i] for i in c["images"]]}
                            for c in sub["communities"] if c["size"] >= 2],
        })
    return out


def cohort_digest(cohort_dir: Path) -> str:
    """Short digest of a cohort's manifest (its config and every drawn parameter)."""
    return hashlib.sha256((cohort_dir / "cohort.json").read_bytes()).hexdigest()[:10]


def cached(stash: Path, reuse: bool, build) -> tuple[list, float]:
    """Tokens (and the seconds they took) from ``stash`` when reusing, else built and stored."""
    if reuse and stash.exists():
        saved = torch.load(stash, weights_only=False)
        return saved["tokens"], saved["tokens_s"]
    t0 = time.perf_counter()
    tokens = build()
    seconds = time.perf_counter() - t0
    torch.save({"tokens": tokens, "tokens_s": seconds}, stash)
    return tokens, seconds


def lesion_table(cohort_dir: Path) -> list[dict[str, Any]]:
    """Kind, largest diameter and contrast of each drawn lesion (what makes a seed easy or hard)."""
    subjects = json.loads((cohort_dir / "cohort.json").read_text())["subjects"]
    return [{"name": s["name"], "kind": s["kind"], "diameter_mm": r4(max(s["lesion"]["diameters_mm"])),
             "contrast": r4(s["lesion"]["contrast"])} for s in subjects if "lesion" in s]


def across_seeds(per_seed: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """Mean, min and max over seeds of the headline numbers of each method."""
    def stats(values: list[float | None]) -> dict[str, float | None]:
        v = [x for x in values if x is not None]
        return {"mean": r4(np.mean(v)), "min": r4(min(v)), "max": r4(max(v))} if v else {}

    out: dict[str, Any] = {}
    methods = next(iter(per_seed.values()))["methods"]
    for name in methods:
        rows = [r["methods"][name] for r in per_seed.values()]
        out[name] = {
            "patient_auroc": stats([r["cohort"]["patient_auroc"] for r in rows]),
            "patient_ap": stats([r["cohort"]["patient_ap"] for r in rows]),
            "patient_auroc_spec_max": stats([r["spec_max"]["patient_auroc"] for r in rows]),
            "brats_healthy_at_or_above_spec_max": [r["spec_max"]["brats_healthy_at_or_above"] for r in rows],
            "patient_auroc_whole_cubes": stats([r["patient_min_share_1"]["patient_auroc"] for r in rows]),
            "patient_ap_whole_cubes": stats([r["patient_min_share_1"]["patient_ap"] for r in rows]),
            "patient_auroc_position_median": stats([r["position_median"]["patient_auroc"] for r in rows]),
            "patient_auroc_position_median_whole_cubes": stats(
                [r["position_median_whole_cubes"]["patient_auroc"] for r in rows]),
            "brats_healthy_at_or_above_position_median": [
                r["position_median"]["brats_healthy_at_or_above"] for r in rows],
            "voxel_auroc": stats([r["cohort"]["voxel_auroc"] for r in rows]),
            "dice_consistent": stats([r["cohort"]["dice_by_group"].get("consistent") for r in rows]),
            "dice_random": stats([r["cohort"]["dice_by_group"].get("random") for r in rows]),
            "dice_all": stats([r["cohort"]["dice_all"] for r in rows]),
            "brats_healthy_at_or_above": [r["brats"]["healthy_at_or_above"] for r in rows],
            "brats_dice": stats([r["brats"]["dice_vs_segmentation"] for r in rows]),
            "seeds_with_outlier_community": sum(bool(r["outlier_communities"]) for r in rows),
            "scoring_s_per_volume": stats([r["scoring_s_per_volume"] for r in rows]),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=168, help="cube side D")
    ap.add_argument("--slice-stride", type=int, default=VolumeConfig.slice_stride)
    ap.add_argument("--healthy", type=int, default=22)
    ap.add_argument("--random", type=int, default=5)
    ap.add_argument("--consistent", type=int, default=5)
    ap.add_argument("--sources", nargs="+", choices=SOURCE_NAMES, default=["colin27"],
                    help="healthy source brains (IXI scans are brain-extracted first, mri_sources.py)")
    ap.add_argument("--deformation-mm", type=float, default=CohortConfig.deformation_mm)
    ap.add_argument("--smoothness-mm", type=float, default=CohortConfig.smoothness_mm)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="cohort seeds, one cohort each")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "codegraph_volumes_cohort")
    ap.add_argument("--tag", default="")
    ap.add_argument("--projection-dim", type=int, default=VolumeConfig.projection_dim,
                    help="d' per axis; 0 keeps the backbone's C (no projection)")
    ap.add_argument("--staggered", action="store_true", help="add the half-cube-shifted token grid (lattice.py)")
    ap.add_argument("--reuse-tokens", action="store_true",
                    help="load the tokens (and their timing) stored in --work by an earlier run with the same "
                         "size, stride, projection and cohort, instead of extracting them again (for scoring experiments)")
    ap.add_argument("--variants", default="{}",
                    help='extra CoDeGraph settings scored as codegraph_<name>: {"name": {GraphConfig changes}}')
    ap.add_argument("--methods", nargs="+", default=None,
                    help="which methods to score (default: all, variants included; e.g. codegraph alone after a "
                         "graph-stage change)")
    ap.add_argument("--windows", default="none",
                    help="comma-separated position windows in token cells, each method runs with each "
                         "(e.g. none,1,2; docs/window.md)")
    a = ap.parse_args()
    a.windows = [w for w in a.windows.split(",") if w]
    a.variants = json.loads(a.variants)
    known = list(method_configs(VolumeConfig(), a.variants))
    a.methods = a.methods or known
    if unknown := sorted(set(a.methods) - set(known)):
        ap.error(f"unknown methods {unknown}; choose from {known}")

    base = VolumeConfig(size=a.size, slice_stride=a.slice_stride, staggered=a.staggered,
                        projection_dim=a.projection_dim)
    backbone = load_volume_backbone(base)
    per_seed: dict[int, Any] = {}
    for seed in a.seeds:  # written after every seed, so a long run keeps what it finished
        per_seed[seed] = run_seed(a, seed, backbone)
        write_result("volumes_cohort", a.tag, results_record(a, base, per_seed))
    print(json.dumps(results_record(a, base, per_seed)["across_seeds"], indent=1))


def results_record(a: argparse.Namespace, base: VolumeConfig, per_seed: dict[int, Any]) -> dict[str, Any]:
    return {
        "benchmark": "volumes_cohort",
        "seeds": list(per_seed),
        "variants": a.variants,
        "brats_case": {"volume": str(BRATS.relative_to(DATA)), "segmentation": str(BRATS_SEG.relative_to(DATA)),
                       "note": "segmentation predicted by a model (labels 1-3 merged), not expert ground truth; "
                               "run = the healthy cohort volumes + this case"},
        "protocol": "SPEC section 9 metrics; patient score (cohort, brats) = the configured one "
                    "(config.patient_baseline); Dice at the token-grid F1-best threshold, "
                    "lesion-free volumes with no prediction score 1; "
                    "metrics in the D^3 cube of each volume's brain box; "
                    "Nyul standardisation over all cohort volumes + the BraTS case (one token extraction); "
                    "spec_max: the same runs with SPEC's max token score; "
                    "patient_min_share_1: the max token score over whole-brain cubes only; "
                    "position_median: the patient score as the largest excess over the batch median at the "
                    "same cube position; position_median_whole_cubes: both",
        "across_seeds": across_seeds(per_seed),
        "per_seed": {str(k): v for k, v in per_seed.items()},
        **run_record(base),
    }


if __name__ == "__main__":
    main()
