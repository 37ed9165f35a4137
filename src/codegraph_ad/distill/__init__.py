"""Pseudo-masks from batch runs and single-image models trained on them (SPEC section 10).

    codegraph-ad pseudomask RUN --out PSEUDO     # truncated-GMM masks in the MVTec layout
    codegraph-ad distill RUN --out head.pt       # patch head on frozen ViT tokens
    codegraph-ad predict head.pt IMAGES --out P  # one image at a time, no batch

The trainable CLIP-based models (APRIL-GAN-style adapter, AnomalyCLIP-style prompts) live in
``codegraph_ad.distill.clip``; WinCLIP zero-shot scoring is the registered method
``codegraph_ad.methods.winclip`` (CLIP loading: ``codegraph_ad.backbones.clip``). open_clip is
imported only when used. See docs/distill.md.
"""

from codegraph_ad.config import PseudoMaskConfig
from codegraph_ad.distill.config import (
    DistillConfig,
    HeadConfig,
    LossConfig,
    TextModelConfig,
    TrainConfig,
)
from codegraph_ad.distill.detector import DistilledDetector, load_detector
from codegraph_ad.distill.distill_head import TrainingReport, train_patch_head
from codegraph_ad.distill.predict import PredictResult, predict_images
from codegraph_ad.distill.pseudomask_run import write_pseudomasks
from codegraph_ad.pixel_decision import ThresholdFit, fit_threshold, pseudo_masks

__all__ = [
    "DistillConfig",
    "DistilledDetector",
    "HeadConfig",
    "LossConfig",
    "PredictResult",
    "PseudoMaskConfig",
    "TextModelConfig",
    "ThresholdFit",
    "TrainConfig",
    "TrainingReport",
    "fit_threshold",
    "load_detector",
    "predict_images",
    "pseudo_masks",
    "train_patch_head",
    "write_pseudomasks",
]
