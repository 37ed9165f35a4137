"""The pictures of one image for the report: input, anomaly map, overlay, excluded patches.

Each view is made at most ``size`` pixels on its long side straight after decoding, so a
900 x 900 input costs one decode and one resize however many views use it.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from codegraph_ad.errors import InputError
from codegraph_ad.io.images import load_image_rgb
from codegraph_ad.io.masks import mask_files, union_mask
from codegraph_ad.report.overlay import colorize, overlay, tint_cells
from codegraph_ad.io.run_folder import RunFolder

VIEW_NAMES = (("input", "input"), ("map", "anomaly map"), ("overlay", "overlay"), ("excluded", "excluded patches"))


@dataclass
class ImageViews:
    """PIL images (None when the run folder cannot provide one)."""

    input: Image.Image | None
    map: Image.Image | None
    overlay: Image.Image | None
    excluded: Image.Image | None

    def thumbnail_source(self) -> Image.Image | None:
        return self.overlay or self.input or self.map

    def as_dict(self) -> dict[str, Image.Image | None]:
        return {"input": self.input, "map": self.map, "overlay": self.overlay, "excluded": self.excluded}


def fitted_size(hw: tuple[int, int], size: int) -> tuple[int, int]:
    """(width, height) with the long side at most ``size``, aspect kept, never upscaled."""
    h, w = hw
    f = min(1.0, size / max(h, w))
    return max(1, round(w * f)), max(1, round(h * f))


def encode(img: Image.Image, fmt: str = "JPEG", quality: int = 80) -> bytes:
    buf = io.BytesIO()
    if fmt == "JPEG":
        img.convert("RGB").save(buf, format="JPEG", quality=quality, optimize=True)
    else:
        img.save(buf, format=fmt, optimize=True)
    return buf.getvalue()


def data_uri(data: bytes, fmt: str = "JPEG") -> str:
    return f"data:image/{fmt.lower()};base64," + base64.b64encode(data).decode("ascii")


def thumbnail(img: Image.Image, size: int) -> Image.Image:
    out = img.copy()
    out.thumbnail((size, size), Image.BILINEAR)
    return out


def _resize_map(amap: np.ndarray, wh: tuple[int, int]) -> np.ndarray:
    pil = Image.fromarray(np.ascontiguousarray(amap, dtype=np.float32))
    return np.asarray(pil.resize(wh, Image.BILINEAR), dtype=np.float32)


def _flat(amap: np.ndarray) -> np.ndarray:
    """A 2D picture of a map: a volume's map is shown as its maximum projection along axis 0."""
    return amap.max(axis=0) if amap.ndim == 3 else amap


def _anomaly_map(run: RunFolder, i: int, wh: tuple[int, int]) -> np.ndarray | None:
    path = run.map_file(run.names[i])
    if path.exists():
        return _resize_map(_flat(np.load(path, allow_pickle=False)), wh)
    if run.patch_scores is not None:
        return _resize_map(_flat(run.patch_scores[i].reshape(run.grid)), wh)
    return None


def _mask(run: RunFolder, i: int, full_hw: tuple[int, int], wh: tuple[int, int]) -> np.ndarray | None:
    """Union of the image's ground-truth masks at the view size, or None without masks."""
    input_path = run.input_file(i)
    files = mask_files(run.rows[i], input_path) if input_path is not None else []
    if not files:
        return None
    try:
        return union_mask(files, full_hw, (wh[1], wh[0]), resample="nearest")
    except InputError:  # an unreadable mask costs the outline, not the report
        return None


def image_views(run: RunFolder, i: int, scale: tuple[float, float], size: int) -> ImageViews:
    """The four views of image ``i`` at most ``size`` px on the long side."""
    name = run.names[i]
    sizes = run.manifest.original_sizes or []
    full_hw = tuple(sizes[i])[-2:] if i < len(sizes) else run.grid[-2:]
    wh = fitted_size(full_hw, size)
    input_path = run.input_file(i)
    rgb = None
    if input_path is not None:
        try:
            rgb = np.asarray(Image.fromarray(load_image_rgb(input_path)).resize(wh, Image.BILINEAR))
        except InputError:
            rgb = None
    amap = _anomaly_map(run, i, wh)
    map_img = colorize(amap, scale) if amap is not None else None
    over = None
    if run.overlay_file(name).exists():
        with Image.open(run.overlay_file(name)) as im:
            over = im.convert("RGB").resize(wh, Image.BILINEAR)
    elif rgb is not None and amap is not None:
        over = overlay(rgb, amap, scale, mask=_mask(run, i, full_hw, wh))
    excluded = None
    if run.excluded is not None and run.excluded[i].any() and len(run.grid) == 2:
        base = rgb if rgb is not None else (np.asarray(map_img) if map_img is not None else None)
        if base is not None:
            excluded = tint_cells(base, run.excluded[i].reshape(run.grid))
    return ImageViews(Image.fromarray(rgb) if rgb is not None else None, map_img, over, excluded)
