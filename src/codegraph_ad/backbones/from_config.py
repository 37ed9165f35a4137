"""The backbone a ``FeatureConfig`` describes (what ``api.load_backbone`` used to spell out)."""

from __future__ import annotations

import warnings

import torch

from codegraph_ad.backbones.base import Backbone
from codegraph_ad.backbones.device import BackbonePrecision, resolve_device
from codegraph_ad.backbones.registry import backbone_spec, create_backbone
from codegraph_ad.config import FeatureConfig

TORCH_PORT_SUFFIX = "_torch"  # the embedded model's PyTorch port is registered under name + suffix


def backbone_from_config(features: FeatureConfig, threads: int | None = None,
                         device: str | torch.device = "cpu",
                         precision: BackbonePrecision = "fp32") -> Backbone:
    """Build ``features.backbone`` at ``features.image_size`` with its blocks, final norm and
    checkpoint; ``threads`` as in ``create_backbone`` (the run's ``EngineConfig.threads``).

    device: ``cpu`` / ``cuda`` / ``auto`` (the run's ``EngineConfig.device``) or a torch
        device. On the CPU in fp32 the backbone is built exactly as without it (the embedded
        model on ONNX Runtime). Anywhere else the embedded model runs as its PyTorch port
        (ONNX Runtime is CPU only here), and another backbone is moved with its
        ``to_device(device, precision)`` where it has one; one without stays on the CPU,
        with a warning.
    precision: ``fp32`` (TF32 off on CUDA) or ``bf16`` (autocast) for the torch models.
    """
    target = resolve_device(device)
    if target.type == "cpu" and precision == "fp32":
        return _create(features.backbone, features, threads)
    name = features.backbone
    if backbone_spec(name).family == "embedded" and not name.endswith(TORCH_PORT_SUFFIX):
        name += TORCH_PORT_SUFFIX
    return place_backbone(_create(name, features, threads), target, precision)


def place_backbone(backbone: Backbone, device: torch.device, precision: BackbonePrecision = "fp32") -> Backbone:
    """``backbone`` on ``device`` in ``precision`` through its ``to_device``; a backbone
    without one is returned as it is (on the CPU, fp32), with a warning that says so."""
    move = getattr(backbone, "to_device", None)
    if callable(move):
        return move(device, precision)
    warnings.warn(f"backbone {getattr(backbone, 'name', type(backbone).__name__)!r} has no to_device(); "
                  f"its features are extracted on the CPU in fp32, not on {device} in {precision}",
                  RuntimeWarning, stacklevel=2)
    return backbone


def _create(name: str, features: FeatureConfig, threads: int | None) -> Backbone:
    return create_backbone(
        name,
        image_size=features.image_size,
        layers=features.layers,
        final_norm=features.final_norm,
        checkpoint=features.checkpoint,
        threads=threads,
    )
