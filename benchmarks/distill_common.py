"""Helpers shared by the distillation benchmarks: stratified split, ground truth, mask quality."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from codegraph_ad.datasets.base import LabelledSample
from codegraph_ad.io.images import load_mask


def stratified_halves(samples: list[LabelledSample], seed: int = 0) -> tuple[list[LabelledSample], list[LabelledSample]]:
    """Seeded 50/50 split within each defect type (an odd count gives the extra image to the first half)."""
    rng = np.random.default_rng(seed)
    by_defect: dict[str, list[LabelledSample]] = defaultdict(list)
    for s in samples:
        by_defect[s.defect].append(s)
    first: list[LabelledSample] = []
    second: list[LabelledSample] = []
    for defect in sorted(by_defect):
        group = by_defect[defect]
        order = rng.permutation(len(group))
        cut = (len(group) + 1) // 2
        first += [group[i] for i in order[:cut]]
        second += [group[i] for i in order[cut:]]
    return first, second


def gt_mask(sample: LabelledSample, shape: tuple[int, int]) -> np.ndarray:
    """Union of the sample's masks at ``shape`` (all False for a normal image)."""
    m = np.zeros(shape, dtype=bool)
    for p in sample.mask_paths:
        m |= load_mask(p, shape)
    return m


def resize_stack(stack: np.ndarray, size: int, binary: bool) -> np.ndarray:
    """(N,H,W) -> (N,size,size) bilinear (masks re-cut at 0.5), the project's 256 px protocol."""
    t = torch.from_numpy(np.ascontiguousarray(stack, dtype=np.float32))[:, None]
    out = torch.nn.functional.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)[:, 0].numpy()
    return out > 0.5 if binary else out


def mask_quality(pred: np.ndarray, gt: np.ndarray, labels: np.ndarray) -> dict[str, float | None]:
    """Binary masks vs ground truth, pooled over all pixels, plus image-level agreement.

    pred, gt: (N,H,W) bool; labels: (N,) 0/1. An image counts as flagged when its mask has
    any pixel set. Percentages, rounded to 2 decimals; None where undefined.
    """
    tp = float(np.logical_and(pred, gt).sum())
    fp = float(np.logical_and(pred, ~gt).sum())
    fn = float(np.logical_and(~pred, gt).sum())

    def ratio(a: float, b: float) -> float | None:
        return None if b == 0 else round(100.0 * a / b, 2)

    per_iou = []
    for p, g, lab in zip(pred, gt, labels):
        if lab:
            union = np.logical_or(p, g).sum()
            per_iou.append(np.logical_and(p, g).sum() / union if union else 1.0)
    flagged = pred.reshape(len(pred), -1).any(axis=1)
    labels = labels.astype(bool)
    good_area = pred[~labels].mean() if (~labels).any() else None
    return {
        "pixel_f1": ratio(2 * tp, 2 * tp + fp + fn),
        "pixel_iou": ratio(tp, tp + fp + fn),
        "pixel_precision": ratio(tp, tp + fp),
        "pixel_recall": ratio(tp, tp + fn),
        "mean_iou_anomalous_images": None if not per_iou else round(100.0 * float(np.mean(per_iou)), 2),
        "image_agreement": ratio(float((flagged == labels).sum()), float(len(labels))),
        "image_precision": ratio(float((flagged & labels).sum()), float(flagged.sum())),
        "image_recall": ratio(float((flagged & labels).sum()), float(labels.sum())),
        "good_images_flagged": ratio(float((flagged & ~labels).sum()), float((~labels).sum())),
        "good_image_positive_area": None if good_area is None else round(100.0 * float(good_area), 3),
    }


def result_path(results: Path, name: str) -> Path:
    results.mkdir(parents=True, exist_ok=True)
    return results / name
