"""Image discovery and decoding into uint8 RGB, whatever the file's mode or bit depth."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from codegraph_ad.errors import InputError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})
# Larger than any inspection camera; stops decompression bombs before decoding.
MAX_PIXELS = 20_000 * 20_000


def discover_images(folder: str | os.PathLike[str]) -> list[Path]:
    """All image files below ``folder`` (recursive, symlink loops safe), sorted by path."""
    root = Path(folder)
    if not root.exists():
        raise InputError(f"{root}: folder does not exist")
    if not root.is_dir():
        raise InputError(f"{root}: not a folder")
    found: list[Path] = []
    seen_dirs: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        st = os.stat(dirpath)
        key = (st.st_dev, st.st_ino)
        if key in seen_dirs:  # symlink loop or a folder linked twice
            dirnames[:] = []
            continue
        seen_dirs.add(key)
        dirnames.sort()
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            if Path(name).suffix.lower() in IMAGE_SUFFIXES:
                found.append(Path(dirpath) / name)
    return sorted(found)


def _to_uint8(array: np.ndarray) -> np.ndarray:
    """Scale any integer or float image to uint8 by its dtype range (floats: [0,1] or min-max)."""
    if array.dtype == np.uint8:
        return array
    if array.dtype == bool:
        return array.astype(np.uint8) * 255
    if np.issubdtype(array.dtype, np.integer):
        info = np.iinfo(array.dtype)
        hi = info.max if array.max(initial=0) > 255 else 255
        return np.clip(array.astype(np.float64) / hi * 255.0, 0, 255).round().astype(np.uint8)
    arr = array.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError("image holds NaN or infinite values")
    lo, hi = float(arr.min(initial=0.0)), float(arr.max(initial=0.0))
    if lo >= 0.0 and hi <= 1.0:
        scaled = arr
    else:
        scaled = (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
    return np.clip(scaled * 255.0, 0, 255).round().astype(np.uint8)


def load_image_rgb(path: str | os.PathLike[str]) -> np.ndarray:
    """Decode ``path`` to ``(H, W, 3)`` uint8 RGB, honouring EXIF rotation.

    Grayscale is replicated to 3 channels; alpha is composited on black; 16-bit and
    float images are rescaled. Raises InputError naming the file on any failure.
    """
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise InputError(f"{path}: empty file (0 bytes)")
        with Image.open(path) as img:
            w, h = img.size
            if w * h > MAX_PIXELS:
                raise InputError(f"{path}: image of {w}x{h} pixels exceeds the {MAX_PIXELS} pixel limit")
            img.load()
            img = ImageOps.exif_transpose(img)
            return _pil_to_rgb(img)
    except InputError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise InputError(f"{path}: cannot decode image ({exc.__class__.__name__}: {exc})") from exc


def _pil_to_rgb(img: Image.Image) -> np.ndarray:
    if img.mode in ("RGB",):
        return np.asarray(img, dtype=np.uint8).copy()
    if img.mode in ("P", "PA", "LA", "RGBA", "CMYK", "YCbCr", "L", "1", "LAB", "HSV"):
        if img.mode in ("P", "PA"):
            img = img.convert("RGBA")
        if img.mode in ("RGBA", "LA"):
            rgba = np.asarray(img.convert("RGBA"), dtype=np.float64)
            alpha = rgba[..., 3:4] / 255.0
            return (rgba[..., :3] * alpha).round().astype(np.uint8)
        return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()
    # 16-bit / 32-bit integer and float modes: I;16, I;16B, I, F
    arr = np.asarray(img)
    if arr.ndim == 3 and arr.shape[2] >= 3:
        arr = arr[..., :3]
    gray = _to_uint8(arr)
    if gray.ndim == 2:
        gray = np.repeat(gray[..., None], 3, axis=2)
    return np.ascontiguousarray(gray)


def load_mask(path: str | os.PathLike[str], shape: tuple[int, int]) -> np.ndarray:
    """Binary ``(H, W)`` bool mask: any non-zero pixel is foreground.

    A mask of another size than its image is resized (nearest) with a warning, since
    MVTec-style tools do the same and refusing would lose a whole category.
    """
    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()
            arr = np.asarray(img.convert("L") if img.mode not in ("L", "1", "I;16", "I", "F") else img)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot decode mask ({exc.__class__.__name__}: {exc})") from exc
    if arr.ndim == 3:
        arr = arr[..., 0]
    mask = arr > (arr.max() / 2 if arr.max() > 1 else 0)
    if mask.shape != tuple(shape):
        warnings.warn(f"{path}: mask is {mask.shape[1]}x{mask.shape[0]} but its image is "
                      f"{shape[1]}x{shape[0]}; resized with nearest neighbour", stacklevel=2)
        resized = Image.fromarray(mask.astype(np.uint8) * 255).resize((shape[1], shape[0]), Image.NEAREST)
        mask = np.asarray(resized) > 127
    return mask
