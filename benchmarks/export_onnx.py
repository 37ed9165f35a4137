"""Per-image CPU time of the distilled detector: PyTorch vs the exported ONNX graph, on bottle.

    python benchmarks/export_onnx.py [--size 448] [--threads 1] [--limit 41] [--model head.pt]

1. A patch head at ``--size`` (default settings: linear, r = 1, 3) trained on the real masks of
   the first half of a seeded, stratified 50/50 split of bottle's test images (or ``--model``).
2. ``export_onnx``: one ONNX graph, backbone + LNAMD + head.
3. The second half's images, decoded once, scored one at a time (preprocessing included,
   decoding excluded) by
   - ``pytorch``: ``DistilledDetector.predict`` as ``codegraph-ad predict`` runs it (the
     package's default backbone runs in ONNX Runtime; LNAMD and the head in PyTorch);
   - ``pytorch_port``: the same detector on the backbone's PyTorch port
     (``dinov2_vits14_imgfocus_torch``), i.e. everything in PyTorch;
   - ``onnx``: ``onnx_runtime.OnnxDetector.predict`` on the exported file (no PyTorch).
   Wall time and process CPU time (``time.process_time``: on a shared machine the CPU
   time this process used is steadier than the wall clock). One warm-up image each; the variants take turns image by image, so a load change on the
   shared machine hits all three alike. Also the largest |difference| of their maps.
Writes benchmarks/results/export_onnx.json (``--tag`` adds a suffix).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import BOTTLE, machine_info, peak_rss_mb, write_result
from distill_common import stratified_halves

from codegraph_ad.api import versions
from codegraph_ad.backbones.embedded import EmbeddedViTS14
from codegraph_ad.config import FeatureConfig
from codegraph_ad.datasets.mvtec import read_mvtec_category
from codegraph_ad.distill.config import DistillConfig
from codegraph_ad.distill.detector import DistilledDetector, load_detector
from codegraph_ad.distill.distill_head import train_patch_head
from codegraph_ad.distill.export import export_onnx
from codegraph_ad.distill.model_file import load_model
from codegraph_ad.distill.onnx_runtime import OnnxDetector
from codegraph_ad.io.atomic import write_json
from codegraph_ad.io.images import load_image_rgb


def train_head(samples, size: int, out: Path, threads: int) -> tuple[Path, float]:
    """A default head on the real masks of ``samples`` (a minimal run folder lists the images)."""
    run = out.parent / "run"
    write_json(run / "run.json", {"names": [f"{s.defect}__{s.image_path.stem}" for s in samples],
                                  "paths": [str(s.image_path) for s in samples],
                                  "original_sizes": [list(load_image_rgb(s.image_path).shape[:2]) for s in samples],
                                  "grid": [size // 14] * 2, "config": {"features": {"image_size": size}}})
    t0 = time.perf_counter()
    train_patch_head(run, out, DistillConfig(features=FeatureConfig(image_size=size)), masks=BOTTLE,
                     progress=False, threads=threads)
    return out, time.perf_counter() - t0


def summary(times: list[float]) -> dict[str, float]:
    return {"median_s": round(statistics.median(times), 4), "mean_s": round(statistics.fmean(times), 4),
            "min_s": round(min(times), 4), "max_s": round(max(times), 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=448)
    ap.add_argument("--threads", type=int, default=1, help="CPU threads of every runtime (1: stable on a shared machine)")
    ap.add_argument("--limit", type=int, default=None, help="score only the first N images of the second half")
    ap.add_argument("--model", type=Path, default=None, help="an existing patch-head model file (skips training)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tag", default="")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    first, second = stratified_halves(read_mvtec_category(BOTTLE), a.seed)
    second = second[: a.limit] if a.limit else second
    with tempfile.TemporaryDirectory() as tmp:
        train_s = None
        model = a.model
        if model is None:
            model, train_s = train_head(first, a.size, Path(tmp) / "head" / "head.pt", a.threads)
        t0 = time.perf_counter()
        res = export_onnx(model, Path(tmp) / "head.onnx", threads=a.threads)
        export_s = time.perf_counter() - t0
        detectors = {
            "pytorch": load_detector(model, a.threads),
            "pytorch_port": DistilledDetector.from_model_file(
                load_model(model),
                backbone=EmbeddedViTS14(a.size, layers=FeatureConfig().layers, threads=a.threads, backend="torch")),
            "onnx": OnnxDetector(res.path, a.threads),
        }

        def run(name: str, rgb: np.ndarray) -> np.ndarray:
            out = detectors[name].predict(rgb)
            return out if isinstance(out, np.ndarray) else out.probs.numpy()

        rgbs = [load_image_rgb(s.image_path) for s in second]
        for name in detectors:  # warm-up: session start, first-call allocations
            run(name, rgbs[0])
        times: dict[str, list[float]] = {k: [] for k in detectors}
        cpu: dict[str, list[float]] = {k: [] for k in detectors}
        diffs: dict[str, float] = {"pytorch": 0.0, "pytorch_port": 0.0}
        for rgb in rgbs:
            maps = {}
            for name in detectors:
                t0, c0 = time.perf_counter(), time.process_time()
                maps[name] = run(name, rgb)
                times[name].append(time.perf_counter() - t0)
                cpu[name].append(time.process_time() - c0)
            for ref in diffs:
                diffs[ref] = max(diffs[ref], float(np.abs(maps["onnx"] - maps[ref]).max()))
        out = {
            "what": "per-image CPU time of the distilled bottle detector, PyTorch vs exported ONNX",
            "image_size": a.size, "grid": list(res.grid), "threads": a.threads, "n_images": len(rgbs),
            "split_seed": a.seed, "train_s": None if train_s is None else round(train_s, 1),
            "export_s": round(export_s, 1), "onnx_file_mib": round(res.size_bytes / 2**20, 1),
            "per_image": {k: summary(v) for k, v in times.items()},
            "per_image_process_cpu": {k: summary(v) for k, v in cpu.items()},
            "speedup_onnx_vs_pytorch": round(statistics.median(times["pytorch"]) / statistics.median(times["onnx"]), 2),
            "speedup_onnx_vs_pytorch_port": round(statistics.median(times["pytorch_port"])
                                                  / statistics.median(times["onnx"]), 2),
            "cpu_speedup_onnx_vs_pytorch": round(statistics.median(cpu["pytorch"]) / statistics.median(cpu["onnx"]), 2),
            "max_abs_diff_onnx_vs": {k: float(f"{v:.3g}") for k, v in diffs.items()},
            "export_check_max_abs_diff": res.max_abs_diff,
            "load_average_at_end": list(os.getloadavg()),
            "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "machine": machine_info(), "versions": versions(), "peak_rss_mb": round(peak_rss_mb(), 1),
            "model_config": {k: v for k, v in load_model(model).config.items() if k in ("features", "head", "train")},
        }
    print({k: out[k] for k in ("per_image", "per_image_process_cpu", "speedup_onnx_vs_pytorch",
                                "max_abs_diff_onnx_vs")})
    write_result("export_onnx", a.tag, out)


if __name__ == "__main__":
    main()
