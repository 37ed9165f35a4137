"""PNG mosaics: axial, coronal and sagittal slices of a cube with its anomaly map overlaid."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from codegraph_ad.report.overlay import overlay
from codegraph_ad.volumes.tokens import axis_slices

# Rows of the mosaic as cube axes: axial (z), coronal (y), sagittal (x), the usual reading order.
MOSAIC_ROWS = (2, 1, 0)


def slice_positions(depth: int, peak: int, count: int) -> list[int]:
    """The slice through the map's peak first, then ``count - 1`` evenly spaced ones."""
    spaced = np.linspace(0.2 * depth, 0.8 * depth, max(count - 1, 0)).round().astype(int).tolist()
    return [int(peak)] + [int(s) for s in spaced]


def volume_mosaic(
    image: np.ndarray,
    amap: np.ndarray,
    scale: tuple[float, float],
    columns: int = 6,
    mask: np.ndarray | None = None,
) -> Image.Image:
    """Rows axial / coronal / sagittal, ``columns`` slices each; the first column cuts the peak.

    image, amap: ``(D, D, D)`` cube intensities in [0, 1] and anomaly map on the same grid;
    mask: optional ``(D, D, D)`` ground truth, drawn as a white contour.
    """
    if image.shape != amap.shape or image.ndim != 3:
        raise ValueError(f"image and map must be the same 3D shape, got {image.shape} and {amap.shape}")
    peak_xyz = np.unravel_index(int(np.argmax(amap)), amap.shape)
    rows = []
    for axis in MOSAIC_ROWS:
        img_s = axis_slices(torch.from_numpy(np.ascontiguousarray(image)), axis).numpy()
        map_s = axis_slices(torch.from_numpy(np.ascontiguousarray(amap)), axis).numpy()
        mask_s = None if mask is None else axis_slices(torch.from_numpy(np.ascontiguousarray(mask)), axis).numpy()
        tiles = []
        for pos in slice_positions(image.shape[axis], peak_xyz[axis], columns):
            grey = (np.clip(img_s[pos], 0.0, 1.0) * 255).astype(np.uint8)
            rgb = np.repeat(grey[..., None], 3, axis=2)
            tile = overlay(rgb, map_s[pos], scale, mask=None if mask_s is None else mask_s[pos])
            tiles.append(np.asarray(tile))
        rows.append(np.concatenate(tiles, axis=1))
    return Image.fromarray(np.concatenate(rows, axis=0))
