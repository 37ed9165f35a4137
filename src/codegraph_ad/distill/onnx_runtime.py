"""Run an exported detector (``codegraph-ad export``) with ONNX Runtime, without PyTorch.

This file is deliberately self-contained: it imports only numpy, Pillow and onnxruntime and
nothing of ``codegraph_ad`` (importing any package module would run the package face, which
imports torch). On a line PC copy this one file next to the ``.onnx`` file::

    from onnx_runtime import OnnxDetector
    det = OnnxDetector("bottle_head.onnx")
    probs = det.predict(rgb_uint8)          # (h, w) patch anomaly probabilities
    score = float(probs.max())              # the image score

Preprocessing repeats ``codegraph_ad.features.preprocess.to_model_input`` operation for
operation (bicubic squash with Pillow, float32 arithmetic), so the map equals the PyTorch
detector's. Errors are plain ``ValueError`` / ``FileNotFoundError`` for the same reason.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from PIL import Image, ImageOps

# The names ``export_onnx`` writes; a file without FORMAT_KEY = FORMAT was not made by it.
FORMAT_KEY = "codegraph_ad.format"
FORMAT = "codegraph-ad-onnx-detector"
FORMAT_VERSION = "1"
INPUT = "image"
MAP_OUTPUT = "probs"
SCORE_OUTPUT = "score"


def read_metadata(session: ort.InferenceSession) -> dict[str, Any]:
    """The exported file's metadata_props, JSON values decoded (image_size, mean, std, grid, ...)."""
    props = dict(session.get_modelmeta().custom_metadata_map)
    if props.get(FORMAT_KEY) != FORMAT:
        raise ValueError(f"not a codegraph-ad ONNX detector (metadata {FORMAT_KEY!r} is {props.get(FORMAT_KEY)!r})")
    if props.get("codegraph_ad.format_version") != FORMAT_VERSION:
        raise ValueError(f"ONNX detector format version {props.get('codegraph_ad.format_version')!r} "
                         f"is not supported (expected {FORMAT_VERSION})")
    return {k.removeprefix("codegraph_ad."): json.loads(v) for k, v in props.items()
            if k.startswith("codegraph_ad.") and k not in (FORMAT_KEY, "codegraph_ad.format_version")}


def preprocess(rgb: np.ndarray, size: int, mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """``(H, W, 3)`` uint8 -> ``(1, 3, size, size)`` float32, exactly as ``to_model_input``."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB array, got {rgb.shape} {rgb.dtype}")
    img = Image.fromarray(rgb).resize((size, size), Image.BICUBIC)
    x = (np.asarray(img, dtype=np.float32) / np.float32(255.0)).transpose(2, 0, 1)
    m = np.asarray(mean, dtype=np.float32).reshape(3, 1, 1)
    s = np.asarray(std, dtype=np.float32).reshape(3, 1, 1)
    return np.ascontiguousarray(((x - m) / s)[None])


class OnnxDetector:
    """An exported single-image detector: ``predict(rgb) -> (h, w)`` probabilities.

    threads: ONNX Runtime intra-op threads (None: all cores).
    """

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: ONNX detector file does not exist")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or 0
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        try:
            self.metadata = read_metadata(self.session)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None
        self.image_size = int(self.metadata["image_size"])
        self.mean = tuple(float(v) for v in self.metadata["mean"])
        self.std = tuple(float(v) for v in self.metadata["std"])
        self.grid = tuple(int(v) for v in self.metadata["grid"])

    def run(self, x: np.ndarray) -> np.ndarray:
        """Normalised ``(1, 3, S, S)`` float32 -> ``(1, h, w)`` probabilities."""
        return self.session.run([MAP_OUTPUT], {INPUT: np.ascontiguousarray(x, dtype=np.float32)})[0]

    def predict(self, rgb: np.ndarray) -> np.ndarray:
        """``(H, W, 3)`` uint8 RGB -> ``(h, w)`` float32 anomaly probability per patch."""
        return self.run(preprocess(rgb, self.image_size, self.mean, self.std))[0]


def load_rgb(path: str | Path) -> np.ndarray:
    """Decode an 8-bit image file as ``codegraph_ad.io.images.load_image_rgb`` does: EXIF
    rotation applied, alpha composited on black, grayscale and palettes as RGB. (16-bit and
    float files, which the package rescales, are left to the caller.)"""
    with Image.open(path) as im:
        im.load()
        img = ImageOps.exif_transpose(im)
        if img.mode in ("P", "PA", "LA", "RGBA", "RGBa", "La"):
            rgba = np.asarray(img.convert("RGBA"), dtype=np.uint8)
            alpha = rgba[..., 3:4].astype(np.uint16)
            return ((rgba[..., :3].astype(np.uint16) * alpha + 127) // 255).astype(np.uint8)
        if img.mode not in ("RGB", "CMYK", "YCbCr", "L", "1", "LAB", "HSV"):
            raise ValueError(f"{path}: image mode {img.mode!r} (16-bit or float) is not handled here; "
                             "pass an RGB uint8 array to OnnxDetector.predict")
        return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()


def predict_file(model: str | Path, image: str | Path, threads: int | None = None) -> np.ndarray:
    """Convenience: the probability map of one image file (``load_rgb``)."""
    return OnnxDetector(model, threads).predict(load_rgb(image))
