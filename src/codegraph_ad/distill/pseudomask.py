"""Pseudo-masks: a truncated Gaussian-mixture threshold per anomaly map (SPEC section 10).

The fit lives in ``codegraph_ad.pixel_decision`` (rank 4), where ``detect`` draws the masks of
the images it flags with it; this module keeps the distill-side names importable.
"""

from __future__ import annotations

from codegraph_ad.pixel_decision import ThresholdFit, fit_threshold, pooled_sample, pseudo_masks

__all__ = ["ThresholdFit", "fit_threshold", "pooled_sample", "pseudo_masks"]
