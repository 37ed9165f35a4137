"""Synthetic subjects from a real healthy brain: smooth deformations, intensity changes, lesions.

Pure functions of (array, parameters, numpy Generator): the cohort builder composes them and
records every drawn parameter. Arrays are canonical (RAS+) and isotropic with ``voxel_mm``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from codegraph_ad.volumes.config import LesionConfig


def smooth_noise(shape: tuple[int, ...], sigma_vox: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian-smoothed white noise scaled to max |value| = 1.

    Drawn on a grid coarsened by up to sigma/2 and upsampled, so a large correlation length
    costs little.
    """
    factor = max(1, int(sigma_vox // 2))
    small = tuple(max(2, -(-s // factor)) for s in shape)
    noise = ndimage.gaussian_filter(rng.standard_normal(small), sigma=max(sigma_vox / factor, 0.5), mode="wrap")
    if factor > 1:
        noise = ndimage.zoom(noise, [s / n for s, n in zip(shape, small)], order=1, grid_mode=True, mode="nearest")
        noise = noise[tuple(slice(0, s) for s in shape)]
    peak = float(np.abs(noise).max())
    return (noise / peak if peak > 0 else noise).astype(np.float32)


def rotation_matrix(angles_deg: np.ndarray) -> np.ndarray:
    """Rotation about x, then y, then z (degrees)."""
    ax, ay, az = np.deg2rad(angles_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


@dataclass(frozen=True)
class Deformation:
    """A random affine (about the volume centre) plus a smooth displacement field, in voxels."""

    matrix: np.ndarray  # (3, 3) output -> input linear map
    shift: np.ndarray  # (3,) translation, voxels
    field: np.ndarray  # (3, X, Y, Z) displacement, voxels


def random_deformation(shape: tuple[int, int, int], voxel_mm: float, rotation_deg: float,
                       scale: tuple[float, float], deformation_mm: float, smoothness_mm: float,
                       rng: np.random.Generator) -> Deformation:
    """Draw a deformation: rotation in [-r, r] per axis, per-axis scale, displacement of
    peak ``deformation_mm`` with correlation length ``smoothness_mm``."""
    rot = rotation_matrix(rng.uniform(-rotation_deg, rotation_deg, 3))
    scales = rng.uniform(scale[0], scale[1], 3)
    matrix = rot @ np.diag(1.0 / scales)
    shift = rng.uniform(-2.0, 2.0, 3) / voxel_mm
    sigma = smoothness_mm / voxel_mm
    field = np.stack([smooth_noise(shape, sigma, rng) for _ in range(3)]) * (deformation_mm / voxel_mm)
    return Deformation(matrix, shift, field)


def apply_deformation(volume: np.ndarray, d: Deformation, order: int = 1) -> np.ndarray:
    """Resample ``volume`` at the deformed coordinates (trilinear by default, 0 outside)."""
    shape = volume.shape
    centre = (np.asarray(shape) - 1) / 2.0
    grid = np.indices(shape, dtype=np.float32).reshape(3, -1) - centre[:, None]
    coords = (d.matrix @ grid).astype(np.float32) + (centre + d.shift)[:, None]
    coords += d.field.reshape(3, -1)
    out = ndimage.map_coordinates(volume, coords, order=order, mode="constant", cval=0.0, prefilter=False)
    return out.reshape(shape).astype(np.float32)


def change_intensity(image: np.ndarray, brain: np.ndarray, gamma: float, bias: np.ndarray,
                     noise_sd: float, rng: np.random.Generator) -> np.ndarray:
    """Gamma on [0, 1]-scaled intensities, multiplicative ``bias`` field, Gaussian noise; 0 outside the brain."""
    ref = float(np.percentile(image[brain], 99.0)) if brain.any() else 1.0
    x = np.clip(image / ref, 0.0, None) ** gamma
    x = x * bias + rng.normal(0.0, noise_sd, image.shape).astype(np.float32)
    return (np.where(brain, np.clip(x, 0.0, None), 0.0) * ref).astype(np.float32)


@dataclass(frozen=True)
class Lesion:
    """One inserted lesion. centre: voxel index; diameters_mm: the three axes; contrast: signed
    relative intensity change; rotation_deg: orientation; shape_seed: seed of its boundary noise."""

    centre: tuple[float, float, float]
    diameters_mm: tuple[float, float, float]
    contrast: float
    rotation_deg: tuple[float, float, float]
    shape_seed: int


def random_lesion(brain: np.ndarray, voxel_mm: float, cfg: LesionConfig, rng: np.random.Generator) -> Lesion:
    """A lesion of random size, contrast sign and magnitude, placed deep enough in the brain
    that most of it lies in tissue."""
    big = rng.uniform(*cfg.diameter_mm)
    diam = (big, big * rng.uniform(*cfg.axis_ratio), big * rng.uniform(*cfg.axis_ratio))
    depth = ndimage.distance_transform_edt(brain) * voxel_mm
    ok = np.argwhere(depth >= 0.5 * big + 2.0)
    if ok.size == 0:
        ok = np.argwhere(depth >= depth.max() * 0.8)
    centre = tuple(float(c) for c in ok[rng.integers(len(ok))])
    sign = 1.0 if rng.random() < 0.5 else -1.0
    return Lesion(centre, diam, sign * rng.uniform(*cfg.contrast),  # type: ignore[arg-type]
                  tuple(rng.uniform(-90, 90, 3)), int(rng.integers(2**31)))  # type: ignore[arg-type]


def lesion_weight(shape: tuple[int, int, int], lesion: Lesion, voxel_mm: float,
                  cfg: LesionConfig) -> tuple[np.ndarray, tuple[slice, ...]]:
    """Soft membership in [0, 1] of an irregular ellipsoid, on the window that holds it."""
    reach = 0.5 * max(lesion.diameters_mm) * (1.0 + cfg.irregularity) + 2 * cfg.edge_mm
    half = int(np.ceil(reach / voxel_mm))
    c = np.round(lesion.centre).astype(int)
    window = tuple(slice(max(0, ci - half), min(s, ci + half + 1)) for ci, s in zip(c, shape))
    idx = np.indices(tuple(w.stop - w.start for w in window), dtype=np.float32)
    offset = np.array([w.start for w in window], dtype=np.float32) - np.asarray(lesion.centre, dtype=np.float32)
    pos = (idx.reshape(3, -1) + offset[:, None]) * voxel_mm
    local = rotation_matrix(np.asarray(lesion.rotation_deg)).T @ pos
    semi = 0.5 * np.asarray(lesion.diameters_mm)[:, None]
    rho = np.sqrt(((local / semi) ** 2).sum(axis=0)).reshape(idx.shape[1:])
    shape_rng = np.random.default_rng(lesion.shape_seed)
    sigma = max(1.0, 0.35 * min(lesion.diameters_mm) / voxel_mm)
    boundary = 1.0 + cfg.irregularity * smooth_noise(rho.shape, sigma, shape_rng)
    radius_mm = 0.5 * float(np.mean(lesion.diameters_mm))
    weight = np.clip((boundary - rho) * radius_mm / cfg.edge_mm + 0.5, 0.0, 1.0)
    return weight.astype(np.float32), window


def insert_lesion(image: np.ndarray, brain: np.ndarray, lesion: Lesion, voxel_mm: float, cfg: LesionConfig,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Image with the lesion and its ground-truth mask (weight >= 0.5, inside the brain).

    The change is ``contrast`` times the local tissue intensity (brain-only Gaussian average,
    3 mm), modulated by smooth texture noise of amplitude ``cfg.texture``.
    """
    weight, window = lesion_weight(image.shape, lesion, voxel_mm, cfg)  # type: ignore[arg-type]
    sub_img, sub_brain = image[window], brain[window].astype(np.float32)
    sigma = 3.0 / voxel_mm
    weight_sum = np.maximum(ndimage.gaussian_filter(sub_brain, sigma), 1e-3)
    local = ndimage.gaussian_filter(sub_img * sub_brain, sigma) / weight_sum
    texture = cfg.texture * smooth_noise(weight.shape, max(1.0, 1.5 / voxel_mm), rng)
    change = weight * local * (lesion.contrast + texture)
    out = image.copy()
    out[window] = np.where(sub_brain > 0, np.clip(sub_img + change, 0.0, None), 0.0)
    mask = np.zeros(image.shape, dtype=bool)
    mask[window] = (weight >= 0.5) & (sub_brain > 0)
    return out, mask
