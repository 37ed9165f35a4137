"""Canonical volume -> brain-cropped D x D x D cube with normalised intensities.

The tool does NOT register or skull-strip: inputs must already be brain-extracted and in a
common space (e.g. SRI-24 or MNI). It crops each volume to its brain's bounding box, which
removes the void background and equalises brain extents, and warns when a volume does not
look skull-stripped (little zero background).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from codegraph_ad.volumes.nifti import NiftiVolume

log = logging.getLogger(__name__)

# A skull-stripped brain in a typical field of view leaves most voxels at 0 (BraTS 89%,
# colin27 ch2bet 76%, MNI152 brain 78%); an unstripped head leaves fewer (IXI T1 33-41%,
# colin27 ch2 42%) and reaches the borders of the field of view.
MIN_BACKGROUND_SHARE = 0.5
MAX_TOUCHED_FACES = 1  # faces of the volume with more than FACE_SHARE nonzero voxels
FACE_SHARE = 0.05
# Nyul-Udupa landmarks (percentiles of brain intensities).
NYUL_LANDMARKS = (1.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 99.0)


class NotSkullStrippedWarning(UserWarning):
    """A volume's background is not zero: the brain mask (voxels > 0) will hold the skull."""


@dataclass
class Cube:
    """One volume resampled to the model's cube.

    image: ``(D, D, D)`` float32 intensities in [0, 1] (0 outside the brain).
    brain: ``(D, D, D)`` bool brain mask.
    box: ``(lo, hi)`` voxel bounds (canonical axes, hi exclusive) of the region the cube covers.
    canonical_shape: shape of the canonical volume the box lives in.
    """

    image: np.ndarray
    brain: np.ndarray
    box: tuple[tuple[int, int, int], tuple[int, int, int]]
    canonical_shape: tuple[int, int, int]


def skull_strip_problem(brain: np.ndarray) -> str | None:
    """Why ``brain`` (voxels > 0) does not look like a brain-extracted volume, or None."""
    background = 1.0 - float(brain.mean())
    if background < MIN_BACKGROUND_SHARE:
        return f"only {100 * background:.1f}% of the voxels are 0"
    faces = sum(int(np.take(brain, i, axis=a).mean() > FACE_SHARE) for a in range(3) for i in (0, -1))
    if faces > MAX_TOUCHED_FACES:
        return f"nonzero voxels cover {faces} faces of the field of view"
    return None


def check_skull_stripped(volume: NiftiVolume, brain: np.ndarray) -> None:
    """Warn (naming the file) when the volume does not look skull-stripped."""
    problem = skull_strip_problem(brain)
    if problem is not None:
        warnings.warn(
            f"{volume.path}: {problem}; the input looks not skull-stripped (expected: brain-extracted, "
            "co-registered volumes). The brain mask (voxels > 0) then includes the skull and background.",
            NotSkullStrippedWarning,
            stacklevel=2,
        )


def brain_box(brain: np.ndarray, margin: int) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """Bounding box of the mask's voxels, grown by ``margin`` and clipped to the volume."""
    idx = [np.flatnonzero(brain.any(axis=tuple(a for a in range(3) if a != ax))) for ax in range(3)]
    lo = tuple(max(0, int(i[0]) - margin) for i in idx)
    hi = tuple(min(brain.shape[ax], int(i[-1]) + 1 + margin) for ax, i in enumerate(idx))
    return lo, hi  # type: ignore[return-value]


def resample(array: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Trilinear resampling (cell-centred, align_corners=False) to ``shape``."""
    t = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))[None, None]
    return F.interpolate(t, size=tuple(int(s) for s in shape), mode="trilinear", align_corners=False)[0, 0].numpy()


def percentile_scale(image: np.ndarray, brain: np.ndarray, percentiles: tuple[float, float],
                     white_level: float = 1.0) -> np.ndarray:
    """Map the brain's ``percentiles`` to 0 and ``white_level``, clip to [0, 1], zero the background."""
    values = image[brain]
    lo, hi = np.percentile(values, percentiles)
    if hi <= lo:
        hi = lo + 1e-6
    out = np.clip((image - lo) / (hi - lo) * white_level, 0.0, 1.0)
    out[~brain] = 0.0
    return out.astype(np.float32)


def prepare_cube(
    volume: NiftiVolume,
    size: int,
    crop: str = "brain",
    margin: int = 2,
    percentiles: tuple[float, float] = (0.5, 99.5),
    brain: np.ndarray | None = None,
    white_level: float = 0.75,
) -> Cube:
    """Brain mask (voxels > 0 unless given), crop, resample to ``size``^3, percentile-scale."""
    if brain is None:
        brain = volume.data > 0
        check_skull_stripped(volume, brain)
    if not brain.any():
        raise ValueError(f"{volume.path}: the brain mask is empty")
    if crop == "brain":
        lo, hi = brain_box(brain, margin)
    elif crop == "none":
        lo, hi = (0, 0, 0), volume.data.shape
    else:
        raise ValueError(f"crop must be 'brain' or 'none', got {crop!r}")
    sl = tuple(slice(a, b) for a, b in zip(lo, hi))
    shape = (size, size, size)
    mask = resample(brain[sl].astype(np.float32), shape) >= 0.5
    if not mask.any():
        raise ValueError(f"{volume.path}: the brain is too small to survive resampling to {size}^3")
    image = resample(np.where(brain, volume.data, 0.0)[sl], shape)
    image = percentile_scale(image, mask, percentiles, white_level)
    return Cube(image, mask, (tuple(lo), tuple(hi)), tuple(volume.data.shape))  # type: ignore[arg-type]


def nyul_landmarks(image: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """``(len(NYUL_LANDMARKS),)`` brain-intensity percentiles of one cube."""
    return np.percentile(image[brain], NYUL_LANDMARKS)


def histogram_standardise(cubes: Sequence[Cube]) -> np.ndarray:
    """Nyul-Udupa: map each cube's landmarks piecewise-linearly onto the batch mean ones.

    Returns the standard landmarks. Landmarks are learnt from the batch itself (zero-shot:
    no training set), so one volume's odd histogram is pulled towards the batch's.
    """
    own = np.stack([nyul_landmarks(c.image, c.brain) for c in cubes])
    own = np.maximum.accumulate(own + np.arange(own.shape[1]) * 1e-6, axis=1)  # strictly increasing
    standard = own.mean(axis=0)
    for c, marks in zip(cubes, own):
        x = c.image
        mapped = np.interp(x, marks, standard)
        # Linear extension outside [first, last] landmark, as Nyul's method does.
        low_slope = (standard[1] - standard[0]) / max(marks[1] - marks[0], 1e-6)
        high_slope = (standard[-1] - standard[-2]) / max(marks[-1] - marks[-2], 1e-6)
        mapped = np.where(x < marks[0], standard[0] + (x - marks[0]) * low_slope, mapped)
        mapped = np.where(x > marks[-1], standard[-1] + (x - marks[-1]) * high_slope, mapped)
        c.image = np.where(c.brain, np.clip(mapped, 0.0, 1.0), 0.0).astype(np.float32)
    return standard
