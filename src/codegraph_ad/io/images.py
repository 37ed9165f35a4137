"""Image discovery and decoding into uint8 RGB, whatever the file's mode or bit depth."""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from codegraph_ad.errors import InputError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})
# Larger than any inspection camera; stops decompression bombs before decoding.
MAX_PIXELS = 20_000 * 20_000
_TIFF_SUFFIXES = frozenset({".tif", ".tiff"})


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



def resolve_inputs(inputs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
                   root: str | os.PathLike[str] | None = None) -> tuple[list[Path], Path | None]:
    """The files a command was given and the folder their output names are relative to.

    A folder: every image below it (names relative to it); one file: that file; a list of
    files: those, named relative to ``root`` (None: by their bare file names).
    """
    if isinstance(inputs, (str, os.PathLike)):
        p = Path(inputs)
        if p.is_file():
            return [p], None
        paths = discover_images(p)
        if not paths:
            raise InputError(f"{p}: no image files found (looked for .png .jpg .jpeg .bmp .tif .tiff .webp)")
        return paths, p
    paths = [Path(x) for x in inputs]
    if not paths:
        raise InputError("no images given")
    return paths, Path(root) if root is not None else None

def _to_uint8(array: np.ndarray) -> np.ndarray:
    """Scale an integer or float image to uint8.

    Integers: by the full range of their storage type (16-bit: 65535), so a dark 16-bit
    image stays dark. Floats: [0, 1] and [0, 255] are taken as such, anything else is
    stretched min-max. NaN or infinite pixels are refused rather than guessed.
    """
    if array.dtype == np.uint8:
        return array
    if array.dtype == bool:
        return array.astype(np.uint8) * 255
    if np.issubdtype(array.dtype, np.integer):
        hi = float(np.iinfo(array.dtype).max)
        return np.clip(array.astype(np.float64) / hi * 255.0, 0, 255).round().astype(np.uint8)
    arr = array.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError("image holds NaN or infinite values")
    lo, hi = float(arr.min(initial=0.0)), float(arr.max(initial=0.0))
    if lo >= 0.0 and hi <= 1.0:
        scaled = arr
    elif lo >= 0.0 and hi <= 255.0:
        scaled = arr / 255.0
    else:
        scaled = (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
    return np.clip(scaled * 255.0, 0, 255).round().astype(np.uint8)


def _check_size(path: Path, width: int, height: int) -> None:
    if width * height > MAX_PIXELS:
        raise InputError(
            f"{path}: image header claims {width}x{height} pixels, over the {MAX_PIXELS} pixel limit "
            "(corrupt file or decompression bomb); not decoded"
        )
    if width <= 0 or height <= 0:
        raise InputError(f"{path}: image header claims an empty {width}x{height} image")


def decode_image(data: bytes, path: str | os.PathLike[str]) -> np.ndarray:
    """Decode the bytes of the file ``path`` to ``(H, W, 3)`` uint8 RGB, honouring EXIF rotation.

    Grayscale is replicated to 3 channels; alpha is composited on black; 16-bit and
    float images are rescaled. TIFFs Pillow cannot read (float RGB, float64) go through
    tifffile. Raises InputError naming the file on any failure, whatever the decoder
    raised, so one bad file never surfaces as a traceback.
    """
    path = Path(path)
    if not data:
        raise InputError(f"{path}: empty file (0 bytes)")
    try:
        return _decode_pillow(data, path)
    except InputError:
        raise
    except Exception as exc:  # decoders raise anything on corrupt input
        if path.suffix.lower() in _TIFF_SUFFIXES and data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
            return _decode_tifffile(data, path, exc)
        if isinstance(exc, UnidentifiedImageError):
            raise InputError(f"{path}: not an image in any supported format ({_sniff(data)})") from exc
        raise InputError(f"{path}: cannot decode image ({exc.__class__.__name__}: {exc})") from exc


def load_image_rgb(path: str | os.PathLike[str]) -> np.ndarray:
    """Read and decode ``path`` (see ``decode_image``)."""
    return decode_image(read_file_bytes(path), path)


def read_file_bytes(path: str | os.PathLike[str]) -> bytes:
    """The whole file, with I/O errors (missing, permission, symlink loop) as InputError."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read file ({exc.strerror or exc})") from exc


def _decode_pillow(data: bytes, path: Path) -> np.ndarray:
    try:
        opened = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:  # Pillow's own limit, checked while opening
        raise InputError(f"{path}: too large to decode safely ({exc.args[0].rstrip('.')}); not decoded") from exc
    with opened as img:
        _check_size(path, *img.size)
        img.load()
        img = ImageOps.exif_transpose(img)
        return _pil_to_rgb(img)


def _sniff(data: bytes) -> str:
    """What a file that is not an image seems to be, for the error message."""
    head = data[:512].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html")) or b"<html" in head:
        return "looks like an HTML page, e.g. a failed download"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return f"unknown binary content starting {data[:8].hex(' ')}"
    return "looks like a text file"


def _decode_tifffile(data: bytes, path: Path, pillow_error: Exception) -> np.ndarray:
    try:
        import tifffile

        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            page = tif.pages[0]
            shape = page.shape
            height, width = (shape[0], shape[1]) if len(shape) >= 2 else (0, 0)
            _check_size(path, int(width), int(height))
            arr = page.asarray()
    except InputError:
        raise
    except Exception as exc:
        raise InputError(
            f"{path}: cannot decode image (Pillow: {pillow_error.__class__.__name__}: {pillow_error}; "
            f"tifffile: {exc.__class__.__name__}: {exc})"
        ) from exc
    if arr.ndim == 3 and arr.shape[2] in (1, 3, 4):
        arr = arr[..., :3] if arr.shape[2] >= 3 else arr[..., 0]
    if arr.ndim != 2 and not (arr.ndim == 3 and arr.shape[2] == 3):
        raise InputError(f"{path}: TIFF page of shape {tuple(arr.shape)} is not a 2D grayscale or RGB image")
    try:
        rgb = _to_uint8(arr)
    except ValueError as exc:
        raise InputError(f"{path}: cannot decode image ({exc})") from exc
    return np.ascontiguousarray(np.repeat(rgb[..., None], 3, axis=2) if rgb.ndim == 2 else rgb)


def _composite_on_black(rgba: np.ndarray) -> np.ndarray:
    """``(H, W, 4)`` uint8 -> ``(H, W, 3)`` uint8 premultiplied, in integers (no float copy)."""
    alpha = rgba[..., 3:4].astype(np.uint16)
    return ((rgba[..., :3].astype(np.uint16) * alpha + 127) // 255).astype(np.uint8)


def _pil_to_rgb(img: Image.Image) -> np.ndarray:
    if img.mode == "RGB":
        return np.asarray(img, dtype=np.uint8).copy()
    if img.mode in ("P", "PA", "LA", "RGBA", "RGBa", "La"):
        return _composite_on_black(np.asarray(img.convert("RGBA"), dtype=np.uint8))
    if img.mode in ("CMYK", "YCbCr", "L", "1", "LAB", "HSV"):
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
    """Binary ``(H, W)`` bool mask: every non-zero pixel is foreground.

    A mask with more than two distinct values (anti-aliased edges, JPEG noise, label
    indices) is kept with every non-zero pixel as defect and a warning naming the file,
    since guessing another threshold would silently drop labelled regions. A mask of
    another size than its image is resized (nearest) with a warning, since MVTec-style
    tools do the same and refusing would lose a whole category.
    """
    path = Path(path)
    data = read_file_bytes(path)
    try:
        with Image.open(io.BytesIO(data)) as img:
            _check_size(path, *img.size)
            img.load()
            arr = np.asarray(img.convert("L") if img.mode not in ("L", "1", "I;16", "I;16B", "I", "F") else img)
    except InputError:
        raise
    except Exception as exc:  # decoders raise anything on corrupt input
        raise InputError(f"{path}: cannot decode mask ({exc.__class__.__name__}: {exc})") from exc
    if arr.ndim == 3:
        arr = arr[..., 0]
    if not np.all(np.isfinite(arr)):
        raise InputError(f"{path}: mask holds NaN or infinite values")
    values = np.unique(arr)
    if values.size > 2 or (values.size == 2 and values[0] != 0):
        shown = ", ".join(str(v) for v in values[:6]) + (", ..." if values.size > 6 else "")
        warnings.warn(f"{path}: mask is not binary (values {shown}); every non-zero pixel counts as defect",
                      stacklevel=2)
    mask = arr != 0
    if mask.shape != tuple(shape):
        warnings.warn(f"{path}: mask is {mask.shape[1]}x{mask.shape[0]} but its image is "
                      f"{shape[1]}x{shape[0]}; resized with nearest neighbour", stacklevel=2)
        resized = Image.fromarray(mask.astype(np.uint8) * 255).resize((shape[1], shape[0]), Image.NEAREST)
        mask = np.asarray(resized) > 127
    return mask
