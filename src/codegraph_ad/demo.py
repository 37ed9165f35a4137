"""Demo images made on the fly from scikit-image's bundled textures, so the first run needs no data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from codegraph_ad.io.atomic import write_png


def make_demo_images(folder: str | Path, n_normal: int = 14, seed: int = 0, size: int = 256) -> list[Path]:
    """Write ``n_normal`` defect-free texture crops and 3 with synthetic defects.

    Defects: a dark scratch, a bright stain and a patch of a foreign texture; file names
    say which images are anomalous (``defect_*``) so a user can check the ranking.
    """
    from skimage import data

    rng = np.random.default_rng(seed)
    texture = data.grass().astype(np.float32)
    foreign = data.brick().astype(np.float32)
    tint = np.array([0.55, 0.85, 0.45], dtype=np.float32)
    folder = Path(folder)
    paths: list[Path] = []

    def crop(src: np.ndarray) -> np.ndarray:
        y, x = rng.integers(0, src.shape[0] - size, 2)
        return src[y : y + size, x : x + size]

    def to_rgb(gray: np.ndarray) -> Image.Image:
        rgb = np.clip(gray[..., None] * tint[None, None, :], 0, 255).astype(np.uint8)
        return Image.fromarray(rgb)

    for i in range(n_normal):
        paths.append(write_png(folder / f"normal_{i:02d}.png", to_rgb(crop(texture))))

    scratch = to_rgb(crop(texture))
    draw = ImageDraw.Draw(scratch)
    draw.line([(40, 60), (200, 170)], fill=(20, 20, 20), width=7)
    paths.append(write_png(folder / "defect_scratch.png", scratch))

    stain = crop(texture).copy()
    yy, xx = np.mgrid[:size, :size]
    blob = ((yy - 150) ** 2 + (xx - 90) ** 2) < 28**2
    stain[blob] = np.clip(stain[blob] * 0.3 + 200, 0, 255)
    paths.append(write_png(folder / "defect_stain.png", to_rgb(stain)))

    patch = crop(texture).copy()
    patch[60:140, 110:200] = np.clip(crop(foreign)[:80, :90] * 1.3, 0, 255)
    paths.append(write_png(folder / "defect_foreign.png", to_rgb(patch)))
    return paths
