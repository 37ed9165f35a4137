"""Which patches of a finished run are normal, and which are anomalous, for the analyses.

Labels come from the rows of ``scores.json`` (an ``evaluate`` run writes ``label`` and
``defect``); mask files from a row's ``mask_paths`` when present, else from the MVTec AD
layout beside the image (``<category>/test/<defect>/<stem>.png`` ->
``<category>/ground_truth/<defect>/<stem>_mask.png``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from codegraph_ad.io.images import load_mask


@dataclass(frozen=True)
class PatchTruth:
    """Per-patch ground truth of a batch.

    labels: ``(N,)`` int image labels (0 normal, 1 anomalous) or None when unknown.
    anomalous: ``(N, M)`` bool anomalous patches, or None when no masks were found.
    """

    labels: np.ndarray | None
    anomalous: np.ndarray | None


def mvtec_mask_path(image_path: Path) -> Path | None:
    """The MVTec AD mask of an anomalous test image, None outside that layout or for 'good'."""
    defect_dir = image_path.parent
    if defect_dir.parent.name != "test" or defect_dir.name == "good":
        return None
    mask = defect_dir.parent.parent / "ground_truth" / defect_dir.name / f"{image_path.stem}_mask.png"
    return mask if mask.exists() else None


def mask_files(row: dict[str, Any], image_path: Path) -> list[Path]:
    """Mask files of one image: the row's ``mask_paths`` if it has them, else MVTec layout."""
    if "mask_paths" in row and row["mask_paths"] is not None:
        return [Path(p) for p in row["mask_paths"]]
    found = mvtec_mask_path(image_path)
    return [found] if found is not None else []


def image_labels(rows: list[dict[str, Any]], paths: list[Path]) -> np.ndarray | None:
    """``(N,)`` labels from the rows' ``label``, else from an MVTec AD layout (``good`` = 0)."""
    if rows and all("label" in r for r in rows):
        return np.array([int(r["label"]) for r in rows], dtype=np.int64)
    if paths and all(p.parent.parent.name == "test" for p in paths):
        return np.array([int(p.parent.name != "good") for p in paths], dtype=np.int64)
    return None


def mask_to_grid(mask: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """Share of each patch-grid cell covered by ``mask: (H, W)`` bool, ``(h * w,)`` float.

    Images are squashed to a square before the backbone, so the cells tile the whole
    original image: adaptive average pooling gives each cell's covered share.
    """
    t = torch.from_numpy(np.asarray(mask, dtype=np.float32))[None, None]
    return F.adaptive_avg_pool2d(t, grid)[0, 0].reshape(-1).numpy()


def patch_truth(
    rows: list[dict[str, Any]],
    paths: list[Path],
    sizes: list[tuple[int, int]],
    grid: tuple[int, int],
    mask_fraction: float,
) -> PatchTruth:
    """Image labels and anomalous patches of a run, as far as the run folder tells them."""
    if len(rows) != len(paths):
        raise ValueError(f"scores.json has {len(rows)} rows for {len(paths)} images in run.json")
    labels = image_labels(rows, paths)
    m = grid[0] * grid[1]
    anomalous = np.zeros((len(paths), m), dtype=bool)
    found_any = False
    for i, (row, path, size) in enumerate(zip(rows, paths, sizes)):
        files = mask_files(row, path)
        if not files:
            continue
        found_any = True
        full = np.zeros(tuple(size), dtype=bool)
        for f in files:
            full |= load_mask(f, tuple(size))
        anomalous[i] = mask_to_grid(full, grid) >= mask_fraction
    return PatchTruth(labels, anomalous if found_any else None)
