"""The backbone a ``FeatureConfig`` describes (what ``api.load_backbone`` used to spell out)."""

from __future__ import annotations

from codegraph_ad.backbones.base import Backbone
from codegraph_ad.backbones.registry import create_backbone
from codegraph_ad.config import FeatureConfig


def backbone_from_config(features: FeatureConfig, threads: int | None = None) -> Backbone:
    """Build ``features.backbone`` at ``features.image_size`` with its blocks, final norm and
    checkpoint; ``threads`` as in ``create_backbone`` (the run's ``EngineConfig.threads``)."""
    return create_backbone(
        features.backbone,
        image_size=features.image_size,
        layers=features.layers,
        final_norm=features.final_norm,
        checkpoint=features.checkpoint,
        threads=threads,
    )
