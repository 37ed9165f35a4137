"""RsCIN: smooth image scores over [CLS]-similar images (MuSc's re-scoring)."""

from __future__ import annotations

import numpy as np

# Rows of the cosine-similarity matrix held at a time: (rows x N) float64, 64 MB at N = 10^5
# with 80 rows; the whole (N, N) matrix would be 80 GB there.
_ROW_BYTES = 64 * 1024 * 1024


def rscin(scores: np.ndarray, cls_features: np.ndarray, k_list: tuple[int, ...] = (1, 2, 3)) -> np.ndarray:
    """Re-score ``scores: (N,)`` with ``cls_features: (N, C)``.

    Min-max normalise the scores, then for each k keep the k most similar images of each
    row of the cosine-similarity matrix (self included), row-normalise those weights and
    take the weighted mean of scores; average over k_list. Similar-looking images get
    similar scores, which damps one-off false alarms on normal images. Rows are processed
    in chunks, and only the largest k of each is kept, so memory stays linear in N.
    """
    scores = np.asarray(scores, dtype=np.float64)
    n = scores.shape[0]
    lo, hi = scores.min(), scores.max()
    norm = (scores - lo) / (hi - lo) if hi > lo else np.zeros_like(scores)
    feats = np.asarray(cls_features, dtype=np.float64)
    feats = feats / np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)
    kmax = int(min(max(max(k_list, default=1), 1), n))
    top_idx = np.empty((n, kmax), dtype=np.int64)
    top_sim = np.empty((n, kmax), dtype=np.float64)
    rows = max(1, _ROW_BYTES // (8 * max(n, 1)))
    for r0 in range(0, n, rows):
        sim = feats[r0 : r0 + rows] @ feats.T
        top_idx[r0 : r0 + rows] = _largest(sim, kmax)
        top_sim[r0 : r0 + rows] = np.take_along_axis(sim, top_idx[r0 : r0 + rows], axis=1)
    out = np.zeros(n)
    for k in k_list:
        kk = int(min(max(k, 1), n))
        idx, w = top_idx[:, :kk], np.clip(top_sim[:, :kk], 0.0, None)
        w_sum = w.sum(axis=1, keepdims=True)
        w = np.where(w_sum > 0, w / np.where(w_sum > 0, w_sum, 1.0), 1.0 / kk)
        out += (w * norm[idx]).sum(axis=1)
    return out / max(len(k_list), 1)


def _largest(sim: np.ndarray, k: int) -> np.ndarray:
    """Column indices of each row's k largest values, largest first, ties by lower index
    (what a stable argsort of -sim gives), without sorting whole rows."""
    if k >= sim.shape[1]:
        return np.argsort(-sim, axis=1, kind="stable")[:, :k]
    kth = -np.partition(-sim, k - 1, axis=1)[:, k - 1 : k]  # each row's k-th largest value
    out = np.empty((sim.shape[0], k), dtype=np.int64)
    for i in range(sim.shape[0]):  # candidates: every value >= the k-th largest (ties included)
        cand = np.flatnonzero(sim[i] >= kth[i, 0])
        out[i] = cand[np.argsort(-sim[i, cand], kind="stable")[:k]]
    return out
