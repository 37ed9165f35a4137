"""Consistent-anomaly analysis (SPEC section 12): exclusion rate and capture rate of CoDeGraph.

Consistent patches are ground-truth anomalous patches that plain MuSc scores as normal
(below the 80th percentile of the normal patches' MuSc scores): the repeated defects MuSc
misses. The capture rate is the share of them CoDeGraph removed from the reference set.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from codegraph_ad.datasets.base import LabelledSample
from codegraph_ad.io.images import load_mask
from codegraph_ad.suite.config import ConsistencyConfig


def patch_mask_fractions(samples: Sequence[LabelledSample], original_sizes: Sequence[tuple[int, int]],
                         grid: tuple[int, int]) -> np.ndarray:
    """``(N, M)`` share of each patch's pixels inside the ground-truth mask (union of mask files).

    Images are squashed to a square before the backbone, so patch ``(i, j)`` covers the
    ``(i, j)`` cell of an even ``grid`` partition of the original image: adaptive average
    pooling of the full-size mask gives exactly those shares.
    """
    h, w = grid
    out = np.zeros((len(samples), h * w), dtype=np.float32)
    for k, (s, shape) in enumerate(zip(samples, original_sizes)):
        if not s.mask_paths:
            continue
        mask = np.zeros(shape, dtype=bool)
        for mp in s.mask_paths:
            mask |= load_mask(mp, shape)
        t = torch.from_numpy(mask.astype(np.float32))[None, None]
        out[k] = F.adaptive_avg_pool2d(t, (h, w)).reshape(-1).numpy()
    return out


def consistency_rates(musc_scores: np.ndarray | None, excluded: np.ndarray | None, fractions: np.ndarray,
                      config: ConsistencyConfig = ConsistencyConfig()) -> dict[str, float | int | None]:
    """Exclusion rate, capture rate and the make-up of the excluded patches.

    musc_scores: ``(N, M)`` MuSc patch scores of the same batch, or None (no capture rate).
    excluded: ``(N, M)`` bool patches CoDeGraph removed from the references, or None (MuSc).
    fractions: ``(N, M)`` from :func:`patch_mask_fractions`.
    Rates are fractions in [0, 1]; None where undefined (nothing to divide by).
    """
    anomalous = fractions >= config.anomalous_fraction
    normal = ~anomalous
    out: dict[str, float | int | None] = {
        "exclusion_rate": None if excluded is None else float(np.mean(excluded)),
        "capture_rate": None,
        "musc_threshold": None,
        "n_patches": int(fractions.size),
        "n_anomalous_patches": int(anomalous.sum()),
        "n_consistent_patches": None,
        "excluded_normal_share": None,
        "excluded_consistent_share": None,
        "excluded_inconsistent_share": None,
    }
    if musc_scores is None or not normal.any():
        return out
    threshold = float(np.percentile(musc_scores[normal], config.musc_percentile))
    consistent = anomalous & (musc_scores < threshold)
    out["musc_threshold"] = threshold
    out["n_consistent_patches"] = int(consistent.sum())
    if excluded is None:
        return out
    if consistent.any():
        out["capture_rate"] = float(excluded[consistent].mean())
    n_excl = int(excluded.sum())
    if n_excl:
        out["excluded_normal_share"] = float((excluded & normal).sum() / n_excl)
        out["excluded_consistent_share"] = float((excluded & consistent).sum() / n_excl)
        out["excluded_inconsistent_share"] = float((excluded & anomalous & ~consistent).sum() / n_excl)
    return out
