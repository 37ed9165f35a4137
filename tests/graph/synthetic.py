"""Constructed batches where the truth is known, and brute-force twins of the engine.

Normal patch m of every image is a noisy copy of a per-position prototype (so normal
patches have look-alikes in every image); a planted consistent anomaly is the same unusual
vector (plus a little noise) at the same positions in a few images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from codegraph_ad.config import GraphConfig

# The graph settings these small constructed batches were calibrated with (the library
# defaults before the CoDeGraph matrix, docs/codegraph.md): the tests that use them check
# the stages' mechanics. The shipped defaults are judged on real batches by
# benchmarks/codegraph_matrix.py and on planted groups by tests/graph/test_planted_groups.py.
TOY_GRAPH = {"k_fraction": 0.3, "alpha": 0.0, "community_density": "per_pair", "joint_filtering": False,
             "final_q": 0.1, "defect_gate_percentile": None, "resolution_scale": 1.0}


def toy_graph(**changes) -> GraphConfig:
    """GraphConfig with ``TOY_GRAPH`` under ``changes``."""
    return GraphConfig(**{**TOY_GRAPH, **changes})


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@dataclass
class Batch:
    feats: list[np.ndarray]  # L arrays (N, M, C), unit rows
    planted_images: np.ndarray  # (P,) image indices holding the repeated anomaly
    planted_mask: np.ndarray  # (N, M) bool, planted patches


def make_batch(
    n: int = 30,
    m: int = 64,
    c: int = 32,
    n_layers: int = 2,
    planted_images: tuple[int, ...] = (3, 7, 11, 19, 25),
    planted_positions: tuple[int, ...] = (10, 11, 18, 19),
    normal_noise: float = 0.6,
    anomaly_noise: float = 0.05,
    random_anomalies: int = 0,
    seed: int = 0,
) -> Batch:
    """Random unit features; ``random_anomalies`` unique (non-repeated) odd patches are
    scattered too, so that a clean batch is not trivially clean."""
    rng = np.random.default_rng(seed)
    planted_mask = np.zeros((n, m), dtype=bool)
    for q in planted_images:
        planted_mask[q, list(planted_positions)] = True
    feats = []
    for _ in range(n_layers):
        proto = _unit(rng.standard_normal((m, c)))
        f = proto[None] + normal_noise * rng.standard_normal((n, m, c)) / math.sqrt(c)
        odd = _unit(rng.standard_normal((len(planted_positions), c)))
        for q in planted_images:
            jitter = anomaly_noise * rng.standard_normal(odd.shape) / math.sqrt(c)
            f[q, list(planted_positions)] = odd + jitter
        for _ in range(random_anomalies):
            q, p = rng.integers(n), rng.integers(m)
            f[q, p] = _unit(rng.standard_normal(c))
        feats.append(_unit(f).astype(np.float32))
    planted = np.asarray(planted_images, dtype=np.int64)
    return Batch(feats=feats, planted_images=planted, planted_mask=planted_mask)


def patch_distances(feats: np.ndarray) -> np.ndarray:
    """(N, M, N, M) Euclidean distances between all patches of unit features (N, M, C)."""
    n, m, _ = feats.shape
    flat = feats.reshape(n * m, -1).astype(np.float64)
    d = np.sqrt(np.maximum(0.0, 2.0 - 2.0 * flat @ flat.T))
    return d.reshape(n, m, n, m)


def minima(dist: np.ndarray) -> np.ndarray:
    """(N, N, M) mins[q, j, m] = min_p dist[q, m, j, p], self at +inf (the engine's layout)."""
    n = dist.shape[0]
    mins = dist.min(axis=3).transpose(0, 2, 1).astype(np.float32)
    mins[np.arange(n), np.arange(n), :] = np.inf
    return mins


def make_score_fn(dists: list[np.ndarray], q: float = 0.1):
    """MSM by brute force: mean over layers of the mean of the K smallest per-image minima
    over allowed images, each image's minimum over its non-excluded patches."""
    n = dists[0].shape[0]

    def score_fn(reference_images: np.ndarray, excluded: np.ndarray) -> np.ndarray:
        out = np.zeros(dists[0].shape[:2], dtype=np.float64)
        for d in dists:
            masked = np.where(excluded[None, None, :, :], np.inf, d)
            per_img = masked.min(axis=3)  # (N, M, N)
            per_img[np.arange(n), :, np.arange(n)] = np.inf
            per_img[:, :, ~reference_images] = np.inf
            s = np.sort(per_img, axis=2)
            n_refs = np.isfinite(per_img).sum(axis=2)  # (N, M)
            k = np.maximum(1, np.ceil(q * n_refs - 1e-9)).astype(int)
            csum = np.cumsum(np.where(np.isfinite(s), s, 0.0), axis=2)
            kk = np.clip(k, 1, n - 1)
            total = np.take_along_axis(csum, (kk - 1)[..., None], axis=2)[..., 0]
            out += np.where(n_refs > 0, total / np.minimum(kk, np.maximum(n_refs, 1)), 2.0)
        return (out / len(dists)).astype(np.float32)

    return score_fn


def batch_inputs(batch: Batch, q: float = 0.1):
    """(mins_per_layer, score_fn) for a constructed batch."""
    dists = [patch_distances(f) for f in batch.feats]
    return [minima(d) for d in dists], make_score_fn(dists, q)
