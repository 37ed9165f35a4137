"""Shared threshold-sweep helpers: one descending sort feeds every ranking metric.

Pixel evaluation ranks millions of scores; sorting once and reading AUROC, AP,
F1-max and AUPRO off cumulative sums keeps it to one O(n log n) pass and a few
n-sized arrays, instead of one sort per metric.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def as_scores(scores: object, name: str) -> np.ndarray:
    """Scores as a floating array; NaN/inf are rejected because no ranking is defined for them."""
    arr = np.asarray(scores)
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"{name} must be numeric scores, got dtype {arr.dtype}")
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values; metrics need finite scores")
    return arr


def as_binary(labels: object, name: str) -> np.ndarray:
    """Labels/masks as bool; only 0/1 (or bool) values are accepted so a 0/255 mask is not misread."""
    arr = np.asarray(labels)
    if arr.dtype == bool:
        return arr
    if not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"{name} must hold 0/1 values, got dtype {arr.dtype}")
    if arr.size and not np.all((arr == 0) | (arr == 1)):
        bad = arr[(arr != 0) & (arr != 1)].flat[0]
        raise ValueError(f"{name} must hold only 0/1 values, found {bad!r}")
    return arr.astype(bool)


def descending_order(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(order, group_ends): permutation sorting scores descending, and the last index of each tie group.

    The order inside a tie group does not matter: every metric only reads the
    cumulative sums at the end of a group, i.e. once per distinct threshold.
    """
    order = np.argsort(scores, kind="quicksort")[::-1]
    sorted_scores = scores[order]
    ends = np.flatnonzero(sorted_scores[1:] != sorted_scores[:-1])
    ends = np.append(ends, sorted_scores.size - 1)
    return order, ends


@dataclass(frozen=True)
class BinaryCurve:
    """Counts at each distinct threshold t (predict positive where score >= t), t descending."""

    thresholds: np.ndarray  # (T,) distinct scores, descending
    tps: np.ndarray  # (T,) true positives at threshold
    fps: np.ndarray  # (T,) false positives at threshold
    n_pos: int
    n_neg: int


def binary_curve(
    scores: np.ndarray, labels: np.ndarray, order: np.ndarray | None = None, ends: np.ndarray | None = None
) -> BinaryCurve:
    """Cumulative TP/FP counts per distinct threshold (flattened inputs, validated by the caller)."""
    scores = scores.ravel()
    labels = labels.ravel()
    if order is None or ends is None:
        order, ends = descending_order(scores)
    sorted_labels = labels[order]
    tps = np.cumsum(sorted_labels, dtype=np.int64)[ends]
    fps = (ends + 1) - tps
    n_pos = int(tps[-1]) if tps.size else 0
    return BinaryCurve(scores[order[ends]], tps, fps, n_pos, int(labels.size - n_pos))


def trapezoid(x: np.ndarray, y: np.ndarray) -> float:
    """Trapezoid rule (np.trapezoid only exists from numpy 2.0; the project allows 1.26)."""
    if x.size < 2:
        return 0.0
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) * 0.5))


def auroc_from_curve(c: BinaryCurve) -> float | None:
    """Area under ROC with (0,0) prepended; equals the pair-counting AUROC with ties as 1/2. None if one class."""
    if c.n_pos == 0 or c.n_neg == 0:
        return None
    fpr = np.concatenate(([0.0], c.fps / c.n_neg))
    tpr = np.concatenate(([0.0], c.tps / c.n_pos))
    return _clip01(trapezoid(fpr, tpr))


def ap_from_curve(c: BinaryCurve) -> float | None:
    """AP = sum_n (R_n - R_{n-1}) P_n over distinct thresholds (sklearn's definition). None if no positives."""
    if c.n_pos == 0:
        return None
    precision = c.tps / (c.tps + c.fps)
    recall = c.tps / c.n_pos
    d_recall = np.diff(np.concatenate(([0.0], recall)))
    return _clip01(float(np.sum(d_recall * precision)))


def f1max_from_curve(c: BinaryCurve) -> tuple[float | None, int]:
    """(max F1 over distinct thresholds, index of the best threshold). F1 = 2TP/(TP+FP+P); None if no positives."""
    if c.n_pos == 0:
        return None, -1
    f1 = 2.0 * c.tps / (c.tps + c.fps + c.n_pos)
    best = int(np.argmax(f1))
    return _clip01(float(f1[best])), best


def _clip01(v: float) -> float:
    """Guard against 1 + 1e-16 style round-off so callers can rely on the [0, 1] range."""
    return float(min(max(v, 0.0), 1.0))
