"""Score stacked volume tokens with the unchanged 2D methods; void cubes as a patch mask.

Void cubes must not form CoDeGraph's suspicious links nor serve as its filtering
population: their identical blank features would dominate the graph (thesis section 5.2).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from codegraph_ad.config import RunConfig
from codegraph_ad.engine.threads import thread_budget
from codegraph_ad.features.extract import FeatureSet
from codegraph_ad.methods import make_method
from codegraph_ad.methods.base import ScoreResult, finish_image_scores


# Brain shares are voxel means in float32: a whole cube may read 1 - 6e-8.
_SHARE_TOLERANCE = 1e-6


def patient_cubes(brain_share: np.ndarray, solid: np.ndarray, min_share: float | None) -> np.ndarray:
    """``(N, M)`` bool: the cubes whose maximum is the patient score (solid ones when None)."""
    if min_share is None:
        return solid
    return solid & (brain_share >= min_share - _SHARE_TOLERANCE)


def zero_outside(patch_scores: torch.Tensor, cubes: np.ndarray) -> torch.Tensor:
    """Scores with the cubes outside ``cubes: (N, M)`` set to 0 (scores are distances, >= 0)."""
    return torch.where(torch.from_numpy(cubes), patch_scores, torch.zeros(()))


def score_volume_features(
    features: FeatureSet,
    solid: np.ndarray,
    config: RunConfig,
    zero_void: bool = True,
    progress: bool = False,
    scored_cubes: np.ndarray | None = None,
) -> ScoreResult:
    """Score ``features`` (grid flattened from 3D) with ``config.method``.

    solid: ``(N, M)`` bool, cubes with enough brain (the graph stages' patch mask). With
    ``zero_void`` the scores of the other cubes are set to 0 and the image scores are
    recomputed from the masked maps (then RsCIN as configured). scored_cubes: ``(N, M)``
    bool, the cubes the image score is the maximum of (``patient_cubes``; all when None).
    """
    if any(r != 1 for r in config.lnamd.degrees):
        raise ValueError(
            "volumes use LNAMD degrees (1,) only (the 2D pooling does not apply to a 3D grid), "
            f"got {config.lnamd.degrees}"
        )
    with thread_budget(config.engine.threads):
        method = make_method(config, progress)
        if config.method == "codegraph":
            method = replace(method, patch_mask=solid)
        result = method.score(features)
    if zero_void:
        result.patch_scores = zero_outside(result.patch_scores, solid)
    if zero_void or scored_cubes is not None:
        counted = result.patch_scores if scored_cubes is None else zero_outside(result.patch_scores, scored_cubes)
        raw, final = finish_image_scores(counted, features.cls, config.rscin)
        result.raw_image_scores, result.image_scores = raw, final
    result.diagnostics["solid_cubes"] = int(solid.sum())
    return result
