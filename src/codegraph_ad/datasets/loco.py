"""MVTec LOCO AD layout: ``test/good|logical_anomalies|structural_anomalies`` and a FOLDER of masks per image.

Ground truth of ``test/<defect>/<stem>.png`` is ``ground_truth/<defect>/<stem>/000.png, 001.png, ...``
(one file per defect region); the evaluation takes their union.
"""

from __future__ import annotations

from pathlib import Path

from codegraph_ad.datasets._layout import GOOD, image_files, subfolders
from codegraph_ad.datasets.base import LabelledSample
from codegraph_ad.errors import InputError


def read_loco_category(category_dir: str | Path, split: str = "test") -> list[LabelledSample]:
    """Samples of one LOCO category's split, sorted by defect then file name."""
    root = Path(category_dir)
    split_dir = root / split
    if not split_dir.is_dir():
        raise InputError(f"{root}: not an MVTec LOCO category (missing folder '{split}/')")
    samples: list[LabelledSample] = []
    for defect_dir in subfolders(split_dir):
        defect = defect_dir.name
        for image_path in image_files(defect_dir):
            if defect == GOOD:
                samples.append(LabelledSample(image_path, 0, defect))
                continue
            mask_dir = root / "ground_truth" / defect / image_path.stem
            masks = tuple(image_files(mask_dir)) if mask_dir.is_dir() else ()
            samples.append(LabelledSample(image_path, 1, defect, masks))
    if not samples:
        raise InputError(f"{split_dir}: no images found")
    return samples
