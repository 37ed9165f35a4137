"""Volume metrics (SPEC section 9): patient AUROC / F1-max, voxel AUROC, Dice at the grid F1 threshold.

All metrics are computed in the model's cube space (the brain box resampled to D^3): the
ground truth is resampled there with the same crop and trilinear interpolation (>= 0.5),
"full resolution" means D^3, and the token grid is upsampled trilinearly to it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from codegraph_ad.metrics import image_metrics, volume_metrics, voxel_auroc
from codegraph_ad.volumes.nifti import load_mask_like
from codegraph_ad.volumes.outputs import upsample_grid
from codegraph_ad.volumes.pipeline import PreparedVolume
from codegraph_ad.volumes.preprocess import resample


def gt_cube(mask_path: Path, volume: PreparedVolume) -> np.ndarray:
    """The lesion mask of ``volume`` (file grid, nonzero = lesion) in its ``(D, D, D)`` cube."""
    mask = load_mask_like(mask_path, volume.geometry)
    lo, hi = volume.cube.box
    crop = mask[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]].astype(np.float32)
    return resample(crop, volume.cube.image.shape) >= 0.5


def evaluate_maps(
    maps: np.ndarray,
    patient_scores: np.ndarray,
    gts: Sequence[np.ndarray],
    names: Sequence[str],
    groups: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Every SPEC section 9 metric for token maps ``(N, g, g, g)`` against cube masks ``(D, D, D)``.

    patient_scores: ``(N,)`` (``VolumeConfig.patient_baseline``, then RsCIN when enabled). groups: name ->
    group label (e.g. "healthy", "random", "consistent"); Dice is also averaged per group.
    """
    labels = np.array([bool(g.any()) for g in gts])
    vm = volume_metrics(list(maps), list(gts))
    full = [upsample_grid(m, g.shape) for m, g in zip(maps, gts)]
    dice = np.asarray(vm["dice_per_volume"], dtype=np.float64)
    out: dict[str, Any] = {
        "patient": image_metrics(np.asarray(patient_scores, dtype=np.float64), labels.astype(int)),
        "voxel_auroc": voxel_auroc(full, list(gts)),
        "dice_mean": vm["dice_mean"],
        "dice_lesioned": float(dice[labels].mean()) if labels.any() else None,
        "dice_threshold": vm["threshold"],
        "token_f1": vm["token_f1"],
        "n_volumes": int(labels.size),
        "n_lesioned": int(labels.sum()),
        "per_volume": [
            {"name": n, "label": int(y), "score": float(s), "dice": float(d), "lesion_voxels": int(g.sum())}
            for n, y, s, d, g in zip(names, labels, patient_scores, dice, gts)
        ],
    }
    if groups:
        kinds = [groups.get(n, "unknown") for n in names]
        out["dice_by_group"] = {
            k: float(np.mean([d for d, kk in zip(dice, kinds) if kk == k])) for k in sorted(set(kinds))
        }
        for row, k in zip(out["per_volume"], kinds):
            row["group"] = k
    return out
