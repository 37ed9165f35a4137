"""Scoring new images against a finished run (`codegraph-ad score`) against re-running `detect`.

    python benchmarks/score_new.py [--size 224] [--tag TAG]

MVTec AD bottle test split, split in two by interleaving within each defect type (so both
halves hold good and defective images). Per method (musc, codegraph at their defaults):
a reference run on the first half; `score` of the second half against it; `detect` on the
whole batch (first half + the new images). Image AUROC of the second half in both, and the
wall time of `score` and of the whole `detect`, per new image, measured in one process.

Feature cache: the first half's features are cached by the reference run (each method has its
own fresh cache folder), so the whole `detect` reads them as a user's rerun would; the new
images are extracted in both `score` (cache off) and `detect` (not cached before).
Writes benchmarks/results/score_new[_<tag>].json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import BOTTLE, RESULTS, pct, run_record, write_result

from codegraph_ad.api import detect, features_for_batch, score_new
from codegraph_ad.config import FeatureConfig, RunConfig
from codegraph_ad.datasets.mvtec import read_mvtec_category
from codegraph_ad.io.batch import load_batch
from codegraph_ad.io.run_folder import REFERENCE, read_run_folder
from codegraph_ad.methods.reference import ReferenceSet
from codegraph_ad.metrics import image_metrics


def halves(samples: list) -> tuple[list, list]:
    """Within each defect type in name order: even positions to the first half, odd to the second."""
    first, second = [], []
    for defect in sorted({s.defect for s in samples}):
        group = sorted((s for s in samples if s.defect == defect), key=lambda s: str(s.image_path))
        first += group[0::2]
        second += group[1::2]
    return first, second


def folder_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def auroc_of(scores: dict[str, float], samples: list, names_by_path: dict[str, str]) -> float:
    s = np.array([scores[names_by_path[str(x.image_path)]] for x in samples])
    y = np.array([x.label for x in samples])
    return pct(image_metrics(s, y))["auroc"]


def fp16_effect(run: Path, new: list, config: RunConfig, root: Path, cache_dir: Path) -> dict:
    """How far the stored float16 reference moves the new images' patch scores from float32."""
    folder = read_run_folder(run)
    stored = ReferenceSet.from_run(folder)
    batch = load_batch([Path(p) for p in folder.manifest.paths], config.features.image_size, root, "stop", False)
    exact = ReferenceSet.from_features(features_for_batch(batch, config, None, False, True, cache_dir), config,
                                       folder.excluded)
    new_batch = load_batch([s.image_path for s in new], config.features.image_size, root, "stop", False)
    feats = features_for_batch(new_batch, config, None, False, True, cache_dir)
    a, b = stored.score_new(feats).patch_scores, exact.score_new(feats).patch_scores
    diff = (a - b).abs()
    return {"max_abs_patch_diff": float(diff.max()), "mean_abs_patch_diff": float(diff.mean()),
            "patch_score_mean": float(b.mean()),
            "max_abs_image_diff": float((a.max(dim=1).values - b.max(dim=1).values).abs().max())}


def run_method(method: str, size: int, first: list, second: list, root: Path, work: Path) -> dict:
    config = RunConfig(method=method, features=FeatureConfig(image_size=size))
    cache_dir = work / f"cache_{method}"
    run, scored, whole = work / f"{method}_first", work / f"{method}_score", work / f"{method}_whole"
    t0 = time.perf_counter()
    ref = detect([s.image_path for s in first], run, config, progress=False, cache_dir=cache_dir, root=root)
    reference_run_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    new = score_new(run, [s.image_path for s in second], scored, progress=False, cache=False, root=root)
    score_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    full = detect([s.image_path for s in first + second], whole, config, progress=False, cache_dir=cache_dir,
                  root=root)
    detect_s = time.perf_counter() - t0

    names = {str(p): n for n, p in zip(full.names, full.paths)}
    n_new = len(second)
    whole_scores = dict(zip(full.names, full.scores.image_scores.tolist()))
    new_scores = dict(zip(new.names, new.scores.image_scores.tolist()))
    ref_scores = dict(zip(ref.names, ref.scores.image_scores.tolist()))
    reference_bytes = (run / REFERENCE).stat().st_size
    out = {
        "auroc_second_half": {"score_against_first_half": auroc_of(new_scores, second, names),
                              "detect_whole_batch": auroc_of(whole_scores, second, names)},
        "auroc_first_half_reference_run": auroc_of(ref_scores, first, names),
        "auroc_whole_batch_detect": auroc_of(whole_scores, first + second, names),
        "time_s": {"reference_run": round(reference_run_s, 2), "score": round(score_s, 2),
                   "detect_whole": round(detect_s, 2),
                   "score_split": {k: round(v, 2) for k, v in new.timings.items()},
                   "detect_split": {k: round(v, 2) for k, v in full.timings.items()}},
        "per_new_image_s": {"score": round(score_s / n_new, 3), "detect_whole": round(detect_s / n_new, 3)},
        "speedup_per_new_image": round(detect_s / score_s, 2),
        "reference": {"file_mb": round(reference_bytes / 1e6, 2),
                      "mb_per_image": round(reference_bytes / 1e6 / len(first), 3),
                      "run_folder_mb": round(folder_mb(run), 1),
                      "maps_mb": round(folder_mb(run / "maps"), 1),
                      "excluded_patches": new.scores.diagnostics["reference"]["excluded_patches"]},
    }
    out["fp16_vs_fp32_reference"] = fp16_effect(run, second, config, root, cache_dir)
    print(method, out)
    return out


