"""MVTec AD layout: ``<category>/test/<defect>/*.png`` and ``ground_truth/<defect>/*_mask.png``."""

from __future__ import annotations

from pathlib import Path

from codegraph_ad.datasets.base import LabelledSample
from codegraph_ad.errors import InputError
from codegraph_ad.io.images import IMAGE_SUFFIXES
from codegraph_ad.io.masks import mvtec_mask_file

GOOD = "good"


def read_mvtec_category(category_dir: str | Path, split: str = "test") -> list[LabelledSample]:
    """Samples of one category's split, sorted by defect then file name.

    Anomalous images without a mask file get an empty mask tuple (image-level labels only).
    """
    root = Path(category_dir)
    split_dir = root / split
    if not split_dir.is_dir():
        raise InputError(f"{root}: not an MVTec AD category (missing folder '{split}/')")
    samples: list[LabelledSample] = []
    for defect_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
        defect = defect_dir.name
        for image_path in sorted(defect_dir.iterdir()):
            if image_path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            if defect == GOOD:
                samples.append(LabelledSample(image_path, 0, defect))
                continue
            mask = mvtec_mask_file(root, defect, image_path.stem)
            samples.append(LabelledSample(image_path, 1, defect, (mask,) if mask.exists() else ()))
    if not samples:
        raise InputError(f"{split_dir}: no images found")
    return samples
