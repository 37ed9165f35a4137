"""Bad and unusual input files, generated on the fly (nothing binary is committed).

Each ``write_*`` function writes one file and returns its path; ``BAD_FILES`` maps a case
name to a writer of a file the tool must refuse.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image


def textured(seed: int, shape: tuple[int, int] = (64, 64), defect: bool = False) -> np.ndarray:
    """A smooth-noise RGB 'product' image; ``defect`` adds a bright square in the top-left."""
    rng = np.random.default_rng(seed)
    img = (rng.random((*shape, 3)) * 60 + 100).astype(np.uint8)
    if defect:
        h, w = shape
        img[h // 8: h // 8 + h // 4, w // 8: w // 8 + w // 4] = (250, 40, 40)
    return img


def save_png(path: Path, rgb: np.ndarray) -> Path:
    Image.fromarray(rgb).save(path, format="PNG")
    return path


def normal_set(folder: Path, n: int, start_seed: int = 0, shape: tuple[int, int] = (64, 64)) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [save_png(folder / f"normal_{start_seed + i:03d}.png", textured(start_seed + i, shape)) for i in range(n)]


def _png_bytes(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def _jpeg_bytes(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def huge_png_header(width: int = 100_000, height: int = 100_000) -> bytes:
    """A valid PNG signature and IHDR claiming ``width x height`` RGB, with a tiny IDAT."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
            + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + _png_chunk(b"IEND", b""))


def write_truncated_png(folder: Path) -> Path:
    data = _png_bytes(textured(101, (96, 96)))
    path = folder / "truncated.png"
    path.write_bytes(data[: len(data) // 2])
    return path


def write_truncated_jpeg(folder: Path) -> Path:
    data = _jpeg_bytes(textured(102, (96, 96)))
    path = folder / "truncated.jpg"
    path.write_bytes(data[: len(data) // 2])
    return path


def write_zero_byte(folder: Path) -> Path:
    path = folder / "empty.png"
    path.write_bytes(b"")
    return path


def write_text_as_png(folder: Path) -> Path:
    path = folder / "notes.png"
    path.write_text("this is not an image\n" * 5)
    return path


def write_html_as_jpg(folder: Path) -> Path:
    path = folder / "download.jpg"
    path.write_text("<!DOCTYPE html><html><head><title>404 Not Found</title></head><body>gone</body></html>\n")
    return path


def write_huge_header(folder: Path) -> Path:
    path = folder / "bomb.png"
    path.write_bytes(huge_png_header())
    return path


def write_nan_float_tiff(folder: Path) -> Path:
    arr = np.random.default_rng(103).random((32, 32)).astype(np.float32)
    arr[3, 4] = np.nan
    path = folder / "nan_float.tif"
    Image.fromarray(arr).save(path, format="TIFF")
    return path


BAD_FILES: dict[str, Callable[[Path], Path]] = {
    "truncated_png": write_truncated_png,
    "truncated_jpeg": write_truncated_jpeg,
    "zero_byte": write_zero_byte,
    "text_named_png": write_text_as_png,
    "html_named_jpg": write_html_as_jpg,
    "huge_dimension_header": write_huge_header,
    "float_tiff_with_nan": write_nan_float_tiff,
}


def write_16bit_tiff(path: Path, rgb8: np.ndarray) -> Path:
    """16-bit RGB TIFF whose values are exactly ``rgb8 * 257`` (full 16-bit range)."""
    tifffile.imwrite(path, rgb8.astype(np.uint16) * 257, photometric="rgb")
    return path


def write_16bit_gray_tiff(path: Path, gray8: np.ndarray) -> Path:
    Image.fromarray(gray8.astype(np.uint16) * 257).save(path, format="TIFF")
    return path


def write_float_gray_tiff(path: Path, gray01: np.ndarray) -> Path:
    Image.fromarray(gray01.astype(np.float32)).save(path, format="TIFF")
    return path


def write_float_rgb_tiff(path: Path, rgb01: np.ndarray) -> Path:
    """Float RGB TIFF: Pillow cannot open it, the tifffile fallback must."""
    tifffile.imwrite(path, rgb01.astype(np.float32), photometric="rgb")
    return path


def write_palette_png(path: Path, rgb: np.ndarray) -> Path:
    Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=16).save(path, format="PNG")
    return path


def write_cmyk_jpeg(path: Path, rgb: np.ndarray) -> Path:
    Image.fromarray(rgb).convert("CMYK").save(path, format="JPEG", quality=95)
    return path


def write_exif_rotated_jpeg(path: Path, upright: np.ndarray) -> Path:
    """Pixels stored rotated 90 degrees counter-clockwise with EXIF orientation 6.

    A viewer (and the tool) rotates them back clockwise, showing ``upright``.
    """
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(np.ascontiguousarray(np.rot90(upright, k=1))).save(
        path, format="JPEG", quality=95, exif=exif.tobytes())
    return path


def write_jpeg(path: Path, rgb: np.ndarray) -> Path:
    Image.fromarray(rgb).save(path, format="JPEG", quality=95)
    return path


def write_gray_png(path: Path, gray: np.ndarray) -> Path:
    Image.fromarray(gray, mode="L").save(path, format="PNG")
    return path


def write_rgba_png(path: Path, rgba: np.ndarray) -> Path:
    Image.fromarray(rgba, mode="RGBA").save(path, format="PNG")
    return path
