"""Image perturbations for SynCA: one rigid geometry for image and mask, photometric jitter, noise.

All functions are pure; randomness comes in through explicit parameters (and a seed for
the noise), so a copy can be rebuilt from its manifest entry.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601, as PIL and torchvision


def sampling_grid(shape: tuple[int, int], angle_deg: float, shift_px: tuple[float, float]) -> torch.Tensor:
    """``(1, H, W, 2)`` source coordinates for ``grid_sample``: rotate about the centre, then shift.

    angle_deg: counter-clockwise on screen. shift_px: ``(dx, dy)`` in pixels, +x right, +y down.
    """
    h, w = shape
    t = math.radians(angle_deg)
    cos, sin = math.cos(t), math.sin(t)
    # Output offset from the centre, minus the shift, rotated back by -angle gives the source.
    u = (torch.arange(w, dtype=torch.float32) - (w - 1) / 2 - shift_px[0])[None, :]
    v = (torch.arange(h, dtype=torch.float32) - (h - 1) / 2 - shift_px[1])[:, None]
    src_x = u * cos - v * sin + (w - 1) / 2
    src_y = u * sin + v * cos + (h - 1) / 2
    return torch.stack([(2 * src_x + 1) / w - 1, (2 * src_y + 1) / h - 1], dim=-1)[None]


def warp(array: np.ndarray, grid: torch.Tensor, nearest: bool = False) -> np.ndarray:
    """Resample ``(H, W)`` or ``(H, W, C)`` at ``grid`` (see :func:`sampling_grid`).

    Pixels that come from outside the frame are filled by reflection (the frame mirrored at
    its edges), so no black corners appear. ``nearest`` keeps labels (masks) exact; images
    use bilinear interpolation. Returns the same shape and dtype.
    """
    squeeze = array.ndim == 2
    a = array[..., None] if squeeze else array
    img = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).permute(2, 0, 1)[None]
    out = F.grid_sample(img, grid, mode="nearest" if nearest else "bilinear", padding_mode="reflection",
                        align_corners=False)[0].permute(1, 2, 0).numpy()
    out = out[..., 0] if squeeze else out
    return _cast_like(out, array)


def jitter(rgb: np.ndarray, brightness: float, contrast: float, saturation: float) -> np.ndarray:
    """Brightness, contrast and saturation factors (1 = unchanged) applied in that order to uint8 RGB.

    Contrast blends with the mean grey level of the image, saturation with its grey version,
    as torchvision's ColorJitter does.
    """
    x = rgb.astype(np.float32)
    x = np.clip(x * brightness, 0, 255)
    mean = float((x @ _LUMA).mean())
    x = np.clip((x - mean) * contrast + mean, 0, 255)
    gray = (x @ _LUMA)[..., None]
    x = np.clip(gray + (x - gray) * saturation, 0, 255)
    return np.round(x).astype(np.uint8)


def add_noise(rgb: np.ndarray, sigma: float, salt_pepper: float, seed: int | list[int]) -> np.ndarray:
    """Gaussian noise of std ``sigma`` (fraction of 255), then ``salt_pepper`` of the pixels set to black or white.

    Salt and pepper hits whole pixels (all channels), half white and half black.
    """
    rng = np.random.default_rng(seed)
    h, w = rgb.shape[:2]
    x = rgb.astype(np.float32) + rng.normal(0.0, sigma * 255.0, rgb.shape).astype(np.float32)
    x = np.round(np.clip(x, 0, 255)).astype(np.uint8)
    k = int(round(salt_pepper * h * w))
    if k:
        flat = x.reshape(h * w, -1)
        idx = rng.choice(h * w, size=k, replace=False)
        flat[idx[: k // 2]] = 255
        flat[idx[k // 2:]] = 0
    return x


def _cast_like(out: np.ndarray, like: np.ndarray) -> np.ndarray:
    if np.issubdtype(like.dtype, np.integer):
        info = np.iinfo(like.dtype)
        return np.clip(np.round(out), info.min, info.max).astype(like.dtype)
    if like.dtype == bool:
        return out > 0.5
    return out.astype(like.dtype)
