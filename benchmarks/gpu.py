"""GPU benchmark: the engine, LNAMD and the backbone's PyTorch port on ``--device cuda``.

    python benchmarks/gpu.py                           # a GPU machine: every part, about 8 minutes
    python benchmarks/gpu.py --parts bottle,scale --max-minutes 5
    python benchmarks/gpu.py --smoke                   # tiny sizes on the CPU in < 1 minute

writes ``benchmarks/results/gpu_<device-name>.json`` (``--smoke``: a temporary file unless
``--out``), rewritten after every measurement, so a run cut short keeps what it finished.
The data root (``mvtec_ad_bottle/bottle``, ``mri/colin27``) is ``--data``, else
``$CODEGRAPH_AD_DATA``, else ``./shared/data`` or ``../shared/data``.

Parts (``--parts``, in this order):

- ``env``: the device, its compute capability and free memory, which precisions it runs
  (``engine.device.precision_available``), the engine's block cap there.
- ``agreement``: MuSc on the same random tokens on the CPU and on the device in fp32; the
  device run again with TF32 allowed process-wide (``torch.set_float32_matmul_precision
  ("high")``), which the engine's fp32 must ignore (TF32 off inside ``fp32_matmul``).
- ``bottle``: MVTec AD bottle test split (83 images) end to end at ``--size`` (448):
  decode, feature extraction on the device (the embedded ViT-S's PyTorch port, fp32 and
  bf16 autocast), MuSc and CoDeGraph scoring in fp32 / bf16 / int8, image and pixel
  metrics, and each precision's largest score difference from fp32.
- ``volumes``: a seeded synthetic cohort from colin27 (``--volume-subjects``), tokenised at
  D = ``--volume-size`` (336) with the backbone on the device, scored by MuSc and CoDeGraph.
- ``scale``: N = 1,000 and 10,000 images (``--scale-n``) with fixed K = 100 references
  (``--references``) through the estimator API, MuSc and CoDeGraph, each precision. The
  bottle category has 83 test images, so the tokens are seeded random Gaussians of the real
  shape (4 blocks, (``--scale-size``/14)^2 patches, C = 384): the timings are real, the scores
  mean nothing, and the results file says so.

Each measurement that fails (out of memory, a knob the engine does not honour yet) is kept
as an ``error`` entry and the run goes on; ``--max-minutes`` skips what would start late.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import re
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from codegraph_ad import CoDeGraph, FeatureExtractor, MuSc
from codegraph_ad.api import versions
from codegraph_ad.backbones.device import resolve_device, synchronize
from codegraph_ad.backbones.from_config import backbone_from_config
from codegraph_ad.config import MSMConfig
from codegraph_ad.datasets.mvtec import read_mvtec_category
from codegraph_ad.engine.device import block_cap_bytes, cuda_capability, precision_available
from codegraph_ad.errors import CodegraphError
from codegraph_ad.evaluation import batch_metrics, eval_maps, eval_masks
from codegraph_ad.features.extract import FeatureSet, extract_features
from codegraph_ad.io.atomic import write_json

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
PARTS = ("env", "agreement", "bottle", "volumes", "scale")  # the longest (N = 10,000) last
METHODS = {"musc": MuSc, "codegraph": CoDeGraph}
SCALE_NOTE = ("scale: seeded random Gaussian tokens of the real shape stand in for images (bottle has 83 test "
              "images); the timings are real, the scores mean nothing")


# -- where things are ---------------------------------------------------------------------------


def data_root(given: str | None) -> Path:
    """The shared data folder: --data, $CODEGRAPH_AD_DATA, ./shared/data or ../shared/data."""
    candidates = [Path(given)] if given else []
    if os.environ.get("CODEGRAPH_AD_DATA"):
        candidates.append(Path(os.environ["CODEGRAPH_AD_DATA"]))
    candidates += [REPO / "shared" / "data", REPO.parent / "shared" / "data", Path.cwd() / "shared" / "data"]
    for c in candidates:
        if (c / "mvtec_ad_bottle" / "bottle").is_dir() or (c / "mri").is_dir():
            return c
    return candidates[0]


def device_slug(device: torch.device) -> str:
    """``nvidia_h100_80gb_hbm3`` for the result file's name; ``cpu`` off CUDA."""
    if device.type != "cuda":
        return "cpu"
    return re.sub(r"[^a-z0-9]+", "_", torch.cuda.get_device_name(device).lower()).strip("_")


