"""MANTA: each test image tiles five views of one tiny object; the pipeline needs single views.

Layout read (MVTec-like per category): ``test/<defect>/<stem>.<ext>`` with the tiled image
and ``ground_truth/<defect>/<stem>[_mask].<ext>`` tiled the same way. The views are cut
into equal strips along the image's longer side (``MantaConfig.axis`` overrides this).

View selection (thesis appendix A.2, SPEC section 11): a normal image gives its middle view;
an anomalous image gives the view with the largest mask area, since the defect may be
invisible from some viewpoints (ties: the first such view; no mask at all: the middle view).

The chosen views are written as PNG files in an MVTec-layout work folder (the data folder is
never written to), with ``views.json`` recording each choice; a later call with unchanged
sources reuses them.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from codegraph_ad.config import documented
from codegraph_ad.datasets._layout import GOOD, MaskIndex, image_files, save_png, subfolders
from codegraph_ad.datasets.base import LabelledSample
from codegraph_ad.errors import InputError
from codegraph_ad.io.atomic import write_json
from codegraph_ad.io.images import load_image_rgb
from codegraph_ad.io.masks import mvtec_mask_file, union_mask

VIEWS_RECORD = "views.json"


@dataclass(frozen=True)
class MantaConfig:
    """How a MANTA image is tiled."""

    n_views: int = documented(5, "views per tiled MANTA image")  # MANTA: five cameras per object
    axis: Literal["auto", "horizontal", "vertical"] = documented(
        "auto", "direction along which the views are tiled (auto: the image's longer side)")


@dataclass(frozen=True)
class MantaView:
    """One chosen view: the written single-view sample and where it came from."""

    sample: LabelledSample
    source: LabelledSample
    view: int
    view_areas: tuple[int, ...]  # anomalous pixels per view (all 0 for normal images)

    @property
    def mask_area(self) -> int:
        return self.view_areas[self.view]


def read_manta_tiled(category_dir: str | Path, split: str = "test") -> list[LabelledSample]:
    """The tiled (multi-view) samples of one category, as stored."""
    root = Path(category_dir)
    split_dir = root / split
    if not split_dir.is_dir():
        raise InputError(f"{root}: not a MANTA category (missing folder '{split}/')")
    samples: list[LabelledSample] = []
    for defect_dir in subfolders(split_dir):
        defect = defect_dir.name
        masks = MaskIndex(root / "ground_truth" / defect)
        for p in image_files(defect_dir):
            if defect == GOOD:
                samples.append(LabelledSample(p, 0, defect))
            else:
                mask = masks.find(p.stem)
                samples.append(LabelledSample(p, 1, defect, (mask,) if mask else ()))
    if not samples:
        raise InputError(f"{split_dir}: no images found")
    return samples


def view_bounds(length: int, n_views: int) -> list[tuple[int, int]]:
    """``[start, stop)`` of each of ``n_views`` near-equal strips of ``length`` pixels."""
    if n_views < 1 or length < n_views:
        raise InputError(f"cannot cut {length} pixels into {n_views} views")
    edges = [round(i * length / n_views) for i in range(n_views + 1)]
    return list(zip(edges[:-1], edges[1:]))


def split_axis(shape: tuple[int, int], config: MantaConfig) -> int:
    """Array axis the views are tiled along: 1 (side by side) or 0 (stacked)."""
    if config.axis == "horizontal":
        return 1
    if config.axis == "vertical":
        return 0
    if config.axis != "auto":
        raise InputError(f"MANTA axis must be 'auto', 'horizontal' or 'vertical', got {config.axis!r}")
    return 1 if shape[1] >= shape[0] else 0


def split_views(array: np.ndarray, n_views: int, axis: int) -> list[np.ndarray]:
    """Cut ``(H, W[, C])`` into ``n_views`` strips along ``axis``."""
    return [np.take(array, np.arange(a, b), axis=axis) for a, b in view_bounds(array.shape[axis], n_views)]


def choose_view(label: int, view_areas: tuple[int, ...]) -> int:
    """Middle view for normal images; largest-mask view for anomalous ones (middle when no mask)."""
    middle = len(view_areas) // 2
    if label == 0 or max(view_areas) == 0:
        return middle
    return int(np.argmax(view_areas))


def extract_manta_views(category_dir: str | Path, out_dir: str | Path,
                        config: MantaConfig = MantaConfig()) -> list[MantaView]:
    """Write the chosen view of every tiled test image into ``out_dir`` (MVTec layout)."""
    sources = read_manta_tiled(category_dir)
    out = Path(out_dir)
    if _resolved_inside(out, Path(category_dir)):
        raise InputError(f"{out}: the views folder must not lie inside the data folder {category_dir}")
    cached = _load_record(out, sources, config)
    if cached is not None:
        return cached
    views = [_extract_one(s, out, config) for s in sources]
    write_json(out / VIEWS_RECORD, {"config": asdict(config), "sources": [_fingerprint(s) for s in sources],
                                    "views": [_view_to_dict(v) for v in views]})
    return views


def read_manta_category(category_dir: str | Path, work_dir: str | Path | None = None,
                        config: MantaConfig = MantaConfig()) -> list[LabelledSample]:
    """Single-view samples of one MANTA category (views written to ``work_dir``, see module doc)."""
    out = Path(work_dir) if work_dir is not None else default_views_dir(Path(category_dir))
    return [v.sample for v in extract_manta_views(category_dir, out, config)]


def default_views_dir(category_dir: Path) -> Path:
    """A per-category cache folder outside the (possibly read-only) data folder."""
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "codegraph_ad" / "manta_views"
    digest = hashlib.sha1(str(category_dir.resolve()).encode()).hexdigest()[:10]
    return base / f"{category_dir.name}-{digest}"


def _extract_one(source: LabelledSample, out: Path, config: MantaConfig) -> MantaView:
    image = load_image_rgb(source.image_path)
    axis = split_axis(image.shape[:2], config)
    mask = None
    if source.mask_paths:
        mask = union_mask(source.mask_paths, image.shape[:2])
        areas = tuple(int(v.sum()) for v in split_views(mask, config.n_views, axis))
    else:
        areas = (0,) * config.n_views
    view = choose_view(source.label, areas)
    a, b = view_bounds(image.shape[axis], config.n_views)[view]
    image_path = out / "test" / source.defect / f"{source.image_path.stem}.png"
    save_png(image_path, np.take(image, np.arange(a, b), axis=axis))
    masks: tuple[Path, ...] = ()
    if mask is not None:
        mask_path = mvtec_mask_file(out, source.defect, source.image_path.stem)
        view_mask = np.take(mask, np.arange(a, b), axis=axis)
        save_png(mask_path, view_mask.astype(np.uint8) * 255)
        masks = (mask_path,)
    return MantaView(LabelledSample(image_path, source.label, source.defect, masks), source, view, areas)


def _fingerprint(s: LabelledSample) -> dict:
    files = [s.image_path, *s.mask_paths]
    return {"image": str(s.image_path), "masks": [str(m) for m in s.mask_paths],
            "stat": [[p.stat().st_size, p.stat().st_mtime_ns] for p in files]}


def _view_to_dict(v: MantaView) -> dict:
    return {"image": str(v.sample.image_path), "masks": [str(m) for m in v.sample.mask_paths],
            "label": v.sample.label, "defect": v.sample.defect, "view": v.view, "view_areas": list(v.view_areas)}


def _load_record(out: Path, sources: list[LabelledSample], config: MantaConfig) -> list[MantaView] | None:
    """Views of an earlier extraction, if it used these exact sources and settings."""
    path = out / VIEWS_RECORD
    if not path.is_file():
        return None
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if rec.get("config") != asdict(config) or rec.get("sources") != [_fingerprint(s) for s in sources]:
        return None
    views = []
    for src, v in zip(sources, rec["views"], strict=True):
        sample = LabelledSample(Path(v["image"]), int(v["label"]), v["defect"], tuple(Path(m) for m in v["masks"]))
        if not sample.image_path.is_file() or not all(m.is_file() for m in sample.mask_paths):
            return None
        views.append(MantaView(sample, src, int(v["view"]), tuple(v["view_areas"])))
    return views


def _resolved_inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False
