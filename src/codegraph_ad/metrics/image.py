"""Image-level metrics: AUROC, AP and F1-max of one score per image (SPEC section 12).

Undefined metrics come back as ``None`` rather than NaN so a report can print
"n/a" and a mean over categories cannot be silently poisoned:

- AUROC needs both classes (None for an all-normal or all-anomalous batch);
- AP and F1-max need at least one anomalous image (None otherwise); with no
  normal image they are defined (both 1.0: every threshold has precision 1).
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

from ._ranking import as_binary, as_scores


def _check_pair(scores: object, labels: object) -> tuple[np.ndarray, np.ndarray]:
    """Validate shapes and values; both arrays come back flat (N,)."""
    s = as_scores(scores, "scores")
    y = as_binary(labels, "labels")
    if s.ndim != 1 or y.ndim != 1 or s.shape != y.shape:
        raise ValueError(f"scores and labels must both be (N,), got {s.shape} and {y.shape}")
    return s, y


def f1_max(scores: object, labels: object) -> float | None:
    """Max over thresholds of 2PR/(P+R) (0 where P+R=0); None without positives (recall undefined).

    Uses sklearn's precision_recall_curve, which visits every distinct score, so
    the maximum is exact rather than taken over a fixed threshold grid.
    """
    s, y = _check_pair(scores, labels)
    if not y.any():
        return None
    precision, recall, _ = precision_recall_curve(y, s)
    denom = precision + recall
    f1 = np.divide(2.0 * precision * recall, denom, out=np.zeros_like(denom, dtype=np.float64), where=denom > 0)
    return _unit(float(f1.max()))


def _unit(v: float) -> float:
    """Clip float round-off (sklearn's AP can return 1.0000000000000002) so [0, 1] always holds."""
    return min(max(v, 0.0), 1.0)


def image_metrics(scores: object, labels: object) -> dict[str, float | None]:
    """{"auroc", "ap", "f1_max"} as fractions in [0, 1]; None where undefined (see module docstring).

    scores: (N,) anomaly score per image, higher = more anomalous.
    labels: (N,) 0 normal / 1 anomalous.
    """
    s, y = _check_pair(scores, labels)
    n_pos = int(y.sum())
    n_neg = int(y.size - n_pos)
    auroc = _unit(float(roc_auc_score(y, s))) if n_pos and n_neg else None
    ap = _unit(float(average_precision_score(y, s))) if n_pos else None
    return {"auroc": auroc, "ap": ap, "f1_max": f1_max(s, y) if n_pos else None}
