"""VisA layout: ``<object>/Data/Images/{Normal,Anomaly}`` + ``Data/Masks/Anomaly``, split by ``split_csv/1cls.csv``.

The CSV (columns ``object,split,label,image,mask``; paths relative to the VisA root) defines
the official test split. Without it every image of the object is used, with a warning,
because the normal images are then not split into train and test.
"""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

from codegraph_ad.datasets._layout import GOOD, MaskIndex, image_files, subfolders
from codegraph_ad.datasets.base import LabelledSample
from codegraph_ad.errors import InputError

SPLIT_CSV = Path("split_csv") / "1cls.csv"
ANOMALY = "anomaly"
_COLUMNS = ("object", "split", "label", "image", "mask")


def visa_objects(root: str | Path) -> list[str]:
    """Object names: from the split CSV when present, else folders holding ``Data/Images``."""
    root = Path(root)
    if (root / SPLIT_CSV).is_file():
        return sorted({row["object"] for row in _read_csv(root)})
    if not root.is_dir():
        raise InputError(f"{root}: dataset folder does not exist")
    return [p.name for p in subfolders(root) if (p / "Data" / "Images").is_dir()]


def read_visa_category(root: str | Path, category: str, split: str = "test") -> list[LabelledSample]:
    """Samples of one VisA object, normal first, each group sorted by file name."""
    root = Path(root)
    if (root / SPLIT_CSV).is_file():
        samples = _from_csv(root, category, split)
    else:
        samples = _from_folders(root, category)
    return sorted(samples, key=lambda s: (s.label, s.image_path.name))


def _read_csv(root: Path) -> list[dict[str, str]]:
    path = root / SPLIT_CSV
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in _COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise InputError(f"{path}: missing column(s) {', '.join(missing)}; expected {','.join(_COLUMNS)}")
        return [{k: (v or "").strip() for k, v in row.items()} for row in reader]


def _from_csv(root: Path, category: str, split: str) -> list[LabelledSample]:
    rows = [r for r in _read_csv(root) if r["object"] == category and r["split"] == split]
    if not rows:
        raise InputError(f"{root / SPLIT_CSV}: no rows for object {category!r} and split {split!r} "
                         f"(objects: {', '.join(visa_objects(root))})")
    samples = []
    for r in rows:
        image = root / r["image"]
        if not image.is_file():
            raise InputError(f"{image}: listed in {SPLIT_CSV} but missing")
        if r["label"] == "normal":
            samples.append(LabelledSample(image, 0, GOOD))
        elif r["label"] == ANOMALY:
            mask = root / r["mask"] if r["mask"] else None
            if mask is not None and not mask.is_file():
                raise InputError(f"{mask}: listed in {SPLIT_CSV} but missing")
            samples.append(LabelledSample(image, 1, ANOMALY, (mask,) if mask else ()))
        else:
            raise InputError(f"{root / SPLIT_CSV}: label must be 'normal' or 'anomaly', got {r['label']!r}")
    return samples


def _from_folders(root: Path, category: str) -> list[LabelledSample]:
    images = root / category / "Data" / "Images"
    if not images.is_dir():
        raise InputError(f"{root}: no VisA object {category!r} (missing '{category}/Data/Images/')")
    warnings.warn(f"{root / SPLIT_CSV} not found: using every image of {category!r}, "
                  "not the official test split", stacklevel=3)
    samples = []
    if (images / "Normal").is_dir():
        samples += [LabelledSample(p, 0, GOOD) for p in image_files(images / "Normal")]
    if (images / "Anomaly").is_dir():
        masks = MaskIndex(root / category / "Data" / "Masks" / "Anomaly")
        for p in image_files(images / "Anomaly"):
            mask = masks.find(p.stem)
            samples.append(LabelledSample(p, 1, ANOMALY, (mask,) if mask else ()))
    if not samples:
        raise InputError(f"{images}: no images found")
    return samples
