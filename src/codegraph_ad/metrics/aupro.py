"""Exact AUPRO (per-region overlap) integrated to an FPR limit (SPEC section 12, REFERENCE "Exact AUPRO").

Every distinct score is a threshold, so the curve is exact rather than sampled
on a grid of 200 thresholds as in the MuSc reference code. Regions are the
8-connected components of each image's mask, so diagonally touching pixels form
one defect, as in the MVTec AD definition.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ._ranking import as_binary, as_scores, descending_order, trapezoid

# Connect the 8 neighbours within an image, never across images of the stack.
_IN_PLANE_8 = np.zeros((3, 3, 3), dtype=bool)
_IN_PLANE_8[1] = True


def region_weights(masks: np.ndarray) -> tuple[np.ndarray, int]:
    """((N,H,W) weight 1/area of its region per foreground pixel, 0 elsewhere; number of regions)."""
    labelled, n_regions = ndimage.label(masks, structure=_IN_PLANE_8)
    areas = np.bincount(labelled.ravel())
    inv_area = np.zeros(areas.shape, dtype=np.float64)
    inv_area[1:] = 1.0 / areas[1:]
    return inv_area[labelled], int(n_regions)


def pro_curve(
    scores: np.ndarray, masks: np.ndarray, order: np.ndarray | None = None, ends: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray] | None:
    """(fpr, pro) at each distinct threshold, descending thresholds, with (0, 0) prepended.

    scores, masks: (N,H,W), already validated.
    None when there is no region (PRO undefined) or no background pixel (FPR undefined).
    ``order``/``ends`` may be passed in to reuse a sort already done by the caller.
    """
    weights, n_regions = region_weights(masks)
    n_bg = int(masks.size - np.count_nonzero(masks))
    if n_regions == 0 or n_bg == 0:
        return None
    flat_scores = scores.ravel()
    if order is None or ends is None:
        order, ends = descending_order(flat_scores)
    fp = np.cumsum(~masks.ravel()[order], dtype=np.int64)[ends]
    pro = np.cumsum(weights.ravel()[order])[ends]
    fpr = np.concatenate(([0.0], fp / n_bg))
    pro = np.concatenate(([0.0], pro / n_regions))
    return fpr, pro


def area_to_limit(fpr: np.ndarray, pro: np.ndarray, fpr_limit: float) -> float:
    """Trapezoid area of the curve for FPR in [0, limit], linearly interpolated at the cut, divided by limit."""
    # Points with fpr <= limit; the curve ends at fpr = 1 >= limit, so a next point exists when cut is needed.
    n_in = int(np.searchsorted(fpr, fpr_limit, side="right"))
    x = fpr[:n_in]
    y = pro[:n_in]
    if x[-1] < fpr_limit:
        x0, y0, x1, y1 = fpr[n_in - 1], pro[n_in - 1], fpr[n_in], pro[n_in]
        y_cut = y0 + (y1 - y0) * (fpr_limit - x0) / (x1 - x0)
        x = np.append(x, fpr_limit)
        y = np.append(y, y_cut)
    return float(min(max(trapezoid(x, y) / fpr_limit, 0.0), 1.0))


def check_fpr_limit(fpr_limit: float) -> float:
    """The limit as a float in (0, 1]: beyond 1 the curve has no points, at 0 the area is empty."""
    limit = float(fpr_limit)
    if not 0.0 < limit <= 1.0:
        raise ValueError(f"fpr_limit must be in (0, 1], got {fpr_limit!r}")
    return limit


def aupro(maps: object, masks: object, fpr_limit: float = 0.3) -> float | None:
    """Normalised area under the PRO curve up to ``fpr_limit`` (default 0.3), in [0, 1].

    maps: (N,H,W) or (H,W) anomaly scores; masks: same shape, bool / 0-1.
    Returns None when no mask has a foreground pixel (no region to overlap) or
    when there is no background pixel (FPR undefined).
    """
    limit = check_fpr_limit(fpr_limit)
    s = as_scores(maps, "maps")
    m = as_binary(masks, "masks")
    if s.shape != m.shape or s.ndim not in (2, 3):
        raise ValueError(f"maps and masks must both be (N,H,W) or (H,W), got {s.shape} and {m.shape}")
    if s.ndim == 2:
        s, m = s[None], m[None]
    curve = pro_curve(s, m)
    if curve is None:
        return None
    return area_to_limit(*curve, limit)
