"""Trained per-image detectors: one image in, a patch-grid anomaly probability map out.

Every kind of model file (the distilled patch head, the CLIP adapters) loads into an object
with the same ``predict(rgb)``, which is all ``codegraph-ad predict`` needs.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from codegraph_ad.config import FeatureConfig, RunConfig, config_from_dict
from codegraph_ad.distill.config import HeadConfig
from codegraph_ad.distill.head import PatchHead, head_inputs
from codegraph_ad.distill.model_file import ModelFile, load_model
from codegraph_ad.distill.prediction import Prediction, one_torch_thread
from codegraph_ad.errors import InputError
from codegraph_ad.features.preprocess import to_model_input


class Detector(Protocol):
    kind: str
    grid: tuple[int, int]
    config: dict[str, Any]

    def predict(self, rgb: np.ndarray) -> Prediction: ...

    def used_backbone(self) -> Any:
        """The ``BackboneIdentity`` of the frozen model, for the run manifest."""
        ...


def load_feature_backbone(features: FeatureConfig, threads: int | None = None):
    """The frozen backbone named by a model's feature config (same call as ``detect`` uses)."""
    from codegraph_ad.api import load_backbone
    from codegraph_ad.config import EngineConfig

    return load_backbone(RunConfig(features=features, engine=EngineConfig(threads=threads)))


class DistilledDetector:
    """Frozen backbone + ``PatchHead``; scores each image alone, with no batch."""

    kind = "patch_head"

    def __init__(self, backbone: Any, head: PatchHead, features: FeatureConfig, config: dict[str, Any]) -> None:
        self.backbone = backbone
        self.head = head.eval()
        self.features = features
        self.config = config
        self.degrees = tuple(head.config.degrees)
        self._caller_backbone: Any = backbone  # a model the caller built; None once built from the config
        g = backbone.image_size // backbone.patch_size
        self.grid = (g, g)

    @classmethod
    def from_model_file(cls, model: ModelFile, threads: int | None = None, backbone: Any = None) -> DistilledDetector:
        cfg = model.config
        features = config_from_dict(FeatureConfig, cfg["features"])
        head_cfg = config_from_dict(HeadConfig, cfg["head"])
        head = PatchHead(int(cfg["in_dim"]), head_cfg)
        head.load_state_dict(model.state_dict, strict=True)
        given = backbone
        backbone = backbone if backbone is not None else load_feature_backbone(features, threads)
        detector = cls(backbone, head, features, cfg)
        detector._caller_backbone = given
        return detector

    def used_backbone(self) -> Any:
        from codegraph_ad.backbones.identity import backbone_identity

        return backbone_identity(self.features.backbone, self.features.checkpoint, self._caller_backbone)

    def predict(self, rgb: np.ndarray) -> Prediction:
        x = to_model_input(rgb, self.backbone.image_size, self.backbone.mean, self.backbone.std)[None]
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = self.backbone.extract(x)
        t1 = time.perf_counter()
        with torch.inference_mode(), one_torch_thread():
            layers = torch.stack([t.float() for t in out.layers], dim=1)
            probs = self.head(head_inputs(layers, out.grid, self.degrees))[0]
        t2 = time.perf_counter()
        return Prediction(probs.reshape(out.grid), t1 - t0, t2 - t1)


def load_detector(path: str | Path, threads: int | None = None) -> Detector:
    """Load any model file written by ``distill`` or the CLIP trainers."""
    model = load_model(path)
    if model.kind == DistilledDetector.kind:
        return DistilledDetector.from_model_file(model, threads)
    if model.kind in ("aprilgan", "anomalyclip"):
        from codegraph_ad.distill.clip.detector import TextDetector

        return TextDetector.from_model_file(model, threads)
    raise InputError(f"{path}: unknown model kind {model.kind!r}")
