"""Focal and Dice losses on anomaly probabilities, for soft (fractional) targets.

Both take probabilities ``p`` in [0, 1] rather than logits, because the CLIP-based models
produce a softmax over (normal, abnormal) text prompts, not a single logit.
"""

from __future__ import annotations

import torch

from codegraph_ad.distill.config import LossConfig

_EPS = 1e-6


def focal_loss(p: torch.Tensor, y: torch.Tensor, gamma: float = 2.0, alpha: float | None = None) -> torch.Tensor:
    """Mean of ``-[y (1-p)^g log p + (1-y) p^g log(1-p)]`` (optionally alpha-weighted).

    For binary ``y`` this is Lin et al.'s focal loss; for a soft ``y`` (the anomalous share of
    a patch) it interpolates the two terms, so a half-covered patch is pulled towards 0.5.
    """
    p = p.clamp(_EPS, 1.0 - _EPS)
    pos = y * (1.0 - p).pow(gamma) * torch.log(p)
    neg = (1.0 - y) * p.pow(gamma) * torch.log(1.0 - p)
    if alpha is not None:
        pos, neg = alpha * pos, (1.0 - alpha) * neg
    return -(pos + neg).mean()


def dice_loss(p: torch.Tensor, y: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """``1 - (2 sum(p y) + s) / (sum p + sum y + s)`` over the whole batch.

    Summed over the batch (not per image) so that normal images, whose target is empty, still
    contribute by pushing their predictions to zero without a 0/0 per-image term.
    """
    inter = (p * y).sum()
    return 1.0 - (2.0 * inter + smooth) / (p.sum() + y.sum() + smooth)


def segmentation_loss(p: torch.Tensor, y: torch.Tensor, config: LossConfig = LossConfig()) -> torch.Tensor:
    """Focal + dice_weight * Dice; ``p`` and ``y`` of the same shape."""
    if p.shape != y.shape:
        raise ValueError(f"predictions {tuple(p.shape)} and targets {tuple(y.shape)} differ in shape")
    return focal_loss(p, y, config.focal_gamma, config.focal_alpha) + config.dice_weight * dice_loss(p, y)
