"""Helpers the readers and builders share: listing images, finding masks and categories, saving PNGs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from codegraph_ad.errors import InputError
from codegraph_ad.io.atomic import write_png
from codegraph_ad.io.images import IMAGE_SUFFIXES

GOOD = "good"
# Folder names that hold ground truth, never test images (so a reader never treats them as a defect).
MASK_FOLDERS = ("ground_truth", "masks")


def image_files(folder: Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name; hidden files are ignored."""
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES)


def subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


class MaskIndex:
    """Mask files of one ground-truth folder, looked up by their image's stem.

    Layouts disagree on mask names (``000_mask.png`` in MVTec AD and MPDD, ``000.png`` in
    BTAD and VisA, ``.bmp`` in BTAD 03), so one index accepts ``<stem>`` and ``<stem>_mask``
    with any image suffix.
    """

    def __init__(self, folder: Path):
        self.folder = folder
        self._by_stem: dict[str, Path] = {}
        if folder.is_dir():
            for p in image_files(folder):
                self._by_stem.setdefault(p.stem, p)

    def find(self, stem: str) -> Path | None:
        return self._by_stem.get(f"{stem}_mask") or self._by_stem.get(stem)


def category_dirs(root: Path, marker: str = "test", max_depth: int = 2) -> dict[str, Path]:
    """Category name -> folder for every folder below ``root`` holding ``marker/``.

    Depth 2 covers datasets that group categories by domain (``<domain>/<category>``); such a
    category is named ``domain/category``. ``root`` itself counts when it holds ``marker/``.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: dataset folder does not exist")
    if (root / marker).is_dir():
        return {root.name: root}
    found: dict[str, Path] = {}
    frontier = [root]
    for _ in range(max_depth):
        nxt = []
        for folder in frontier:
            for sub in subfolders(folder):
                if (sub / marker).is_dir():
                    found[sub.relative_to(root).as_posix()] = sub
                else:
                    nxt.append(sub)
        frontier = nxt
    return dict(sorted(found.items()))


def resolve_category(root: Path, category: str, marker: str = "test") -> Path:
    """The folder of ``category`` under ``root``; the error lists the categories found."""
    found = category_dirs(root, marker)
    if category in found:
        return found[category]
    by_leaf = [p for name, p in found.items() if name.rsplit("/", 1)[-1] == category]
    if len(by_leaf) == 1:
        return by_leaf[0]
    known = ", ".join(found) or "none"
    raise InputError(f"{root}: no category {category!r} (folders holding '{marker}/' found: {known})")


def save_png(path: Path, array: np.ndarray) -> Path:
    """Write a uint8 ``(H, W)`` or ``(H, W, 3)`` array as PNG, atomically."""
    return write_png(path, Image.fromarray(np.ascontiguousarray(array)))


def check_build_folder(out: Path, sources: list[Path], kind: str, label: str, overwrite: bool) -> bool:
    """Refuse to build over a source dataset or over a folder this builder did not make.

    Returns True when ``out`` holds an earlier build of ``kind`` that may be replaced.
    ``label`` names the build in messages (e.g. "SynCA").
    """
    import json

    o = out.resolve()
    for src in sources:
        s = src.resolve()
        if o == s or s in o.parents or o in s.parents:
            raise InputError(f"{out}: the output folder must be outside the source {src} (and not contain it)")
    if not (out.exists() and any(out.iterdir())):
        return False
    manifest = out / "manifest.json"
    if not manifest.is_file():
        raise InputError(f"{out}: folder is not empty and holds no {label} manifest.json; choose an empty folder")
    if not overwrite:
        raise InputError(f"{out}: holds an earlier {label} build; pass --overwrite to replace it")
    try:
        found = json.loads(manifest.read_text()).get("kind")
    except (OSError, ValueError, AttributeError):
        found = None
    if found != kind:
        raise InputError(f"{out}: its manifest.json is not a {label} build; choose another folder")
    return True
