"""Every tunable of the distillation stage (SPEC section 10, thesis chapter 6), in one place.

Pseudo-masks turn a batch run's anomaly maps into binary labels; per-image models (a small
head on frozen ViT tokens, or CLIP-based text models) are then trained on them so that new
images can be scored one at a time, without a batch.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from codegraph_ad.backbones.clip import ClipConfig
# PseudoMaskConfig lives in codegraph_ad.config (every default there; detect's masks use it
# too, below this layer); it is imported here for the command configs and for users.
from codegraph_ad.config import FeatureConfig, PseudoMaskConfig, documented
from codegraph_ad.methods.winclip import WinClipConfig

DistillModel = Literal["head", "aprilgan", "anomalyclip"]


@dataclass(frozen=True)
class LossConfig:
    """Focal + Dice on patch-grid targets (as APRIL-GAN and AnomalyCLIP train).

    Focal handles the class imbalance (few anomalous patches); Dice rewards the overlap of the
    predicted region as a whole. Targets are the anomalous fraction of each patch (soft), so
    a patch half-covered by a thin defect is not forced to 0 or 1.
    """

    focal_gamma: float = documented(2.0, "focusing exponent of the focal loss")
    # weight of the positive class; None: unweighted
    focal_alpha: float | None = documented(None, "focal weight of the positive class (none: unweighted)")
    dice_weight: float = documented(1.0, "weight of the Dice loss beside the focal loss")


@dataclass(frozen=True)
class TrainConfig:
    """Optimiser settings shared by every trainable per-image model."""

    epochs: int = documented(60, "training epochs")  # the setting behind every number in docs/distill.md
    lr: float = documented(1e-3, "learning rate")
    weight_decay: float = documented(1e-4, "weight decay of the optimiser")
    batch_images: int = documented(8, "images per optimiser step")
    seed: int = documented(0, "seed of the initialisation and the image order")
    loss: LossConfig = documented(LossConfig, "focal + Dice loss", factory=True)


@dataclass(frozen=True)
class HeadConfig:
    """The distilled patch head on frozen backbone tokens.

    degrees: LNAMD degrees whose unit tokens are concatenated over all layers as the head's
        input (r = 1: each patch alone; r = 3 adds its neighbourhood).
    hidden: width of the MLP's hidden layer; 0 (default) makes the head linear. On bottle
        (224 px, split seed 1, benchmarks/results/distill_head_choice.json) the linear heads
        trained on pseudo-masks stayed within 1.2 points of those trained on real masks, while
        MLPs (64, 256 hidden) fitted the pseudo-masks' errors and lost 2-7 points of pixel and
        image AUROC; with real masks an MLP gained about 1 point of pixel AUROC. r = (1, 3)
        beat r = 1 on image AUROC (99.7 vs 99.0) at the same pixel AUROC.
    """

    degrees: tuple[int, ...] = documented((1, 3), "LNAMD degrees of the head input")
    hidden: int = documented(0, "MLP hidden width (0: linear head)")
    dropout: float = documented(0.1, "dropout on the hidden layer only")


@dataclass(frozen=True)
class DistillConfig:
    """A distilled single-image detector: which backbone, which head, how it is trained."""

    features: FeatureConfig = documented(FeatureConfig, "frozen backbone and its tokens", factory=True)
    head: HeadConfig = documented(HeadConfig, "the patch head", factory=True)
    train: TrainConfig = documented(TrainConfig, "training of the head", factory=True)


@dataclass(frozen=True)
class TextModelConfig:
    """APRIL-GAN-style adapter or AnomalyCLIP-style learnable prompts on a frozen CLIP.

    kind: "aprilgan" trains one linear map per layer from patch tokens to the text space,
        against fixed prompt-ensemble text embeddings; "anomalyclip" trains object-agnostic
        context vectors ("[V1..Vn] object" / "[W1..Wn] damaged object") and projects patch
        tokens with CLIP's own frozen projection.
    n_ctx: learnable context tokens per prompt (AnomalyCLIP: 12).
    object_name: the noun used in the prompts ("object" keeps them object-agnostic).
    temperature: scale of the cosine similarities before the normal/abnormal softmax.
    """

    kind: Literal["aprilgan", "anomalyclip"] = documented("aprilgan", "APRIL-GAN adapter or AnomalyCLIP prompts")
    clip: ClipConfig = documented(ClipConfig, "the frozen CLIP", factory=True)
    n_ctx: int = documented(12, "learnable context tokens per prompt (anomalyclip)")
    object_name: str = documented("object", "noun in the prompts ('object' keeps them object-agnostic)")
    temperature: float = documented(100.0, "scale of the cosine similarities before the normal/abnormal softmax")
    train: TrainConfig = documented(lambda: TrainConfig(epochs=30, lr=1e-3), "training of the text model", factory=True)


@dataclass(frozen=True)
class DistillCommandConfig:
    """Everything ``codegraph-ad distill`` reads: the pseudo-masks and the model to train.

    model: "head" trains ``head`` (a patch head on frozen ViT tokens); "aprilgan" and
        "anomalyclip" train ``text`` with that kind. Both model sections are kept so that one
        file configures either; the one not chosen is not used.
    """

    model: DistillModel = documented("head", "head: patch head on frozen ViT tokens; aprilgan / anomalyclip: "
                                             "CLIP-based (need a CLIP checkpoint)")
    pseudo: PseudoMaskConfig = documented(PseudoMaskConfig, "pseudo-masks the model is trained on", factory=True)
    head: DistillConfig = documented(DistillConfig, "the patch head (model head)", factory=True)
    text: TextModelConfig = documented(TextModelConfig, "the CLIP text model (aprilgan, anomalyclip)", factory=True)

    def trained(self) -> DistillConfig | TextModelConfig:
        """The configuration of the chosen model (a text model with ``kind`` = ``model``)."""
        if self.model == "head":
            return self.head
        return self.text if self.text.kind == self.model else replace(self.text, kind=self.model)


@dataclass(frozen=True)
class WinClipCommandConfig:
    """Everything ``codegraph-ad winclip`` reads: the CLIP to load and the WinCLIP scoring."""

    clip: ClipConfig = documented(ClipConfig, "the frozen CLIP", factory=True)
    winclip: WinClipConfig = documented(WinClipConfig, "window scoring and prompts", factory=True)
