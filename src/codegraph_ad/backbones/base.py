"""The one interface every backbone implements: images in, per-layer patch tokens out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class BackboneOutput:
    """Tokens of one batch.

    layers: one tensor per requested block, each ``(B, M, C)`` with M = h * w patch
        tokens in row-major grid order ([CLS] and register tokens removed).
    cls: ``(B, C_cls)`` final [CLS] vector (after the final norm / projection where the
        model has one), used for RsCIN and [CLS] screening.
    grid: ``(h, w)`` patch grid.
    """

    layers: list[torch.Tensor]
    cls: torch.Tensor
    grid: tuple[int, int]


class Backbone(Protocol):
    """A frozen ViT that returns intermediate patch tokens.

    ``extract`` takes images already resized to ``image_size`` and normalised with
    ``mean``/``std`` as ``(B, 3, S, S)`` float32 and runs without gradients.
    """

    name: str
    patch_size: int
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def extract(self, images: torch.Tensor) -> BackboneOutput: ...
