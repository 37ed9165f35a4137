"""BTAD layout: ``<01|02|03>/test/ok|ko`` with masks in ``ground_truth/ko/<stem>.png|.bmp``."""

from __future__ import annotations

from pathlib import Path

from codegraph_ad.datasets._layout import GOOD, MaskIndex, image_files
from codegraph_ad.datasets.base import LabelledSample
from codegraph_ad.errors import InputError

NORMAL_FOLDER = "ok"
ANOMALOUS_FOLDER = "ko"


def read_btad_category(category_dir: str | Path, split: str = "test") -> list[LabelledSample]:
    """Samples of one BTAD product: ``ok`` images are normal (defect name ``good``), ``ko`` anomalous."""
    root = Path(category_dir)
    split_dir = root / split
    if not (split_dir / NORMAL_FOLDER).is_dir() and not (split_dir / ANOMALOUS_FOLDER).is_dir():
        raise InputError(f"{root}: not a BTAD product folder (missing '{split}/ok/' and '{split}/ko/')")
    samples: list[LabelledSample] = []
    if (split_dir / NORMAL_FOLDER).is_dir():
        samples += [LabelledSample(p, 0, GOOD) for p in image_files(split_dir / NORMAL_FOLDER)]
    if (split_dir / ANOMALOUS_FOLDER).is_dir():
        masks = MaskIndex(root / "ground_truth" / ANOMALOUS_FOLDER)
        for p in image_files(split_dir / ANOMALOUS_FOLDER):
            mask = masks.find(p.stem)
            samples.append(LabelledSample(p, 1, ANOMALOUS_FOLDER, (mask,) if mask else ()))
    if not samples:
        raise InputError(f"{split_dir}: no images found")
    return samples
