"""Heatmap overlays with one colour scale for the whole batch."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from PIL import Image
from skimage.segmentation import find_boundaries


def shared_scale(maps: list[np.ndarray] | np.ndarray) -> tuple[float, float]:
    """(low, high) for the whole batch: the median map value up to the batch maximum.

    Anchoring the low end at the batch median (not each image's own minimum) keeps normal
    images dark: only patches well above what is typical for the batch turn hot.
    """
    flat = np.concatenate([np.asarray(m, dtype=np.float32).ravel() for m in maps])
    lo = float(np.median(flat))
    hi = float(flat.max())
    if hi <= lo:
        hi = lo + 1e-6
    return lo, hi


def overlay(
    image_rgb: np.ndarray,
    anomaly_map: np.ndarray,
    scale: tuple[float, float],
    alpha: float = 0.5,
    mask: np.ndarray | None = None,
    cmap: str = "jet",
) -> Image.Image:
    """Blend a colour-mapped ``anomaly_map`` (same H, W as the image) over ``image_rgb``.

    The blend weight grows with the normalised score, so cold regions show the image
    unaltered. A ground-truth ``mask`` is drawn as a white contour.
    """
    norm = _normalised(anomaly_map, scale)
    # the 256-entry table, not the colormap on every pixel: matplotlib builds an (H, W, 4)
    # float64 image first (0.15 s for a 900 px map, most of the overlay's time)
    colour = _lut(cmap)[np.rint(norm * 255).astype(np.intp)]
    weight = (alpha * norm)[..., None]
    out = image_rgb.astype(np.float32) * (1.0 - weight) + colour * weight
    if mask is not None and mask.any():
        edge = find_boundaries(mask, mode="outer")
        out[edge] = 255.0
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))


@lru_cache(maxsize=8)
def _lut(cmap: str) -> np.ndarray:
    """(256, 3) uint8 colour table: a report colours a thousand maps with one colormap."""
    return (colormaps[cmap](np.linspace(0.0, 1.0, 256))[:, :3] * 255.0 + 0.5).astype(np.uint8)


def colorize(anomaly_map: np.ndarray, scale: tuple[float, float], cmap: str = "jet") -> Image.Image:
    """The map alone in colour, on the batch's shared ``scale`` (so maps compare by eye)."""
    return Image.fromarray(_lut(cmap)[np.rint(_normalised(anomaly_map, scale) * 255).astype(np.intp)])


def _normalised(anomaly_map: np.ndarray, scale: tuple[float, float]) -> np.ndarray:
    """The map on the batch's shared ``scale``, clipped to [0, 1]."""
    lo, hi = scale
    return np.clip((anomaly_map.astype(np.float32) - lo) / (hi - lo), 0.0, 1.0)


def tint_cells(
    image_rgb: np.ndarray,
    cells: np.ndarray,
    colour: tuple[int, int, int] = (230, 20, 20),
    alpha: float = 0.55,
) -> Image.Image:
    """``image_rgb: (H, W, 3)`` with the true cells of the patch grid ``cells: (h, w)`` tinted.

    Nearest-neighbour upsampling keeps a patch a block: an excluded patch is a whole cell.
    """
    h, w = image_rgb.shape[:2]
    up = Image.fromarray(np.asarray(cells, dtype=np.uint8) * 255).resize((w, h), Image.NEAREST)
    sel = (np.asarray(up) > 127)[..., None]
    tinted = (1.0 - alpha) * image_rgb.astype(np.float32) + alpha * np.asarray(colour, dtype=np.float32)
    return Image.fromarray(np.where(sel, tinted, image_rgb).astype(np.uint8))


def outline_cells(
    image: Image.Image,
    cells: np.ndarray,
    colour: tuple[int, int, int] = (255, 0, 255),
) -> Image.Image:
    """``image`` with the border of the true cells of the patch grid ``cells: (h, w)`` drawn.

    An outline, not a tint, so the heatmap under the excluded patches stays readable; the
    colour is one the jet colormap never takes.
    """
    rgb = np.array(image.convert("RGB"))
    h, w = rgb.shape[:2]
    up = np.asarray(Image.fromarray(np.asarray(cells, dtype=np.uint8) * 255).resize((w, h), Image.NEAREST)) > 127
    # "thick" (2 px) survives JPEG's chroma subsampling; padded: cells on the image border close.
    edge = find_boundaries(np.pad(up, 1), mode="thick")[1:-1, 1:-1]
    rgb[edge] = colour
    return Image.fromarray(rgb)


def fit_overlay(img: Image.Image, max_side: int = 1024) -> Image.Image:
    """Shrink an overlay to at most ``max_side`` px on the long side (in place, returned)."""
    if max(img.size) > max_side:
        img.thumbnail((max_side, max_side))
    return img


def file_overlay(
    image_path: Path,
    anomaly_map: np.ndarray,
    scale: tuple[float, float],
    mask_paths: Sequence[Path] = (),
    max_side: int = 1024,
) -> Image.Image:
    """The overlay of one input file for ``overlays/<name>.png``: its map on the batch's
    ``scale``, the union of its ground-truth masks as a contour, at most ``max_side`` px."""
    from codegraph_ad.io.images import load_image_rgb
    from codegraph_ad.io.masks import union_mask

    rgb = load_image_rgb(image_path)
    mask = union_mask(mask_paths, rgb.shape[:2]) if mask_paths else None
    return fit_overlay(overlay(rgb, anomaly_map, scale, mask=mask), max_side)
