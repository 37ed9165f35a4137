"""Evaluation metrics (SPEC section 12): image, pixel, exact AUPRO, and 3D volume metrics.

All values are fractions in [0, 1]; a metric that is undefined for the given
data (e.g. AUROC with a single class) is returned as None, never NaN.
"""

from .aupro import aupro
from .image import f1_max, image_metrics
from .pixel import pixel_metrics, prepare_for_evaluation
from .volume import best_f1_threshold, dice, volume_metrics, voxel_auroc

__all__ = [
    "aupro",
    "best_f1_threshold",
    "dice",
    "f1_max",
    "image_metrics",
    "pixel_metrics",
    "prepare_for_evaluation",
    "volume_metrics",
    "voxel_auroc",
]