def run_stream(method: str, size: int, first: list, arriving: list, root: Path, work: Path) -> dict:
    """New images arriving one at a time: `score` of each against the first-half run, next to
    `detect` on the first half + that image (the first half's features cached in both cases)."""
    config = RunConfig(method=method, features=FeatureConfig(image_size=size))
    cache_dir = work / f"stream_cache_{method}"
    run = work / f"stream_{method}_first"
    detect([s.image_path for s in first], run, config, progress=False, cache_dir=cache_dir, root=root)
    rows = []
    for i, sample in enumerate(arriving):
        t0 = time.perf_counter()
        score_new(run, [sample.image_path], work / f"stream_{method}_score_{i}", progress=False, cache=False,
                  root=root)
        score_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        detect([s.image_path for s in first] + [sample.image_path], work / f"stream_{method}_detect_{i}", config,
               progress=False, cache_dir=cache_dir, root=root)
        detect_s = time.perf_counter() - t0
        rows.append({"image": str(sample.image_path.relative_to(root)), "score_s": round(score_s, 2),
                     "detect_s": round(detect_s, 2), "speedup": round(detect_s / score_s, 2)})
        print(method, rows[-1])
    return {"images": rows, "speedup_mean": round(float(np.mean([r["speedup"] for r in rows])), 2),
            "score_s_mean": round(float(np.mean([r["score_s"] for r in rows])), 2),
            "detect_s_mean": round(float(np.mean([r["detect_s"] for r in rows])), 2)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--tag", default="")
    ap.add_argument("--note", default="", help="conditions of this measurement, kept in the results file")
    ap.add_argument("--stream", type=int, default=0,
                    help="instead: score this many second-half images one at a time (added to the results file)")
    ap.add_argument("--methods", default="musc,codegraph")
    a = ap.parse_args()
    samples = read_mvtec_category(BOTTLE)
    first, second = halves(samples)
    root = BOTTLE / "test"
    if a.stream:
        path = RESULTS / (f"score_new_{a.tag}.json" if a.tag else "score_new.json")
        result = json.loads(path.read_text())
        arriving = [second[i] for i in np.linspace(0, len(second) - 1, a.stream).round().astype(int)]
        with tempfile.TemporaryDirectory() as tmp:
            result["streaming"] = {
                "protocol": ("images of the second half arriving one at a time: `score` of each (cache off) "
                             "against a run on the first half, next to `detect` on the first half + that image "
                             "(first half's features cached, the new one extracted); wall times, all outputs"),
                "note": a.note,
                "methods": {m: run_stream(m, a.size, first, arriving, root, Path(tmp)) for m in a.methods.split(",")}}
        write_result("score_new", a.tag, result)
        return
    result = {
        "benchmark": "score_new",
        "dataset": f"MVTec AD bottle test split ({len(samples)} images) at {a.size} px",
        "split": {"first_half": len(first), "first_half_anomalous": sum(s.label for s in first),
                  "second_half": len(second), "second_half_anomalous": sum(s.label for s in second),
                  "rule": "interleaved within each defect type, in name order (even -> first, odd -> second)"},
        "protocol": ("one process: reference run (detect) on the first half, `score` of the second half "
                     "against it (cache off: its features are extracted), `detect` on first half + second half "
                     "(the first half's features from the cache the reference run filled, the second half "
                     "extracted); wall times include reading, features, scoring and writing every output "
                     "(maps, overlays, report)"),
        "threads": torch.get_num_threads(),
        "note": a.note,
        "methods": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for method in a.methods.split(","):
            result["methods"][method] = run_method(method, a.size, first, second, root, Path(tmp))
    result.update(run_record(RunConfig(features=FeatureConfig(image_size=a.size))))
    write_result("score_new", a.tag, result)


if __name__ == "__main__":
    main()
