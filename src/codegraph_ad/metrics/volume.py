"""3D metrics for volumes (SPEC section 9): Dice at the token-grid F1 threshold, voxel AUROC.

Protocol: the threshold is chosen where F1 is best on the token grid (ground
truth max-pooled to the grid, so a token is anomalous when any of its voxels
is); the token score grid is then upsampled trilinearly to full resolution,
thresholded there, and compared with the full-resolution ground truth by Dice.
A lesion-free volume with no positive prediction scores Dice 1.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ._ranking import as_binary, as_scores, binary_curve, f1max_from_curve

_AUROC_CHUNK = 1 << 22  # negatives compared per step in voxel_auroc: bounds its temporary arrays


def dice(pred: object, gt: object) -> float:
    """2|P & G| / (|P| + |G|); 1.0 when both are empty (a lesion-free volume correctly left empty)."""
    p = as_binary(pred, "pred")
    g = as_binary(gt, "gt")
    if p.shape != g.shape:
        raise ValueError(f"pred and gt must have the same shape, got {p.shape} and {g.shape}")
    total = int(np.count_nonzero(p)) + int(np.count_nonzero(g))
    if total == 0:
        return 1.0
    return 2.0 * int(np.count_nonzero(p & g)) / total


def best_f1_threshold(scores: object, labels: object) -> tuple[float, float | None]:
    """(threshold t, F1 at t) with prediction ``scores >= t`` maximising F1 over every distinct score.

    Without any positive label F1 is undefined (None) and t is the next float
    above the maximum score, so nothing is predicted: the Dice-1 outcome for
    lesion-free data. Among equal F1 values the highest threshold is kept.
    """
    s = as_scores(scores, "scores").ravel()
    y = as_binary(labels, "labels").ravel()
    if s.size == 0 or s.shape != y.shape:
        raise ValueError(f"scores and labels must be non-empty and the same size, got {s.size} and {y.size}")
    curve = binary_curve(s, y)
    f1, best = f1max_from_curve(curve)
    if f1 is None:
        return float(np.nextafter(np.float64(s.max()), np.inf)), None
    return float(curve.thresholds[best]), f1


def _pool_to_grid(gt: np.ndarray, grid: tuple[int, ...]) -> np.ndarray:
    """(D,D,D) bool -> grid-shaped bool: a token is positive when any voxel it covers is."""
    t = torch.from_numpy(gt.astype(np.float32))[None, None]
    return (F.adaptive_max_pool3d(t, grid)[0, 0] > 0.5).numpy()


def _upsample(grid_scores: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Trilinear upsampling (align_corners=False) in float64, so thresholds compare exactly."""
    t = torch.from_numpy(np.ascontiguousarray(grid_scores, dtype=np.float64))[None, None]
    return F.interpolate(t, size=shape, mode="trilinear", align_corners=False)[0, 0].numpy()


def _check_volumes(maps: Sequence[object], gts: Sequence[object], what: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """Pair up maps and ground truths, validating each is 3D."""
    if len(maps) != len(gts) or len(maps) == 0:
        raise ValueError(f"need as many {what} as gt_volumes (at least one), got {len(maps)} and {len(gts)}")
    pairs = []
    for i, (m, g) in enumerate(zip(maps, gts)):
        s = as_scores(m, f"{what}[{i}]")
        b = as_binary(g, f"gt_volumes[{i}]")
        if s.ndim != 3 or b.ndim != 3:
            raise ValueError(f"{what}[{i}] and gt_volumes[{i}] must be 3D, got {s.shape} and {b.shape}")
        pairs.append((s, b))
    return pairs


def volume_metrics(token_maps: Sequence[object], gt_volumes: Sequence[object]) -> dict[str, object]:
    """Dice per volume at the token-grid F1-best threshold.

    token_maps: list of (d,d,d) token score grids; gt_volumes: list of (D,D,D)
    bool. Returns {"dice_mean": float, "dice_per_volume": list[float],
    "threshold": float, "token_f1": float | None} (token_f1: F1 on the grid at
    that threshold, None when no token is positive).
    """
    pairs = _check_volumes(token_maps, gt_volumes, "token_maps")
    pooled = [_pool_to_grid(g, s.shape) for s, g in pairs]
    scores = np.concatenate([s.ravel().astype(np.float64) for s, _ in pairs])
    labels = np.concatenate([p.ravel() for p in pooled])
    threshold, token_f1 = best_f1_threshold(scores, labels)
    per_volume = []
    for s, g in pairs:
        # Subtract first: a token exactly at the threshold interpolates to exactly 0, not 1 ulp below it.
        pred = _upsample(s.astype(np.float64) - threshold, g.shape) >= 0.0
        per_volume.append(dice(pred, g))
    return {
        "dice_mean": float(np.mean(per_volume)),
        "dice_per_volume": per_volume,
        "threshold": threshold,
        "token_f1": token_f1,
    }


def voxel_auroc(full_res_maps: Sequence[object], gt_volumes: Sequence[object]) -> float | None:
    """AUROC over all voxels of all volumes (ties count 1/2); None when all voxels share one class.

    Computed by rank counting against the sorted lesion voxels, one volume at a
    time, so memory stays at one volume plus the lesion voxels instead of an
    argsort over every voxel of the dataset.
    """
    pairs = _check_volumes(full_res_maps, gt_volumes, "full_res_maps")
    for i, (s, g) in enumerate(pairs):
        if s.shape != g.shape:
            raise ValueError(f"full_res_maps[{i}] and gt_volumes[{i}] differ in shape: {s.shape} vs {g.shape}")
    positives = np.sort(np.concatenate([s[g].astype(np.float64) for s, g in pairs]))
    n_pos = positives.size
    n_neg = sum(int(g.size - np.count_nonzero(g)) for _, g in pairs)
    if n_pos == 0 or n_neg == 0:
        return None
    # Sum over negatives of (#positives above it) + 1/2 (#positives tied with it); kept as 2x to stay integral.
    twice_concordant = 0
    for s, g in pairs:
        negatives = s[~g].astype(np.float64)
        for start in range(0, negatives.size, _AUROC_CHUNK):
            # Sorted needles make searchsorted several times faster (cache-friendly bisection).
            chunk = np.sort(negatives[start : start + _AUROC_CHUNK])
            below_or_tied = np.searchsorted(positives, chunk, side="right")
            below = np.searchsorted(positives, chunk, side="left")
            twice_concordant += int(np.sum(2 * (n_pos - below_or_tied) + (below_or_tied - below), dtype=np.int64))
    return float(min(max(twice_concordant / (2.0 * n_pos * n_neg), 0.0), 1.0))
