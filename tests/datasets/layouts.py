"""Tiny synthetic datasets written in each official layout (no dataset file is committed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

SIZE = 32


def texture(seed: int, size: int = SIZE, width: int | None = None) -> np.ndarray:
    """A smooth random RGB texture, (size, width or size, 3) uint8."""
    rng = np.random.default_rng(seed)
    w = width or size
    base = rng.normal(128, 20, (size // 4 + 1, w // 4 + 1, 3))
    img = np.kron(base, np.ones((4, 4, 1)))[:size, :w]
    return np.clip(img, 0, 255).astype(np.uint8)


def square_mask(y: int, x: int, side: int, size: int = SIZE, width: int | None = None) -> np.ndarray:
    m = np.zeros((size, width or size), dtype=bool)
    m[y : y + side, x : x + side] = True
    return m


def with_defect(img: np.ndarray, mask: np.ndarray) -> np.ndarray:
    out = img.copy()
    out[mask] = (20, 20, 20)
    return out


def save(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    Image.fromarray(array).save(path)
    return path


def mvtec_category(root: Path, n_good: int = 3, defects: dict[str, int] | None = None, size: int = SIZE,
                   seed: int = 0, mask_suffix: str = "_mask") -> Path:
    """``root/test/good``, ``root/test/<defect>``, ``root/ground_truth/<defect>/<stem>_mask.png``."""
    defects = defects if defects is not None else {"crack": 2, "hole": 2}
    k = seed * 1000
    for i in range(n_good):
        save(root / "test" / "good" / f"{i:03d}.png", texture(k + i, size))
    for d_i, (defect, n) in enumerate(sorted(defects.items())):
        for i in range(n):
            mask = square_mask(4 + 3 * i, 6 + 2 * d_i, max(4, size // 5), size)
            save(root / "test" / defect / f"{i:03d}.png", with_defect(texture(k + 100 * (d_i + 1) + i, size), mask))
            save(root / "ground_truth" / defect / f"{i:03d}{mask_suffix}.png", mask)
    return root
