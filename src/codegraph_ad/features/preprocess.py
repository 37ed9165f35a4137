"""Turn decoded images into the backbone's square, normalised input."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image


def to_model_input(
    image_rgb: np.ndarray, size: int, mean: tuple[float, ...], std: tuple[float, ...]
) -> torch.Tensor:
    """``(H, W, 3)`` uint8 -> ``(3, size, size)`` float32, squashed to a square like MuSc.

    Squashing (no crop) keeps every pixel of the part in view, so a defect at the border
    is never cut away.
    """
    img = Image.fromarray(image_rgb).resize((size, size), Image.BICUBIC)
    x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)
    m = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    return (x - m) / s
