"""Score stacked volume tokens with the unchanged 2D methods; void cubes as a patch mask.

Void cubes must not form CoDeGraph's suspicious links nor serve as its filtering
population: their identical blank features would dominate the graph (thesis section 5.2).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from codegraph_ad.config import RunConfig
from codegraph_ad.engine.threads import thread_budget
from codegraph_ad.errors import ConfigError
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


def position_median(patch_scores: torch.Tensor, solid: np.ndarray) -> np.ndarray:
    """``(M,)`` median score of each cube position over the volumes where that cube is solid
    (0 where none is)."""
    values = np.where(solid, patch_scores.float().numpy(), np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-void positions: NaN, set to 0 below
        med = np.nanmedian(values, axis=0)
    return np.nan_to_num(med, nan=0.0).astype(np.float32)


def patient_map(patch_scores: torch.Tensor, solid: np.ndarray, cubes: np.ndarray,
                position_baseline: bool = False) -> torch.Tensor:
    """``(N, M)`` values whose row maximum is each volume's patient score.

    cubes: the cubes the maximum runs over (``patient_cubes``). position_baseline: count each
    cube's excess over the batch median at its position (``position_median``). Co-registered
    brains put the same anatomy in the same cube, so the median says how hard that place is
    to match in this batch (partial-volume cubes on the surface score high everywhere); a
    lesion then competes with the normal range of its own position instead of the hardest
    place of every brain.
    Uncounted cubes get the lowest counted value, so they never decide a maximum.
    """
    scores = patch_scores.float()
    if position_baseline:
        scores = scores - torch.from_numpy(position_median(scores, solid))[None]
    keep = torch.from_numpy(np.asarray(cubes, dtype=bool))
    floor = scores[keep].min() if bool(keep.any()) else torch.zeros(())
    return torch.where(keep, scores, floor)


def score_volume_features(
    features: FeatureSet,
    solid: np.ndarray,
    config: RunConfig,
    zero_void: bool = True,
    progress: bool = False,
    scored_cubes: np.ndarray | None = None,
    position_baseline: bool = False,
) -> ScoreResult:
    """Score ``features`` (grid flattened from 3D) with ``config.method``.

    solid: ``(N, M)`` bool, cubes with enough brain (the graph stages' patch mask). With
    ``zero_void`` the scores of the other cubes are set to 0 and the image scores are
    recomputed from the masked maps (then RsCIN as configured). scored_cubes: ``(N, M)``
    bool, the cubes the image score is the maximum of (``patient_cubes``; all when None).
    position_baseline: the image score is the largest excess over the batch median at the
    same cube position (``patient_map``); the maps are not changed. ``--window`` matches each
    cube within that many cubes of its position on the 3D lattice (``features.lattice``).
    """
    if config.engine.window is not None and features.lattice is None:
        # the tokens lie on a 3D grid flattened to (g, g*g): a 2D window over that layout would
        # pair cubes that are far apart in depth
        raise ConfigError(f"--window on volume tokens measures their 3D grid, and these features carry only "
                          f"the flattened {tuple(features.grid)} layout: build them with volumes.pipeline "
                          "(FeatureSet.lattice set), or leave --window unset")
    if any(r != 1 for r in config.lnamd.degrees):
        raise ValueError(
            "volumes use LNAMD degrees (1,) only (the 2D pooling does not apply to a 3D grid), "
            f"got {config.lnamd.degrees}"
        )
    with thread_budget(config.engine.threads):
        method = make_method(config, progress)
        if "patch_mask" in method.get_params(deep=False):  # CoDeGraph: graph stages on brain cubes only
            method.set_params(patch_mask=solid)
        result = method.fit_predict(features)
    if zero_void:
        result.patch_scores = zero_outside(result.patch_scores, solid)
    if zero_void or scored_cubes is not None or position_baseline:
        cubes = scored_cubes if scored_cubes is not None else (solid if zero_void else np.ones_like(solid))
        counted = patient_map(result.patch_scores, solid, cubes, position_baseline)
        raw, final = finish_image_scores(counted, features.cls, config.rscin)
        result.raw_image_scores, result.image_scores = raw, final
    result.diagnostics["solid_cubes"] = int(solid.sum())
    return result
