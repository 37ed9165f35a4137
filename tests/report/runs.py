"""Small run folders for the report and analysis tests: generated images, real pipeline.

A category in the MVTec AD layout: smooth random textures; the anomalous images carry the
same bright square at the same place (a consistent anomaly) with a mask file each.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

from codegraph_ad.config import FeatureConfig, RunConfig

SMALL = RunConfig(features=FeatureConfig(image_size=56))


def _texture(rng: np.random.Generator, size: int) -> np.ndarray:
    noise = gaussian_filter(rng.standard_normal((size, size, 3)), sigma=(2, 2, 0))
    noise = (noise - noise.min()) / (np.ptp(noise) + 1e-9)
    return (40 + 150 * noise).astype(np.uint8)


def make_category(root: Path, n_good: int = 5, n_bad: int = 3, size: int = 64, seed: int = 0) -> Path:
    """``root/cat`` with ``test/good``, ``test/spot`` and ``ground_truth/spot`` masks."""
    rng = np.random.default_rng(seed)
    cat = Path(root) / "cat"
    (cat / "test" / "good").mkdir(parents=True)
    (cat / "test" / "spot").mkdir(parents=True)
    (cat / "ground_truth" / "spot").mkdir(parents=True)
    for i in range(n_good):
        Image.fromarray(_texture(rng, size)).save(cat / "test" / "good" / f"{i:03d}.png")
    mask = np.zeros((size, size), dtype=np.uint8)
    lo, hi = size // 4, size // 4 + size // 3
    mask[lo:hi, lo:hi] = 255
    for i in range(n_bad):
        img = _texture(rng, size)
        img[mask > 0] = (250, 240, 30)
        Image.fromarray(img).save(cat / "test" / "spot" / f"{i:03d}.png")
        Image.fromarray(mask).save(cat / "ground_truth" / "spot" / f"{i:03d}_mask.png")
    return cat
