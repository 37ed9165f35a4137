"""Pixel-level metrics: AUROC, AP, F1-max and AUPRO over all pixels of a batch (SPEC section 12).

Evaluation protocol of this project: maps and masks are first brought to
256 x 256 by :func:`prepare_for_evaluation` (bilinear, align_corners=False; masks
re-binarised at 0.5). All four metrics are read off one descending sort of the
flattened scores, so 83 images at 256 x 256 (5.4 M pixels) take 2-3 s on two cores.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ._ranking import (
    as_binary,
    as_scores,
    ap_from_curve,
    auroc_from_curve,
    binary_curve,
    descending_order,
    f1max_from_curve,
)
from .aupro import check_fpr_limit, area_to_limit, pro_curve

_CHUNK = 16  # images resized at once: bounds the float32 working memory of interpolate


def _check_maps_masks(maps: object, masks: object) -> tuple[np.ndarray, np.ndarray]:
    """Validate and return ((N,H,W) scores, (N,H,W) bool masks); a single (H,W) pair is promoted to N=1."""
    s = as_scores(maps, "maps")
    m = as_binary(masks, "masks")
    if s.ndim == 2:
        s = s[None]
    if m.ndim == 2:
        m = m[None]
    if s.ndim != 3 or s.shape != m.shape:
        raise ValueError(f"maps and masks must both be (N,H,W), got {np.shape(maps)} and {np.shape(masks)}")
    return s, m


def _resize(stack: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of an (N,H,W) float32 stack, chunked over N."""
    out = np.empty((stack.shape[0], *size), dtype=np.float32)
    for start in range(0, stack.shape[0], _CHUNK):
        chunk = torch.from_numpy(np.ascontiguousarray(stack[start : start + _CHUNK], dtype=np.float32))
        resized = F.interpolate(chunk[:, None], size=size, mode="bilinear", align_corners=False)
        out[start : start + _CHUNK] = resized[:, 0].numpy()
    return out


def prepare_for_evaluation(
    maps: object, masks: object, size: int | tuple[int, int] = 256
) -> tuple[np.ndarray, np.ndarray]:
    """Resize maps and masks to ``size`` (the project's 256 x 256 protocol): ((N,S,S) float32, (N,S,S) bool).

    Maps: bilinear, align_corners=False. Masks: the same bilinear resize, then
    ``> 0.5``, so a mask pixel is anomalous when more than half of it was.
    Metrics at a common resolution make runs at different input sizes comparable.
    """
    s, m = _check_maps_masks(maps, masks)
    hw = (int(size), int(size)) if np.isscalar(size) else (int(size[0]), int(size[1]))
    if min(hw) < 1:
        raise ValueError(f"size must be positive, got {size!r}")
    maps_out = _resize(s, hw)
    masks_out = _resize(m.astype(np.float32), hw) > 0.5
    return maps_out, masks_out


def pixel_metrics(maps: object, masks: object, fpr_limit: float = 0.3) -> dict[str, float | None]:
    """{"auroc", "ap", "f1_max", "aupro"} over all pixels, fractions in [0, 1].

    maps: (N,H,W) scores (call :func:`prepare_for_evaluation` first for the
    256 x 256 protocol); masks: (N,H,W) bool. Undefined metrics are None: AUROC
    without anomalous or without normal pixels; AP, F1-max and AUPRO without any
    anomalous pixel; AUPRO also when no pixel is normal.
    """
    limit = check_fpr_limit(fpr_limit)
    s, m = _check_maps_masks(maps, masks)
    flat = s.ravel()
    order, ends = descending_order(flat)
    curve = binary_curve(flat, m.ravel(), order, ends)
    f1, _ = f1max_from_curve(curve)
    pro = pro_curve(s, m, order, ends)
    return {
        "auroc": auroc_from_curve(curve),
        "ap": ap_from_curve(curve),
        "f1_max": f1,
        "aupro": None if pro is None else area_to_limit(*pro, limit),
    }
