"""Metrics of a scored batch against its labels, under the project's evaluation protocol.

Protocol (docs/benchmarks.md): patch scores are upsampled bilinearly to the model input
size, then resized to ``eval_size`` (256); ground-truth masks are resized bilinearly to
``eval_size`` and binarised at 0.5.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from codegraph_ad.datasets.base import LabelledSample
from codegraph_ad.io.images import load_mask


def eval_mask(sample: LabelledSample, shape: tuple[int, int], size: int) -> np.ndarray:
    """Ground truth at the evaluation size: union of masks, resized bilinearly, cut at 0.5."""
    if not sample.mask_paths:
        return np.zeros((size, size), dtype=bool)
    full = np.zeros(shape, dtype=bool)
    for mp in sample.mask_paths:
        full |= load_mask(mp, shape)
    t = torch.from_numpy(full.astype(np.float32))[None, None]
    return (F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)[0, 0] >= 0.5).numpy()


def eval_masks(samples: Sequence[LabelledSample], shapes: Sequence[tuple[int, int]], size: int) -> np.ndarray:
    return np.stack([eval_mask(s, tuple(hw), size) for s, hw in zip(samples, shapes)])


def eval_maps(patch_scores: torch.Tensor, grid: tuple[int, int], image_size: int, size: int) -> np.ndarray:
    """``(N, M)`` patch scores -> ``(N, size, size)`` maps (via the model input size, as MuSc)."""
    h, w = grid
    maps = F.interpolate(patch_scores.float().view(-1, 1, h, w), size=(image_size, image_size), mode="bilinear",
                         align_corners=True)
    return F.interpolate(maps, size=(size, size), mode="bilinear", align_corners=False)[:, 0].numpy()


def batch_metrics(image_scores: np.ndarray, maps: np.ndarray, masks: np.ndarray, labels: np.ndarray,
                  index: Sequence[int] | None = None) -> dict[str, Any]:
    """Image and pixel metrics, on all images or on the images in ``index``."""
    from codegraph_ad.metrics import image_metrics, pixel_metrics

    idx = np.arange(len(labels)) if index is None else np.asarray(index)
    return {
        "image": image_metrics(np.asarray(image_scores)[idx], np.asarray(labels)[idx]),
        "pixel": pixel_metrics(maps[idx], masks[idx]),
        "n_images": int(len(idx)),
        "n_anomalous": int(np.asarray(labels)[idx].sum()),
    }


def patch_labels(masks: np.ndarray, grid: tuple[int, int], min_fraction: float = 0.5) -> np.ndarray:
    """``(N, M)`` bool: a patch is anomalous when at least ``min_fraction`` of its pixels are.

    Half the cell (as in the analysis module) keeps border patches that are mostly normal
    out of the anomalous set, so they do not count as "consistent" anomalies.
    """
    t = torch.from_numpy(masks.astype(np.float32))[:, None]
    pooled = F.adaptive_avg_pool2d(t, grid)[:, 0] >= min_fraction
    return pooled.reshape(masks.shape[0], -1).numpy()


def consistent_patches(musc_patch_scores: np.ndarray, anomalous_patches: np.ndarray, labels: np.ndarray,
                       percentile: float = 80.0) -> np.ndarray:
    """SPEC section 12: anomalous patches whose MuSc score is below the 80th percentile of
    normal patch scores (patches of normal images) are "consistent" anomalies."""
    normal = musc_patch_scores[np.asarray(labels) == 0].ravel()
    if normal.size == 0:
        normal = musc_patch_scores[~anomalous_patches]
    cut = np.percentile(normal, percentile)
    return anomalous_patches & (musc_patch_scores < cut)


def exclusion_stats(excluded: np.ndarray | None, consistent: np.ndarray | None) -> dict[str, Any]:
    """Exclusion rate (share of all patches) and capture rate (share of consistent patches excluded)."""
    if excluded is None:
        return {"exclusion_rate": 0.0, "capture_rate": None, "n_consistent": None}
    out: dict[str, Any] = {"exclusion_rate": float(np.mean(excluded))}
    if consistent is not None:
        n = int(consistent.sum())
        out["n_consistent"] = n
        out["capture_rate"] = float((excluded & consistent).sum() / n) if n else None
    return out
