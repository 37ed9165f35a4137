"""Generic labelled folder: ``good/`` normal, every other folder anomalous, optional ``masks/`` mirror.

    category/
      good/*.png                      normal
      scratch/*.png, dent/*.png       anomalous; the folder name is the defect type
      masks/scratch/<stem>.png        optional masks (``<stem>_mask.png`` also accepted)

Images may sit in sub-folders of a defect folder; the defect is the top folder's name.
"""

from __future__ import annotations

from pathlib import Path

from codegraph_ad.datasets._layout import GOOD, MASK_FOLDERS, MaskIndex, subfolders
from codegraph_ad.datasets.base import LabelledSample
from codegraph_ad.errors import InputError
from codegraph_ad.io.images import discover_images


def is_labelled_folder(folder: Path) -> bool:
    return (folder / GOOD).is_dir()


def read_labelled_folder(folder: str | Path) -> list[LabelledSample]:
    """Samples of one labelled folder, ``good`` first, then defects by name."""
    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"{root}: folder does not exist")
    defect_dirs = [p for p in subfolders(root) if p.name not in MASK_FOLDERS]
    if not defect_dirs:
        raise InputError(f"{root}: no sub-folders; expected 'good/' for normal images and one folder per defect")
    mask_root = next((root / m for m in MASK_FOLDERS if (root / m).is_dir()), None)
    samples: list[LabelledSample] = []
    for d in sorted(defect_dirs, key=lambda p: (p.name != GOOD, p.name)):
        images = discover_images(d)
        if d.name == GOOD:
            samples += [LabelledSample(p, 0, GOOD) for p in images]
            continue
        indexes: dict[Path, MaskIndex] = {}
        for p in images:
            mask = _find_mask(indexes, mask_root, d, p) if mask_root is not None else None
            samples.append(LabelledSample(p, 1, d.name, (mask,) if mask else ()))
    if not samples:
        raise InputError(f"{root}: no images found")
    return samples


def _find_mask(indexes: dict[Path, MaskIndex], mask_root: Path, defect_dir: Path, image: Path) -> Path | None:
    """The mask mirroring ``image``: same relative sub-folder under ``masks/<defect>/``."""
    folder = mask_root / defect_dir.name / image.parent.relative_to(defect_dir)
    if folder not in indexes:
        indexes[folder] = MaskIndex(folder)
    return indexes[folder].find(image.stem)
