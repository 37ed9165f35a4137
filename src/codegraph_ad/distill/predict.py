"""``codegraph-ad predict``: score images one at a time with a trained model file.

Outputs mirror ``detect`` (maps/<name>.npy at input resolution, overlays/<name>.png,
scores.csv/json, patch_scores.npy, run.json last), so a prediction folder can be read by
``pseudomask`` like any run. Scores are probabilities, so overlays use the fixed scale [0, 1]
instead of a batch-relative one: each image stands alone.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from tqdm.auto import tqdm

from codegraph_ad.distill.detector import Detector, load_detector
from codegraph_ad.errors import InputError
from codegraph_ad.io.batch import unique_names
from codegraph_ad.io.images import load_image_rgb, resolve_inputs
from codegraph_ad.io.run_folder import PATCH_SCORES, Manifest, RunWriter, ScoreRow, output_folder, upsample_map

PROB_SCALE = (0.0, 1.0)


@dataclass
class PredictResult:
    """Per image: name, path, score (max of the map), input size; per-image times in seconds."""

    names: list[str]
    paths: list[Path]
    scores: np.ndarray
    patch_scores: torch.Tensor
    grid: tuple[int, int]
    original_sizes: list[tuple[int, int]]
    times: dict[str, list[float]]
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    def mean_times(self) -> dict[str, float]:
        return {k: float(np.mean(v)) if v else 0.0 for k, v in self.times.items()}


def predict_images(
    model: str | Path | Detector,
    inputs: str | Path | Sequence[str | Path],
    out_dir: str | Path | None,
    overwrite: bool = False,
    on_error: Literal["stop", "skip"] = "stop",
    overlays: bool = True,
    progress: bool = True,
    threads: int | None = None,
) -> PredictResult:
    """Score each image alone with ``model`` (a file or a loaded detector); write outputs if ``out_dir``."""
    detector = load_detector(model, threads) if isinstance(model, (str, Path)) else model
    paths, root = resolve_inputs(inputs)
    # An occupied folder is refused before any work; its earlier outputs are replaced all-or-nothing.
    with output_folder(out_dir, overwrite) as out:
        with RunWriter.replace(out) if out is not None else nullcontext(None) as writer:
            result = _predict_all(detector, paths, unique_names(paths, root), writer, on_error, overlays, progress)
            if writer is not None:
                _write_tables(writer, result, detector, model)
    return result


def _predict_all(detector: Detector, paths: list[Path], names_all: list[str], writer: RunWriter | None,
                 on_error: Literal["stop", "skip"], overlays: bool, progress: bool) -> PredictResult:
    """Score the images one by one, writing each one's map (and overlay) as it comes."""
    kept: list[Path] = []
    names: list[str] = []
    sizes: list[tuple[int, int]] = []
    grids: list[torch.Tensor] = []
    skipped: list[tuple[Path, str]] = []
    times: dict[str, list[float]] = {"read_s": [], "backbone_s": [], "head_s": [], "total_s": [], "write_s": []}
    for path, name in tqdm(list(zip(paths, names_all)), desc="predict", unit="img", disable=not progress, leave=False):
        t0 = time.perf_counter()
        try:
            rgb = load_image_rgb(path)
        except InputError as exc:
            if on_error == "stop":
                raise
            skipped.append((path, str(exc)))
            continue
        t1 = time.perf_counter()
        pred = detector.predict(rgb)
        t2 = time.perf_counter()
        times["read_s"].append(t1 - t0)
        times["backbone_s"].append(pred.backbone_s)
        times["head_s"].append(pred.head_s)
        times["total_s"].append(t2 - t0)
        kept.append(path)
        names.append(name)
        sizes.append(rgb.shape[:2])
        grids.append(pred.probs.reshape(-1).float())
        if writer is not None:
            _write_image(writer, name, rgb, pred.probs, overlays)
            times["write_s"].append(time.perf_counter() - t2)
    if skipped:
        warnings.warn(f"skipped {len(skipped)} unreadable file(s): " + "; ".join(f"{p}: {w}" for p, w in skipped),
                      stacklevel=2)
    if not kept:
        raise InputError("none of the images could be read")
    patch = torch.stack(grids)
    scores = patch.max(dim=1).values.double().numpy()
    return PredictResult(names, kept, scores, patch, tuple(detector.grid), sizes, times, skipped)


def _write_image(writer: RunWriter, name: str, rgb: np.ndarray, probs: torch.Tensor, overlays: bool) -> None:
    from codegraph_ad.report.overlay import fit_overlay, overlay

    amap = upsample_map(probs.reshape(-1), tuple(probs.shape), rgb.shape[:2])
    writer.map(name, amap)
    if overlays:
        writer.overlay(name, fit_overlay(overlay(rgb, amap, PROB_SCALE)))


def _write_tables(writer: RunWriter, result: PredictResult, detector: Detector, model: Any) -> None:
    from codegraph_ad.api import versions

    rows = [ScoreRow(n, str(p), float(s)) for n, p, s in zip(result.names, result.paths, result.scores)]
    timings = {f"mean_{k}": v for k, v in result.mean_times().items()}
    config = {"model": str(model) if isinstance(model, (str, Path)) else None, "kind": detector.kind,
              "model_config": detector.config}
    meta = {"config": config, "versions": versions(), "timings": timings,
            "skipped": [{"path": str(p), "reason": w} for p, w in result.skipped]}
    writer.scores(rows, meta)
    writer.array(PATCH_SCORES, result.patch_scores.numpy().astype(np.float32))
    writer.finish(Manifest(result.names, [str(p) for p in result.paths], tuple(result.grid), config, versions(),
                           timings, original_sizes=[tuple(s) for s in result.original_sizes],
                           backbone=detector.used_backbone()))
