"""Argument checks shared by every backbone, so each error names the argument and the value."""

from __future__ import annotations

import numbers
import os
from collections.abc import Sequence

import torch

from codegraph_ad.errors import InputError


class BackboneConfigError(InputError, ValueError):
    """A backbone argument cannot be used.

    A ``ValueError`` for library callers and an ``InputError`` so the CLI prints it as one line.
    """


def check_image_size(image_size: int, patch_size: int, name: str) -> int:
    """Tokens sit on a ``S/p`` grid: a side that is not a multiple of the patch drops pixels."""
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size <= 0:
        raise BackboneConfigError(f"image_size must be a positive int, got {image_size!r} for {name!r}")
    if image_size % patch_size:
        lo = max(patch_size, image_size // patch_size * patch_size)
        raise BackboneConfigError(
            f"image_size={image_size} is not a multiple of the patch size {patch_size} of {name!r}; "
            f"use e.g. {lo} or {lo + patch_size}"
        )
    return image_size


def check_layers(layers: Sequence[int], depth: int, name: str) -> tuple[int, ...]:
    """Block indices are 1-based (block i = output of the i-th transformer block)."""
    out = tuple(layers)
    if not out:
        raise BackboneConfigError(f"layers must name at least one block of {name!r}, got {layers!r}")
    for layer in out:
        if isinstance(layer, bool) or not isinstance(layer, numbers.Integral) or not 1 <= layer <= depth:
            raise BackboneConfigError(
                f"layer index {layer!r} is out of range for {name!r}: blocks are numbered 1..{depth}"
            )
    return tuple(int(layer) for layer in out)


def check_checkpoint(checkpoint: str | os.PathLike[str] | None, name: str) -> str:
    """A local weights file must exist and be readable before any model is built."""
    if checkpoint is None:
        raise BackboneConfigError(
            f"{name!r} needs checkpoint=<path to a local weights file> (nothing is downloaded "
            "unless online=True is given)"
        )
    path = os.fspath(checkpoint)
    if not os.path.isfile(path):
        raise BackboneConfigError(f"checkpoint {path!r} for {name!r} does not exist or is not a file")
    if not os.access(path, os.R_OK):
        raise BackboneConfigError(f"checkpoint {path!r} for {name!r} is not readable")
    return path


def check_images(images: torch.Tensor, image_size: int, name: str) -> torch.Tensor:
    """``extract`` takes ``(B, 3, S, S)`` float images already resized to ``image_size``."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise BackboneConfigError(f"{name!r} expects images of shape (B, 3, S, S), got {shape}")
    if images.shape[2] != image_size or images.shape[3] != image_size:
        raise BackboneConfigError(
            f"{name!r} was built for image_size={image_size}, got images of "
            f"{images.shape[2]}x{images.shape[3]}"
        )
    return images.float()
