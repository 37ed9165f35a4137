"""Slow, obviously-correct twins of LNAMD and MSM (SPEC sections 2, 3 and 7).

Written from the SPEC with explicit loops and float64, sharing no code with the package, so
that a test comparing the two fails when the production code drifts from the definition.
"""

from __future__ import annotations

import math

import numpy as np


def lnamd_brute(tokens: np.ndarray, grid: tuple[int, int], r: int) -> np.ndarray:
    """LNAMD of one image: ``tokens (M, C)`` in row-major ``(h, w)`` order -> unit ``(M, C)``.

    1. Standardise the whole (C, H, W) map jointly: one mean, one (population) std.
    2. Mean over the r x r window centred on each position, stride 1; positions outside the
       grid are zeros (zero padding after the standardisation) and still count in r * r.
    3. L2-normalise each position's C-vector.
    """
    h, w = grid
    m, c = tokens.shape
    assert h * w == m
    x = np.asarray(tokens, dtype=np.float64)
    mean = sum(float(v) for v in x.ravel()) / x.size
    var = sum((float(v) - mean) ** 2 for v in x.ravel()) / x.size
    std = math.sqrt(var)
    z = (x - mean) / std
    half = r // 2
    out = np.zeros((m, c), dtype=np.float64)
    for y in range(h):
        for xx in range(w):
            acc = np.zeros(c, dtype=np.float64)
            for dy in range(-half, half + 1):
                for dx in range(-half, half + 1):
                    yy, xn = y + dy, xx + dx
                    if 0 <= yy < h and 0 <= xn < w:  # outside: a zero, adds nothing
                        acc += z[yy * w + xn]
            avg = acc / (r * r)
            out[y * w + xx] = avg / math.sqrt(float(np.dot(avg, avg)))
    return out


def lnamd_batch_brute(tokens: np.ndarray, grid: tuple[int, int], r: int) -> np.ndarray:
    """``tokens (N, M, C)`` -> unit ``(N, M, C)``, one image at a time."""
    return np.stack([lnamd_brute(t, grid, r) for t in tokens])


def minima_brute(feats: np.ndarray, excluded: np.ndarray | None = None) -> np.ndarray:
    """``(N, N, M)``: ``out[q, j, m]`` = distance from patch m of q to its nearest *remaining*
    patch of j (explicit differences); inf on the diagonal and for a j with no patch left."""
    n, m, _ = feats.shape
    excluded = np.zeros((n, m), dtype=bool) if excluded is None else excluded
    out = np.full((n, n, m), np.inf)
    for q in range(n):
        for j in range(n):
            if j == q:
                continue
            for a in range(m):
                best = np.inf
                for b in range(m):
                    if excluded[j, b]:
                        continue
                    best = min(best, float(np.linalg.norm(feats[q, a] - feats[j, b])))
                out[q, j, a] = best
    return out


def msm_brute(minima: np.ndarray, q: float, reference_images: np.ndarray | None = None) -> np.ndarray:
    """``(N, M)``: mean of the K = max(1, ceil(q R)) smallest image distances, R the number of
    reference images other than the query (``N - 1`` when all are references); an image with
    no patch left is at +inf and so sorts last."""
    n, _, m = minima.shape
    refs = np.ones(n, dtype=bool) if reference_images is None else np.asarray(reference_images, dtype=bool)
    out = np.zeros((n, m))
    for qi in range(n):
        others = [j for j in range(n) if j != qi and refs[j]]
        k = max(1, math.ceil(q * len(others) - 1e-9))
        for a in range(m):
            vals = sorted(minima[qi, j, a] for j in others)[:k]
            assert all(np.isfinite(vals)), "test batch must leave K finite images per query"
            out[qi, a] = sum(vals) / k
    return out
