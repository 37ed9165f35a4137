"""Patch mask shares of a benchmark category, for the consistent-anomaly analysis (SPEC section 12).

The rates themselves (exclusion rate, capture rate) have one definition for every report:
:func:`codegraph_ad.evaluation.consistency_rates`. This module only turns the full-size mask
files of a category into the ``(N, M)`` shares that function reads.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from codegraph_ad.datasets.base import LabelledSample
from codegraph_ad.io.masks import grid_shares, union_mask


def patch_mask_fractions(samples: Sequence[LabelledSample], original_sizes: Sequence[tuple[int, int]],
                         grid: tuple[int, int]) -> np.ndarray:
    """``(N, M)`` share of each patch's pixels inside the ground-truth mask (union of mask files).

    Images are squashed to a square before the backbone, so patch ``(i, j)`` covers the
    ``(i, j)`` cell of an even ``grid`` partition of the original image: adaptive average
    pooling of the full-size mask (:func:`~codegraph_ad.io.masks.grid_shares`) gives
    exactly those shares.
    """
    h, w = grid
    out = np.zeros((len(samples), h * w), dtype=np.float32)
    for k, (s, shape) in enumerate(zip(samples, original_sizes)):
        if not s.mask_paths:
            continue
        out[k] = grid_shares(union_mask(s.mask_paths, shape), (h, w))
    return out
