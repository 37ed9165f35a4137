"""Masks (pseudo or real) -> patch-grid training targets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from codegraph_ad.io.masks import grid_shares, union_mask


def grid_target(mask: np.ndarray | None, grid: tuple[int, int]) -> torch.Tensor:
    """Anomalous share of each patch: ``(H, W)`` bool mask -> ``(h * w,)`` float32 in [0, 1].

    The mask is squashed to the square model input exactly as the image is, so the cell
    (i, j) of the grid covers the same pixels as patch (i, j). None means a normal image.
    """
    h, w = grid
    if mask is None:
        return torch.zeros(h * w, dtype=torch.float32)
    return torch.from_numpy(grid_shares(mask, (h, w)))


def load_grid_target(mask_path: Path | None, image_shape: tuple[int, int], grid: tuple[int, int]) -> torch.Tensor:
    """``grid_target`` of a mask file (resized to its image if needed); None -> all normal."""
    if mask_path is None:
        return grid_target(None, grid)
    return grid_target(union_mask([mask_path], image_shape), grid)
