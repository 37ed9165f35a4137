"""3D volumes (brain MRI, NIfTI): 3D-patch tokens from a 2D ViT, then MuSc / CoDeGraph unchanged.

See docs/volumes.md. Inputs must be skull-stripped and co-registered; the tool reorients
to RAS+, crops to the brain, resamples to a D^3 cube and normalises intensities.
"""

from codegraph_ad.volumes.api import (
    VolumeEvaluation,
    VolumeRunResult,
    detect_volumes,
    evaluate_run,
    evaluate_volumes,
    read_cohort,
)
from codegraph_ad.volumes.cohort import build_cohort
from codegraph_ad.volumes.config import CohortConfig, LesionConfig, VolumeConfig

__all__ = [
    "CohortConfig",
    "LesionConfig",
    "VolumeConfig",
    "VolumeEvaluation",
    "VolumeRunResult",
    "build_cohort",
    "detect_volumes",
    "evaluate_run",
    "evaluate_volumes",
    "read_cohort",
]
