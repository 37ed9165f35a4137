"""Metrics of a scored batch against its labels, under the project's evaluation protocol.

Protocol (docs/benchmarks.md): patch scores are upsampled bilinearly to the model input
size, then resized to ``eval_size`` (256); ground-truth masks are resized bilinearly to
``eval_size`` and binarised at 0.5.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from codegraph_ad.datasets.base import LabelledSample
from codegraph_ad.io.masks import union_mask


def eval_mask(sample: LabelledSample, shape: tuple[int, int], size: int) -> np.ndarray:
    """Ground truth at the evaluation size: union of masks, resized bilinearly, cut at 0.5."""
    return union_mask(sample.mask_paths, shape, (size, size), resample="bilinear")


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


@dataclass(frozen=True)
class ConsistencyConfig:
    """The consistent-anomaly definition (SPEC section 12, the thesis's), used by every report.

    A patch is anomalous when at least ``anomalous_fraction`` of its pixels are in the mask
    (the thesis does not say how masks meet the patch grid; half keeps mostly-normal border
    cells out). It is *consistent* when its MuSc score (MuSc at its default q) is below the
    ``musc_percentile`` of the MuSc scores of the patches of normal images: a defect that
    plain MuSc scores as normal. The capture rate is the share of them CoDeGraph excluded.
    """

    musc_percentile: float = 80.0
    anomalous_fraction: float = 0.5


def consistency_rates(musc_scores: np.ndarray | None, excluded: np.ndarray | None, fractions: np.ndarray,
                      labels: np.ndarray | None = None,
                      config: ConsistencyConfig = ConsistencyConfig(),
                      images: Sequence[int] | None = None) -> dict[str, float | int | None]:
    """Exclusion rate, capture rate and the make-up of the excluded patches (one definition).

    musc_scores: ``(N, M)`` MuSc patch scores of the batch (None: no capture rate).
    excluded: ``(N, M)`` bool, patches CoDeGraph removed from the references (None: MuSc).
    fractions: ``(N, M)`` from :func:`codegraph_ad.io.masks.grid_shares` or ``suite.consistency.patch_mask_fractions``.
    labels: ``(N,)`` image labels; the normal population is the patches of label-0 images
    (the thesis). Without labels, or without a normal image, it falls back to the patches
    that are not anomalous. Rates are fractions in [0, 1]; None where undefined.
    images: count only these images' anomalous patches (a repeated group's), so that the
    other anomalous images' weak defects, which no repeated-defect method is meant to take
    out, do not decide whether the group was captured. The counts of anomalous and consistent
    patches follow it; the threshold, the exclusion rate and the make-up of the excluded
    patches stay those of the whole batch.
    """
    anomalous = np.asarray(fractions) >= config.anomalous_fraction
    normal = ~anomalous
    if labels is not None and (np.asarray(labels) == 0).any():
        normal = np.zeros_like(anomalous)
        normal[np.asarray(labels) == 0] = True
    rows = np.arange(anomalous.shape[0])
    counted = np.ones_like(rows, dtype=bool) if images is None else np.isin(rows, np.asarray(images, dtype=int))
    out: dict[str, float | int | None] = {
        "exclusion_rate": None if excluded is None else float(np.mean(excluded)),
        "capture_rate": None,
        "musc_threshold": None,
        "n_patches": int(anomalous.size),
        "n_anomalous_patches": int(anomalous[counted].sum()),
        "n_consistent_patches": None,
        "excluded_normal_share": None,
        "excluded_consistent_share": None,
        "excluded_inconsistent_share": None,
    }
    if musc_scores is None or not normal.any():
        return out
    musc_scores = np.asarray(musc_scores)
    threshold = float(np.percentile(musc_scores[normal], config.musc_percentile))
    consistent = anomalous & (musc_scores < threshold)
    all_consistent = consistent
    consistent = consistent & counted[:, None]
    out["musc_threshold"] = threshold
    out["n_consistent_patches"] = int(consistent.sum())
    if excluded is None:
        return out
    excluded = np.asarray(excluded, dtype=bool)
    if consistent.any():
        out["capture_rate"] = float(excluded[consistent].mean())
    n_excl = int(excluded.sum())
    if n_excl:
        out["excluded_normal_share"] = float((excluded & ~anomalous).sum() / n_excl)
        out["excluded_consistent_share"] = float((excluded & all_consistent).sum() / n_excl)
        out["excluded_inconsistent_share"] = float((excluded & anomalous & ~all_consistent).sum() / n_excl)
    return out
