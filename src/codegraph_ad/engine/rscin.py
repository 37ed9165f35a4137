"""RsCIN: smooth image scores over [CLS]-similar images (MuSc's re-scoring)."""

from __future__ import annotations

import numpy as np


def rscin(scores: np.ndarray, cls_features: np.ndarray, k_list: tuple[int, ...] = (1, 2, 3)) -> np.ndarray:
    """Re-score ``scores: (N,)`` with ``cls_features: (N, C)``.

    Min-max normalise the scores, then for each k keep the k most similar images of each
    row of the cosine-similarity matrix (self included), row-normalise those weights and
    take the weighted mean of scores; average over k_list. Similar-looking images get
    similar scores, which damps one-off false alarms on normal images.
    """
    scores = np.asarray(scores, dtype=np.float64)
    n = scores.shape[0]
    lo, hi = scores.min(), scores.max()
    norm = (scores - lo) / (hi - lo) if hi > lo else np.zeros_like(scores)
    feats = np.asarray(cls_features, dtype=np.float64)
    feats = feats / np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)
    sim = feats @ feats.T
    out = np.zeros(n)
    for k in k_list:
        kk = int(min(max(k, 1), n))
        idx = np.argsort(-sim, axis=1, kind="stable")[:, :kk]
        w = np.take_along_axis(sim, idx, axis=1)
        w = np.clip(w, 0.0, None)
        w_sum = w.sum(axis=1, keepdims=True)
        w = np.where(w_sum > 0, w / np.where(w_sum > 0, w_sum, 1.0), 1.0 / kk)
        out += (w * norm[idx]).sum(axis=1)
    return out / max(len(k_list), 1)