# -- measuring ----------------------------------------------------------------------------------


def timed(fn: Callable[[], Any], device: torch.device) -> tuple[Any, float]:
    """``fn()`` and its seconds, the device drained before and after (CUDA is asynchronous)."""
    synchronize(device)
    t0 = time.perf_counter()
    out = fn()
    synchronize(device)
    return out, time.perf_counter() - t0


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_gpu_mb(device: torch.device) -> float | None:
    return round(torch.cuda.max_memory_allocated(device) / 1e6, 1) if device.type == "cuda" else None


def r4(x: Any) -> float | None:
    return None if x is None else round(float(x), 4)


def pct(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: (None if v is None else round(100 * v, 2)) for k, v in metrics.items()}


class Recorder:
    """The results file, rewritten after every entry; a deadline after which entries are skipped."""

    def __init__(self, path: Path, record: dict[str, Any], max_minutes: float, device: torch.device) -> None:
        self.path, self.record, self.device = path, record, device
        self.deadline = time.monotonic() + 60 * max_minutes

    def save(self) -> None:
        write_json(self.path, self.record)

    def entry(self, section: list, name: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
        """Run one measurement into ``section``: its dict, or an error / skipped entry."""
        if time.monotonic() > self.deadline:
            section.append({"name": name, "skipped": "--max-minutes reached"})
            self.save()
            return None
        print(f"[gpu.py] {name} ...", flush=True)
        try:
            out: dict[str, Any] | None = {"name": name, **fn()}
            section.append(out)
        except (RuntimeError, CodegraphError, MemoryError, ValueError, NotImplementedError) as exc:
            out = None
            section.append({"name": name, "error": f"{type(exc).__name__}: {exc}"[:800],
                            "where": traceback.format_exc(limit=-3)[-1200:]})
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
        self.save()
        return out


def score(method: str, features: FeatureSet, device: str, precision: str, **params: Any) -> tuple[Any, dict]:
    """One ``fit_predict`` on ``device`` in ``precision``: the result and its timing entry."""
    dev = torch.device(resolve_device(device))
    est = METHODS[method](device=device, precision=precision, **params)
    reset_peak(dev)
    res, seconds = timed(lambda: est.fit_predict(features), dev)
    return res, {"method": method, "precision": precision, "seconds": round(seconds, 3),
                 "peak_gpu_mb": peak_gpu_mb(dev), "params": {k: v for k, v in params.items()}}


def differences(a: Any, b: Any) -> dict[str, float]:
    """Largest patch- and image-score differences of result ``a`` from result ``b``."""
    pa, pb = a.patch_scores.float(), b.patch_scores.float()
    scale = float(pb.abs().max()) or 1.0
    return {"patch_max_abs": r4(float((pa - pb).abs().max())), "patch_max_rel": r4(float((pa - pb).abs().max()) / scale),
            "image_max_abs": r4(float(np.abs(np.asarray(a.image_scores) - np.asarray(b.image_scores)).max()))}


def random_features(n: int, layers: int, m: int, c: int, device: torch.device, seed: int = 0) -> FeatureSet:
    """Seeded Gaussian tokens ``(n, layers, m, c)`` on the host (drawn on ``device`` in chunks)."""
    side = int(round(math.sqrt(m)))
    out = torch.empty((n, layers, m, c), dtype=torch.float32)
    g = torch.Generator(device=device).manual_seed(seed)
    chunk = max(1, (1 << 28) // max(1, layers * m * c))  # 1 GB of fp32 at a time
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        out[s:e] = torch.randn((e - s, layers, m, c), generator=g, device=device).cpu()
    cls = torch.randn((n, c), generator=torch.Generator().manual_seed(seed + 1))
    return FeatureSet(out, cls, (side, side))


# -- the parts ----------------------------------------------------------------------------------


def part_env(rec: Recorder, a: argparse.Namespace, device: torch.device) -> None:
    env: dict[str, Any] = {"device": str(device), "torch": torch.__version__, "cuda": torch.version.cuda,
                           "cpu_count": os.cpu_count(), "processor": platform.processor(),
                           "torch_cpu_capability": torch.backends.cpu.get_cpu_capability()}
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        env.update(name=torch.cuda.get_device_name(device), capability=cuda_capability(device),
                   free_gb=round(free / 1e9, 1), total_gb=round(total / 1e9, 1),
                   cudnn=torch.backends.cudnn.version())
    env["precisions"] = {p: precision_available(p, device) for p in ("fp32", "bf16", "int8")}
    env["block_cap_mb"] = round(block_cap_bytes(device) / 2**20, 1)
    rec.record["env"] = env
    rec.save()


def part_agreement(rec: Recorder, a: argparse.Namespace, device: torch.device) -> None:
    """fp32 on the device against the CPU, and immune to a process-wide TF32 setting."""
    section: list = rec.record.setdefault("agreement", [])
    n, m = a.agreement_n, (a.size // 14) ** 2
    feats = random_features(n, 4, m, 384, torch.device("cpu"), seed=7)
    found: dict[str, Any] = {}

    def run(where: str, tf32: bool) -> dict[str, Any]:
        previous = torch.get_float32_matmul_precision()
        if tf32:
            torch.set_float32_matmul_precision("high")
        try:
            res, entry = score("musc", feats, where, "fp32")
        finally:
            torch.set_float32_matmul_precision(previous)
        found[(where, tf32)] = res
        if ("cpu", False) in found and (where, tf32) != ("cpu", False):
            entry["vs_cpu_fp32"] = differences(res, found[("cpu", False)])
        return {**entry, "n": n, "m": m, "tf32_allowed_globally": tf32}

    rec.entry(section, "musc fp32 cpu", lambda: run("cpu", False))
    if device.type != "cpu":
        rec.entry(section, f"musc fp32 {device.type}", lambda: run(str(device), False))
        rec.entry(section, f"musc fp32 {device.type}, TF32 allowed process-wide", lambda: run(str(device), True))


def part_bottle(rec: Recorder, a: argparse.Namespace, device: torch.device, data: Path) -> None:
    bottle = data / "mvtec_ad_bottle" / "bottle"
    out: dict[str, Any] = {"dataset": f"MVTec AD bottle test split at {a.size} px", "extraction": [], "scoring": []}
    rec.record["bottle"] = out
    if not (bottle / "test").is_dir():
        out["skipped"] = f"no data at {bottle} (give --data)"
        rec.save()
        return
    samples = read_mvtec_category(bottle)
    if a.bottle_images:
        samples = samples[:: max(1, len(samples) // a.bottle_images)][: a.bottle_images]
    labels = np.array([s.label for s in samples])
    out["n_images"], out["n_anomalous"] = len(samples), int(labels.sum())
    reader = FeatureExtractor(image_size=a.size, cache=False)
    batch, read_s = timed(lambda: reader.read([s.image_path for s in samples]), torch.device("cpu"))
    masks = eval_masks(samples, batch.original_sizes, 256)
    out["read_s"] = round(read_s, 2)
    features: dict[str, FeatureSet] = {}

    def extract(bp: str) -> dict[str, Any]:
        ex = FeatureExtractor(image_size=a.size, device=str(device), backbone_precision=bp, cache=False)
        model, load_s = timed(ex.backbone_model, device)
        warm = min(len(batch), 4)
        timed(lambda: extract_features(model, lambda i: batch.resized[i], warm, warm, False), device)
        reset_peak(device)
        feats, secs = timed(lambda: ex.transform_batch(batch), device)
        features[bp] = feats
        entry = {"backbone_precision": bp, "backend": getattr(model, "backend", None), "load_s": round(load_s, 2),
                 "extract_s": round(secs, 3), "images_per_s": round(len(batch) / secs, 1),
                 "peak_gpu_mb": peak_gpu_mb(device)}
        if bp != "fp32" and "fp32" in features:
            x, y = feats.layers, features["fp32"].layers
            entry["vs_fp32"] = {"rel_l2": r4(float((x - y).norm() / y.norm())),
                                "min_token_cosine": r4(float(torch.nn.functional.cosine_similarity(x, y, dim=-1).min()))}
        return entry

    for bp in a.backbone_precisions:
        if bp != "fp32" and not precision_available(bp, device):
            out["extraction"].append({"name": f"features {bp}", "skipped": f"{bp} not available on {device}"})
            continue
        rec.entry(out["extraction"], f"features {bp}", lambda bp=bp: extract(bp))
    if "fp32" not in features:
        return
    results: dict[tuple[str, str], Any] = {}

    def run(method: str, precision: str, feature_precision: str = "fp32") -> dict[str, Any]:
        res, entry = score(method, features[feature_precision], str(device), precision)
        t0 = time.perf_counter()
        maps = eval_maps(res.patch_scores, res.grid, a.size, 256)
        metrics = batch_metrics(res.image_scores, maps, masks, labels)
        entry.update(image=pct(metrics["image"]), pixel=pct(metrics["pixel"]),
                     metrics_s=round(time.perf_counter() - t0, 2), features=feature_precision)
        if feature_precision == "fp32":
            results[(method, precision)] = res
        if (method, "fp32") in results and (precision, feature_precision) != ("fp32", "fp32"):
            entry["vs_fp32"] = differences(res, results[(method, "fp32")])
        if precision == "fp32" and feature_precision == "fp32":
            fx = next(e for e in out["extraction"] if e.get("backbone_precision") == "fp32")
            entry["end_to_end_s"] = round(read_s + fx["extract_s"] + entry["seconds"], 2)
        return entry

    for method in a.methods:
        for precision in a.precisions:
            if not precision_available(precision, device):
                out["scoring"].append({"name": f"{method} {precision}", "skipped": f"not available on {device}"})
                continue
            rec.entry(out["scoring"], f"{method} {precision}", lambda m=method, p=precision: run(m, p))
        for bp in features:
            if bp != "fp32":
                rec.entry(out["scoring"], f"{method} fp32 on {bp} features",
                          lambda m=method, bp=bp: run(m, "fp32", bp))


def part_scale(rec: Recorder, a: argparse.Namespace, device: torch.device) -> None:
    m = (a.scale_size // 14) ** 2
    out: dict[str, Any] = {"note": SCALE_NOTE, "references": a.references, "m": m, "layers": 4, "c": a.scale_c,
                           "runs": []}
    rec.record["scale"] = out
    for n in a.scale_n:
        made: dict[str, Any] = {}

        def make(n=n) -> dict[str, Any]:
            feats, secs = timed(lambda: random_features(n, 4, m, a.scale_c, device), device)
            made["features"] = feats
            return {"n": n, "seconds": round(secs, 2), "host_gb": round(feats.layers.numel() * 4 / 1e9, 2)}

        rec.entry(out["runs"], f"random tokens N={n}", make)
        if "features" not in made:
            continue
        for method in a.methods:
            for precision in a.precisions:
                if not precision_available(precision, device):
                    continue

                def run(method=method, precision=precision, n=n) -> dict[str, Any]:
                    res, entry = score(method, made["features"], str(device), precision, references=a.references)
                    entry.update(n=n, ms_per_image=round(1000 * entry["seconds"] / n, 2),
                                 scores_finite=bool(torch.isfinite(res.patch_scores).all()))
                    return entry

                rec.entry(out["runs"], f"{method} {precision} N={n} K={a.references}", run)
        del made["features"]


def part_volumes(rec: Recorder, a: argparse.Namespace, device: torch.device, data: Path) -> None:
    from codegraph_ad.volumes.api import evaluate_run, read_cohort, result_from_batch, score_batch
    from codegraph_ad.volumes.cohort import build_cohort
    from codegraph_ad.volumes.config import CohortConfig, VolumeConfig
    from codegraph_ad.volumes.pipeline import tokens_from_paths

    source = data / "mri" / "colin27" / "ch2bet.nii.gz"
    out: dict[str, Any] = {"size": a.volume_size, "source": "colin27 ch2bet", "runs": []}
    rec.record["volumes"] = out
    if not source.is_file():
        out["skipped"] = f"no data at {source} (give --data)"
        rec.save()
        return
    n = a.volume_subjects
    n_random = n_consistent = max(1, n // 6)
    cohort_cfg = CohortConfig(sources=(str(source),), n_healthy=n - n_random - n_consistent, n_random=n_random,
                              n_consistent=n_consistent, voxel_mm=a.volume_voxel_mm, seed=0)
    work = Path(tempfile.mkdtemp(prefix="gpu_bench_cohort_"))
    state: dict[str, Any] = {}

    def cohort() -> dict[str, Any]:
        _, secs = timed(lambda: build_cohort(work / "cohort", cohort_cfg, overwrite=True, progress=False),
                        torch.device("cpu"))
        state["paths"], state["masks"], state["groups"] = read_cohort(work / "cohort")
        return {"subjects": len(state["paths"]), "n_random": n_random, "n_consistent": n_consistent,
                "voxel_mm": a.volume_voxel_mm, "seconds": round(secs, 2)}

    rec.entry(out["runs"], "cohort", cohort)
    if "paths" not in state:
        return
    base = VolumeConfig(size=a.volume_size)

    def engine_cfg(method: str, precision: str) -> VolumeConfig:
        run = replace(base.run, method=method, engine=replace(base.run.engine, device=str(device), precision=precision))
        if method == "musc":
            run = replace(run, msm=MSMConfig(q=0.1))
        return replace(base, run=run)

    def tokens() -> dict[str, Any]:
        bb = backbone_from_config(replace(base.run.features, image_size=a.volume_size), device=device,
                                  precision=a.volume_backbone_precision)
        reset_peak(device)
        batch, secs = timed(lambda: tokens_from_paths(state["paths"], engine_cfg("codegraph", "fp32"), None, bb,
                                                      progress=False), device)
        state["batch"] = batch
        f = batch.features
        return {"backbone_precision": a.volume_backbone_precision, "backend": getattr(bb, "backend", None),
                "seconds": round(secs, 2), "per_volume_s": round(secs / len(state["paths"]), 2),
                "tokens_per_volume": int(f.layers.shape[2]), "c": int(f.layers.shape[3]),
                "peak_gpu_mb": peak_gpu_mb(device)}

    rec.entry(out["runs"], "tokens", tokens)
    if "batch" not in state:
        return
    for method in a.methods:
        for precision in a.precisions:
            if not precision_available(precision, device):
                continue

            def run(method=method, precision=precision) -> dict[str, Any]:
                cfg = engine_cfg(method, precision)
                reset_peak(device)
                (scores, secs), _ = timed(lambda: score_batch(state["batch"], cfg), device)
                result = result_from_batch(state["batch"], scores, cfg, state["paths"], {"scoring_s": secs})
                metrics, _ = evaluate_run(result, state["masks"], state["groups"])
                return {"method": method, "precision": precision, "seconds": round(secs, 2),
                        "peak_gpu_mb": peak_gpu_mb(device),
                        "patient_auroc": r4(metrics["patient"]["auroc"]), "voxel_auroc": r4(metrics["voxel_auroc"]),
                        "dice_lesioned": r4(metrics["dice_lesioned"])}

            rec.entry(out["runs"], f"{method} {precision}", run)


# -- the command --------------------------------------------------------------------------------


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default=None, choices=("cuda", "auto", "cpu"), help="default cuda; --smoke: cpu")
    ap.add_argument("--data", default=None, help="the shared data root (holds mvtec_ad_bottle/ and mri/)")
    ap.add_argument("--parts", default=",".join(PARTS), help=f"comma list of {', '.join(PARTS)}")
    ap.add_argument("--precisions", default="fp32,bf16,int8", help="engine precisions")
    ap.add_argument("--backbone-precisions", default="fp32,bf16", help="feature extraction precisions")
    ap.add_argument("--methods", default="musc,codegraph")
    ap.add_argument("--size", type=int, default=448, help="bottle image side in px")
    ap.add_argument("--bottle-images", type=int, default=0, help="use this many bottle images (0: all 83)")
    ap.add_argument("--agreement-n", type=int, default=16, help="images of the CPU / device agreement check")
    ap.add_argument("--scale-n", default="1000,10000", help="batch sizes of the scale part")
    ap.add_argument("--scale-size", type=int, default=224, help="image side whose patch grid the scale tokens take")
    ap.add_argument("--scale-c", type=int, default=384, help="channels of the scale tokens")
    ap.add_argument("--references", type=int, default=100, help="fixed K of the scale part")
    ap.add_argument("--volume-size", type=int, default=336, help="cube side D of the volume part")
    ap.add_argument("--volume-subjects", type=int, default=12)
    ap.add_argument("--volume-voxel-mm", type=float, default=1.5)
    ap.add_argument("--volume-backbone-precision", default="fp32")
    ap.add_argument("--max-minutes", type=float, default=8.0, help="skip measurements that would start later")
    ap.add_argument("--out", default=None, help="results file (default benchmarks/results/gpu_<device>.json)")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU: checks that the script runs")
    a = ap.parse_args(argv)
    if a.smoke:  # every part and code path, sizes a 2-core CPU does in well under a minute
        a.device = a.device or "cpu"
        a.size, a.bottle_images, a.agreement_n = 56, 6, 4
        a.scale_n, a.scale_size, a.scale_c, a.references = "8,12", 56, 32, 4
        a.volume_size, a.volume_subjects, a.volume_voxel_mm = 28, 3, 4.0
        a.backbone_precisions = "fp32,bf16"
    a.device = a.device or "cuda"
    for name in ("parts", "precisions", "backbone_precisions", "methods"):
        setattr(a, name, [x for x in getattr(a, name).split(",") if x])
    a.scale_n = [int(x) for x in str(a.scale_n).split(",") if x]
    unknown = set(a.parts) - set(PARTS)
    if unknown:
        ap.error(f"unknown parts {sorted(unknown)}; choose from {', '.join(PARTS)}")
    return a


def main(argv: list[str] | None = None) -> Path:
    a = parse(argv)
    device = resolve_device(a.device)
    data = data_root(a.data)
    if a.out:
        path = Path(a.out)
    elif a.smoke:
        path = Path(tempfile.mkdtemp(prefix="gpu_smoke_")) / f"gpu_smoke_{device_slug(device)}.json"
    else:
        path = RESULTS / f"gpu_{device_slug(device)}.json"
    record: dict[str, Any] = {
        "benchmark": "gpu", "smoke": a.smoke, "status": "running", "command": " ".join(sys.argv),
        "args": {k: v for k, v in vars(a).items()}, "data": str(data), "versions": versions(),
        "notes": [SCALE_NOTE, "times include a device synchronize before and after each measurement; "
                  "the first call of each backbone is a warm-up and is not timed"],
    }
    rec = Recorder(path, record, a.max_minutes, device)
    rec.save()
    t0 = time.perf_counter()
    for part in a.parts:
        if part == "env":
            part_env(rec, a, device)
        elif part == "agreement":
            part_agreement(rec, a, device)
        elif part == "bottle":
            part_bottle(rec, a, device, data)
        elif part == "scale":
            part_scale(rec, a, device)
        elif part == "volumes":
            part_volumes(rec, a, device, data)
    record["status"] = "complete"
    record["total_s"] = round(time.perf_counter() - t0, 1)
    rec.save()
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
