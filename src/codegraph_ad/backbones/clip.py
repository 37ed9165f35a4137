"""A frozen open_clip CLIP built from a local checkpoint: image tower + text tower + tokenizer.

The image tower is this package's ``OpenClipBackbone`` (strict checkpoint loading, resized
position embedding, tokens of any block); its ``model`` attribute holds the full CLIP, whose
text tower the prompt code (``methods.clip_text``) reuses. WinCLIP (``methods.winclip``) and
the trained text models of ``distill.clip`` all load their CLIP here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from codegraph_ad.backbones._checks import BackboneConfigError
from codegraph_ad.backbones._optional import import_open_clip
from codegraph_ad.backbones.base import CLIP_MEAN, CLIP_STD
from codegraph_ad.backbones.registry import backbone_spec, evenly_spaced_layers, list_backbones
from codegraph_ad.config import documented


@dataclass(frozen=True)
class ClipConfig:
    """A CLIP model (open_clip) loaded from a local checkpoint.

    arch: an open_clip model name ("ViT-L-14-336") or one of this package's backbone names
        ("clip_vitl14_336"). quick_gelu: True for OpenAI's weights (see backbones/official.py).
    layers: 1-based blocks whose patch tokens feed the adapters (APRIL-GAN and AnomalyCLIP use
        4 evenly spaced blocks of ViT-L: 6/12/18/24); None takes the backbone's default four.
    """

    arch: str = documented("ViT-L-14-336", "open_clip model name or this package's CLIP backbone name")
    checkpoint: str | None = documented(None, "local CLIP weights file (OpenAI .pt or open_clip)")
    image_size: int = documented(336, "CLIP input side in px")
    layers: tuple[int, ...] | None = documented(
        None, "1-based blocks whose patch tokens feed the adapters (none: the backbone's default four)")
    quick_gelu: bool = documented(True, "QuickGELU activations (OpenAI's weights)")


@dataclass
class ClipBundle:
    """backbone: ``OpenClipBackbone`` with final-norm (``ln_post``) tokens; tokenizer: open_clip's."""

    backbone: Any
    tokenizer: Any
    config: ClipConfig

    @property
    def model(self) -> torch.nn.Module:
        return self.backbone.model

    @property
    def embed_dim(self) -> int:
        return int(self.model.visual.proj.shape[1])

    @property
    def vision_width(self) -> int:
        return int(self.model.visual.proj.shape[0])

    @property
    def text_width(self) -> int:
        return int(self.model.token_embedding.weight.shape[1])


def open_clip_arch(name: str) -> str:
    """This package's backbone names (``clip_vitl14_336``) map to their open_clip config name."""
    if name in list_backbones():
        spec = backbone_spec(name)
        if spec.family != "open_clip":
            raise BackboneConfigError(f"{name!r} is not a CLIP backbone; CLIP models need an open_clip name")
        return spec.arch
    return name


def load_clip(config: ClipConfig, threads: int | None = None) -> ClipBundle:
    """Build the CLIP of ``config.arch`` with random weights and load ``config.checkpoint`` strictly."""
    from codegraph_ad.backbones.official import OpenClipBackbone

    open_clip = import_open_clip()
    arch = open_clip_arch(config.arch)
    model_cfg = open_clip.get_model_config(arch)
    if model_cfg is None:
        raise BackboneConfigError(f"unknown open_clip model {arch!r}; see open_clip.list_models()")
    if "text_cfg" in model_cfg and model_cfg["text_cfg"].get("hf_model_name"):
        raise BackboneConfigError(f"{arch!r} has a Hugging Face text tower; only plain CLIP text towers are supported")
    if threads is not None:
        torch.set_num_threads(threads)
    layers = config.layers or evenly_spaced_layers(int(model_cfg["vision_cfg"]["layers"]))
    backbone = OpenClipBackbone(arch, arch, config.image_size, tuple(layers), CLIP_MEAN, CLIP_STD,
                                checkpoint=config.checkpoint, final_norm=True, quick_gelu=config.quick_gelu)
    return ClipBundle(backbone, open_clip.get_tokenizer(arch), config)
