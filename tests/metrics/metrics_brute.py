"""Brute-force twins of the metrics: slow, loop-based, written from the definitions only.

They share no code with codegraph_ad.metrics (regions come from skimage, not
scipy; curves are built threshold by threshold, not from cumulative sums).
"""

from __future__ import annotations

import numpy as np
from skimage.measure import label as sk_label


def auroc_pairs(scores: np.ndarray, labels: np.ndarray) -> float:
    """Share of (positive, negative) pairs ranked correctly, ties counted 1/2."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel().astype(bool)
    pos, neg = s[y], s[~y]
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return (greater + 0.5 * ties) / (pos.size * neg.size)


def _thresholds_desc(s: np.ndarray) -> list[float]:
    return sorted(set(s.tolist()), reverse=True)


def ap_definition(scores: np.ndarray, labels: np.ndarray) -> float:
    """sum_n (R_n - R_{n-1}) P_n over distinct thresholds, descending, R_0 = 0."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel().astype(bool)
    total = 0.0
    prev_recall = 0.0
    for t in _thresholds_desc(s):
        pred = s >= t
        tp = int(np.sum(pred & y))
        precision = tp / int(pred.sum())
        recall = tp / int(y.sum())
        total += (recall - prev_recall) * precision
        prev_recall = recall
    return total


def f1_loop(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(max F1, the highest threshold reaching it), trying every distinct score as threshold."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel().astype(bool)
    best, best_t = -1.0, None
    for t in _thresholds_desc(s):
        pred = s >= t
        tp = int(np.sum(pred & y))
        p = tp / int(pred.sum())
        r = tp / int(y.sum())
        f1 = 0.0 if p + r == 0 else 2 * p * r / (p + r)
        if f1 > best + 1e-15:
            best, best_t = f1, t
    return best, best_t


def integrate_to(points: list[tuple[float, float]], limit: float) -> float:
    """Trapezoid area of a polyline from x=0 to x=limit, interpolating the segment crossing the limit."""
    area = 0.0
    for (x0, y0), (x1, y1) in zip(points[:-1], points[1:]):
        if x0 >= limit:
            break
        if x1 <= limit:
            area += (x1 - x0) * (y0 + y1) / 2
        else:
            y_cut = y0 + (y1 - y0) * (limit - x0) / (x1 - x0)
            area += (limit - x0) * (y0 + y_cut) / 2
            break
    return area


def aupro_brute(maps: np.ndarray, masks: np.ndarray, limit: float = 0.3, connectivity: int = 2) -> float:
    """Per threshold: FPR over all background pixels, PRO = mean over regions of overlap/area."""
    maps = np.asarray(maps, dtype=np.float64)
    masks = np.asarray(masks, dtype=bool)
    regions = []
    for img_mask in masks:
        lab = sk_label(img_mask, connectivity=connectivity)
        regions.append([lab == k for k in range(1, lab.max() + 1)])
    background = ~masks
    points = [(0.0, 0.0)]
    for t in _thresholds_desc(maps.ravel()):
        pred = maps >= t
        fpr = np.sum(pred & background) / np.sum(background)
        overlaps = [
            np.sum(pred[i] & reg) / np.sum(reg) for i, regs in enumerate(regions) for reg in regs
        ]
        points.append((float(fpr), float(np.mean(overlaps))))
    return integrate_to(points, limit) / limit


def linear_weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) 1D linear interpolation matrix, align_corners=False (half-pixel centres, edge clamp)."""
    w = np.zeros((n_out, n_in))
    for i in range(n_out):
        src = max((i + 0.5) * n_in / n_out - 0.5, 0.0)
        i0 = min(int(np.floor(src)), n_in - 1)
        i1 = min(i0 + 1, n_in - 1)
        lam = src - i0
        w[i, i0] += 1 - lam
        w[i, i1] += lam
    return w


def bilinear(stack: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(N,H,W) -> (N,h,w) separable bilinear resize."""
    wy = linear_weights(stack.shape[1], size[0])
    wx = linear_weights(stack.shape[2], size[1])
    return np.einsum("ah,nhw,bw->nab", wy, stack.astype(np.float64), wx)


def trilinear(vol: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """(d0,d1,d2) -> shape, separable trilinear resize."""
    w0, w1, w2 = (linear_weights(n, m) for n, m in zip(vol.shape, shape))
    return np.einsum("ai,bj,ck,ijk->abc", w0, w1, w2, vol.astype(np.float64))


def max_pool_adaptive(vol: np.ndarray, grid: tuple[int, int, int]) -> np.ndarray:
    """Adaptive max pooling by explicit bins [floor(i D/d), ceil((i+1) D/d))."""
    out = np.zeros(grid, dtype=bool)
    D = vol.shape
    for i in range(grid[0]):
        for j in range(grid[1]):
            for k in range(grid[2]):
                sl = tuple(
                    slice(int(np.floor(a * D[ax] / grid[ax])), int(np.ceil((a + 1) * D[ax] / grid[ax])))
                    for ax, a in enumerate((i, j, k))
                )
                out[i, j, k] = vol[sl].any()
    return out


def dice_brute(pred: np.ndarray, gt: np.ndarray) -> float:
    p, g = pred.astype(bool), gt.astype(bool)
    if not p.any() and not g.any():
        return 1.0
    return 2 * np.sum(p & g) / (np.sum(p) + np.sum(g))
