"""Per-image detectors on a frozen CLIP: trained adapters (APRIL-GAN, AnomalyCLIP) and WinCLIP."""

from __future__ import annotations

import time
from dataclasses import asdict, replace
from typing import Any

import numpy as np
import torch

from codegraph_ad.backbones.clip import ClipBundle, load_clip
from codegraph_ad.config import config_from_dict
from codegraph_ad.distill.clip.adapters import AprilGanAdapter, PromptLearner
from codegraph_ad.distill.config import TextModelConfig
from codegraph_ad.distill.model_file import ModelFile
from codegraph_ad.distill.prediction import Prediction, one_torch_thread
from codegraph_ad.features.preprocess import to_model_input
from codegraph_ad.methods.clip_text import state_embeddings
from codegraph_ad.methods.winclip import WinClipConfig, WindowScorer


def build_text_model(bundle: ClipBundle, config: TextModelConfig, encode_text: bool = True) -> torch.nn.Module:
    """A fresh (untrained) adapter or prompt learner for ``bundle`` (seed torch before calling).

    encode_text: False skips encoding the prompt ensemble (its result is in a saved state dict).
    """
    n_layers = len(bundle.backbone.layers)
    if config.kind == "aprilgan":
        text = (state_embeddings(bundle.model, bundle.tokenizer, config.object_name) if encode_text
                else torch.zeros(2, bundle.embed_dim))
        return AprilGanAdapter(n_layers, bundle.vision_width, bundle.embed_dim, text, config.temperature)
    if config.kind == "anomalyclip":
        return PromptLearner(bundle.model, bundle.tokenizer, config.n_ctx, config.object_name, config.temperature,
                             bundle.model.visual.proj)
    raise ValueError(f"unknown text model kind {config.kind!r}; expected 'aprilgan' or 'anomalyclip'")


def layer_tokens(bundle: ClipBundle, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
    """``(B, L, M, C)`` ``ln_post`` patch tokens of the chosen blocks (a normal tensor, usable in autograd)."""
    out = bundle.backbone.extract(images)
    return torch.stack([t.float() for t in out.layers], dim=1).clone(), out.grid


class TextDetector:
    """A trained APRIL-GAN adapter or AnomalyCLIP prompt learner applied to one image at a time."""

    def __init__(self, bundle: ClipBundle, module: torch.nn.Module, config: TextModelConfig,
                 model_config: dict[str, Any]) -> None:
        self.bundle = bundle
        self.module = module.eval()
        self.kind = config.kind
        self.text_config = config
        self.config = model_config
        g = bundle.backbone.image_size // bundle.backbone.patch_size
        self.grid = (g, g)

    @classmethod
    def from_model_file(cls, model: ModelFile, threads: int | None = None,
                        bundle: ClipBundle | None = None) -> TextDetector:
        config = config_from_dict(TextModelConfig, model.config["text_model"])
        bundle = bundle if bundle is not None else load_clip(config.clip, threads)
        module = build_text_model(bundle, config, encode_text=False)
        module.load_state_dict(model.state_dict, strict=True)
        return cls(bundle, module, config, model.config)

    def used_backbone(self) -> Any:
        from codegraph_ad.backbones.identity import clip_identity

        return clip_identity(self.bundle.config.arch, self.bundle.config.checkpoint)

    def predict(self, rgb: np.ndarray) -> Prediction:
        bb = self.bundle.backbone
        x = to_model_input(rgb, bb.image_size, bb.mean, bb.std)[None]
        t0 = time.perf_counter()
        tokens, grid = layer_tokens(self.bundle, x)
        t1 = time.perf_counter()
        with torch.inference_mode(), one_torch_thread():
            probs = self.module(tokens)[0]
        t2 = time.perf_counter()
        return Prediction(probs.reshape(grid), t1 - t0, t2 - t1)


class WinClipDetector:
    """WinCLIP zero-shot (``methods.winclip``) one image at a time: no training; the prompt
    ensemble names ``object_name`` (None: ``config.object_name``)."""

    kind = "winclip"

    def __init__(self, bundle: ClipBundle, object_name: str | None = None,
                 config: WinClipConfig = WinClipConfig()) -> None:
        config = config if object_name is None else replace(config, object_name=object_name)
        self.bundle = bundle
        self.scorer = WindowScorer(bundle, state_embeddings(bundle.model, bundle.tokenizer, config.object_name), config)
        self.grid = self.scorer.grid
        self.config = {"clip": asdict(bundle.config), "winclip": asdict(config), "object_name": config.object_name}

    def used_backbone(self) -> Any:
        from codegraph_ad.backbones.identity import clip_identity

        return clip_identity(self.bundle.config.arch, self.bundle.config.checkpoint)

    def predict(self, rgb: np.ndarray) -> Prediction:
        bb = self.bundle.backbone
        x = to_model_input(rgb, bb.image_size, bb.mean, bb.std)[None]
        t0 = time.perf_counter()
        probs = self.scorer.score(x)[0]
        return Prediction(probs.reshape(self.grid), time.perf_counter() - t0, 0.0)
