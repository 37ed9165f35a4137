"""Stage 1: endurance ratios of the links (x, C^(i)(x)), i < k (SPEC section 4).

A consistent anomaly has a few near-duplicates and then a cliff: its early ranks are tiny
compared with rank k, so its endurance ratio is small. Normal patches grow smoothly.
"""

from __future__ import annotations

import math

import numpy as np

from codegraph_ad.errors import BatchTooSmallError

# Added to every distance before dividing or raising to -alpha. Distances of unit vectors
# lie in [0, 2]; 1e-6 is far below any real nearest-neighbour distance (float32 features
# give ~1e-4 at best) but keeps identical images defined: 0/0 becomes 1 ("no cliff": k
# identical neighbours look like a smooth vector), and 0 against a positive d^(k) becomes
# ~1e-6 / d^(k), the most suspicious link there is.
DISTANCE_EPS = 1e-6


def reference_rank(n_images: int, k_fraction: float) -> int:
    """k = ceil(k_fraction * N), clipped to [2, N-1] so that at least rank 1 < k exists.

    The 1e-9 guard keeps float noise from adding a rank: 0.3 * 10 is 3.0000000000000004.
    """
    if n_images < 3:
        raise BatchTooSmallError(f"the graph stages need a batch of at least 3 images, got {n_images}")
    if not 0.0 < k_fraction <= 1.0:
        raise ValueError(f"k_fraction must be in (0, 1], got {k_fraction}")
    k = math.ceil(k_fraction * n_images - 1e-9)
    return int(min(max(k, 2), n_images - 1))


def endurance_ratios(dbar: np.ndarray, k: int, alpha: float = 0.0) -> np.ndarray:
    """Weighted endurance ratios zeta~_i(x) for ranks i = 1..k-1; shape (N, M, k-1) float32.

    zeta_i = (dbar_i + eps) / (dbar_k + eps)  in (0, 1]  (dbar is non-decreasing),
    zeta~_i = zeta_i * (dbar_i + eps)^(-alpha) = (dbar_i + eps)^(1-alpha) / (dbar_k + eps).

    dbar: (N, M, R) with R >= k (rank r is column r-1). The result is finite and > 0
    wherever dbar is finite. Note: at alpha = 1 all ranks of one patch tie (the ratio is
    1 / dbar_k) and alpha > 1 reverses the order within a patch; "small" alpha means < 1.
    """
    dbar = np.asarray(dbar)
    if dbar.ndim != 3:
        raise ValueError(f"dbar must be (N, M, R), got shape {dbar.shape}")
    if not 2 <= k <= dbar.shape[2]:
        raise ValueError(f"reference rank k must be in [2, R] = [2, {dbar.shape[2]}], got {k}")
    if not math.isfinite(alpha):
        raise ValueError(f"alpha must be finite, got {alpha}")
    eps = np.float32(DISTANCE_EPS)
    early = dbar[..., : k - 1].astype(np.float32) + eps  # (N, M, k-1)
    ref = dbar[..., k - 1 : k].astype(np.float32) + eps  # (N, M, 1)
    if alpha == 0.0:
        zeta = early / ref
    else:
        zeta = np.power(early, np.float32(1.0 - alpha)) / ref
    return zeta.astype(np.float32, copy=False)
