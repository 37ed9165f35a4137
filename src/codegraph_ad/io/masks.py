"""Ground-truth masks: which files belong to an image, their union, and their patch-grid shares.

These three rules were written once per reader, evaluator and report; they live here, at the
bottom of the package (rank 1), so that every area computes the same masks the same way.

* Files: a run row's ``mask_paths`` when it has them, else the MVTec AD layout beside the
  image (``<category>/test/<defect>/<stem>.png`` -> ``<category>/ground_truth/<defect>/
  <stem>_mask.png``; ``good`` images have none).
* Union: every file is read with :func:`~codegraph_ad.io.images.load_mask` at the image's
  size (nearest resize of a mismatched file) and OR-ed; the union may then be resized to a
  view or evaluation size, nearest (pictures) or bilinear cut at 0.5 (the metric protocol).
* Grid shares: images are squashed to a square before the backbone, so patch ``(i, j)``
  covers cell ``(i, j)`` of an even partition of the whole original image; adaptive average
  pooling of the full-size mask gives each cell's covered share.
* Writing: a bool mask is stored as MVTec stores its ground truth, an 8-bit PNG of 0 and 255
  (``mask_png``), so the masks a run or ``pseudomask`` writes read back with ``load_mask``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from codegraph_ad.io.images import load_mask

GROUND_TRUTH = "ground_truth"
GOOD = "good"
MASK_SUFFIX = "_mask.png"

Resample = Literal["nearest", "bilinear"]


def mvtec_mask_file(category: str | os.PathLike[str], defect: str, stem: str) -> Path:
    """``<category>/ground_truth/<defect>/<stem>_mask.png``, whether or not it exists (readers
    test for it, writers create it)."""
    return Path(category) / GROUND_TRUTH / defect / f"{stem}{MASK_SUFFIX}"


def mvtec_mask_path(image_path: str | os.PathLike[str]) -> Path | None:
    """The MVTec AD mask of a test image, None outside that layout, for 'good', or when missing."""
    image_path = Path(image_path)
    defect_dir = image_path.parent
    if defect_dir.parent.name != "test" or defect_dir.name == GOOD:
        return None
    mask = mvtec_mask_file(defect_dir.parent.parent, defect_dir.name, image_path.stem)
    return mask if mask.exists() else None


def mask_files(row: Mapping[str, Any], image_path: str | os.PathLike[str]) -> list[Path]:
    """Mask files of one image: the row's ``mask_paths`` if it has them (an empty list means
    "no mask", not "look elsewhere"), else the MVTec AD layout."""
    if row.get("mask_paths") is not None:
        return [Path(p) for p in row["mask_paths"]]
    found = mvtec_mask_path(image_path)
    return [found] if found is not None else []


def union_mask(
    paths: Iterable[str | os.PathLike[str]],
    shape: tuple[int, int],
    size: tuple[int, int] | None = None,
    resample: Resample = "nearest",
) -> np.ndarray:
    """Union of the mask files ``paths`` as a bool ``(H, W)`` array; no files: all False.

    shape: ``(H, W)`` of the image the masks belong to; each file is read at that size.
    size: ``(h, w)`` to resize the union to, or None to keep ``shape``.
    resample: how to reach ``size``; the two rules differ on purpose:
        ``"nearest"``: PIL nearest neighbour (report pictures: a drawn outline stays sharp);
        ``"bilinear"``: torch bilinear (``align_corners=False``) then ``>= 0.5``, the
        evaluation protocol (docs/benchmarks.md): a pixel is anomalous when at least half
        of it was.
    """
    if resample not in ("nearest", "bilinear"):
        raise ValueError(f"resample must be 'nearest' or 'bilinear', got {resample!r}")
    shape = (int(shape[0]), int(shape[1]))
    paths = list(paths)
    if not paths:
        return np.zeros(shape if size is None else (int(size[0]), int(size[1])), dtype=bool)
    full = np.zeros(shape, dtype=bool)
    for path in paths:
        full |= load_mask(path, shape)
    if size is None:
        return full
    h, w = int(size[0]), int(size[1])
    if resample == "nearest":
        return np.asarray(Image.fromarray(full.astype(np.uint8) * 255).resize((w, h), Image.NEAREST)) > 127
    t = torch.from_numpy(full.astype(np.float32))[None, None]
    return (F.interpolate(t, size=(h, w), mode="bilinear", align_corners=False)[0, 0] >= 0.5).numpy()


def grid_shares(masks: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """Share of each patch-grid cell covered by the mask, float32 in [0, 1].

    masks: ``(H, W)`` or a stack ``(N, H, W)`` (bool or numbers); the result is ``(h * w,)``
    or ``(N, h * w)``, cells in row-major order (the backbone's patch order).
    """
    arr = np.asarray(masks, dtype=np.float32)
    if arr.ndim not in (2, 3):
        raise ValueError(f"masks must be (H, W) or (N, H, W), got shape {arr.shape}")
    t = torch.from_numpy(arr.reshape(-1, *arr.shape[-2:]))[:, None]
    out = F.adaptive_avg_pool2d(t, (int(grid[0]), int(grid[1])))[:, 0].reshape(t.shape[0], -1).numpy()
    return out[0] if arr.ndim == 2 else out


def mask_png(mask: np.ndarray) -> Image.Image:
    """Bool ``(H, W)`` -> 8-bit image of 0 (normal) and 255 (anomalous), MVTec's encoding."""
    return Image.fromarray(np.where(np.asarray(mask, dtype=bool), 255, 0).astype(np.uint8))
